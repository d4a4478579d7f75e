# Shared by the scripts and benchmarks: start processes, wait for them, stop them all.
# Source it; it sets an EXIT trap that stops (SIGTERM, newest first) every process passed to
# `track`, then removes $run_dir.

run_dir=$(mktemp -d)
tracked=()

track() { tracked+=("$1"); }

stop_tracked() {
  for ((i = ${#tracked[@]} - 1; i >= 0; i--)); do
    kill -TERM "${tracked[$i]}" 2>/dev/null || true
    wait "${tracked[$i]}" 2>/dev/null || true
  done
  rm -rf "$run_dir"
}
trap stop_tracked EXIT

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s.
wait_until() {
  local limit=$1 what=$2
  shift 2
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_dev_server PORT: an in-memory dev server on 127.0.0.1:PORT, tracked, once it serves.
start_dev_server() {
  temporal server start-dev --headless --ip 127.0.0.1 --port "$1" --log-level error \
    >"$run_dir/server.log" 2>&1 &
  track $!
  wait_until 60 "the dev server" temporal operator cluster health --address "127.0.0.1:$1"
}

# start_worker ARGS...: the release worker, tracked, once it polls (log: $run_dir/worker.log).
start_worker() {
  # WORKER_BIN: another worker binary (e.g. a previous build, for a comparison).
  NO_COLOR=1 "${WORKER_BIN:-./target/release/worker}" "$@" >"$run_dir/worker.log" 2>&1 &
  track $!
  wait_until 60 "the worker" grep -q "worker started" "$run_dir/worker.log" || {
    cat "$run_dir/worker.log" >&2
    return 1
  }
}

# bench_node PLUGIN... -- WORKER_ARGS...: a benchmark's node: an in-memory dev server of its own
# and the release worker, whose plugins directory holds only the named plugins (the worker
# compiles every plugin of its directory at start: an interpreter's would take a core for ~20 s
# with --no-cache). Sets address, server_pid and worker_pid.
bench_node() {
  local plugins=() port
  while [ $# -gt 0 ] && [ "$1" != -- ]; do plugins+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  port=$(free_port)
  address="127.0.0.1:$port"
  # (A pyenv shim execs the real binary, so the tracked pid is the server's.)
  start_dev_server "$port"
  server_pid=${tracked[-1]}
  mkdir -p "$run_dir/plugins"
  for plugin in "${plugins[@]}"; do cp "target/plugins/$plugin.wasm" "$run_dir/plugins/"; done
  start_worker --address "$address" --plugins-dir "$run_dir/plugins" "$@"
  worker_pid=${tracked[-1]}
}

# cpu_seconds PID: the user and system CPU seconds process PID has used so far.
cpu_seconds() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

# bench_dataset RECORDS: the path of RECORDS JSON Lines made by scripts/make-dataset.py, made
# once and kept in target/bench-data for later runs.
bench_dataset() {
  local file="$PWD/target/bench-data/events-$1.jsonl"
  if [ ! -f "$file" ]; then
    mkdir -p "$(dirname "$file")"
    python3 scripts/make-dataset.py jsonl "$1" "$file.part" >&2
    mv "$file.part" "$file"
  fi
  echo "$file"
}
