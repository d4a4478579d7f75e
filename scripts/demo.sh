#!/usr/bin/env bash
# The main job, start to finish: install what is missing, build, start a local Temporal dev
# server (unless TEMPORAL_ADDRESS points at one), start the worker, run a batch (default: the
# demo's 2000 items; arguments go to the starter, e.g. `scripts/demo.sh 50 --plugin cube`),
# print its summary, then stop everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --bins
bash scripts/build-plugins.sh

run_dir=$(mktemp -d)
pids=()
cleanup() {
  # Stop in reverse order: the worker shuts down gracefully on SIGTERM, then the server.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  rm -rf "$run_dir"
}
trap cleanup EXIT

wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: timed out waiting for $what" >&2; return 1
}

if [ -z "${TEMPORAL_ADDRESS:-}" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export TEMPORAL_ADDRESS="127.0.0.1:$port"
  echo "demo: starting a Temporal dev server on $TEMPORAL_ADDRESS (log: $run_dir/server.log)"
  temporal server start-dev --headless --ip 127.0.0.1 --port "$port" --log-level error \
    >"$run_dir/server.log" 2>&1 &
  pids+=($!)
  wait_until 60 "the dev server" temporal operator cluster health --address "$TEMPORAL_ADDRESS"
else
  echo "demo: using the Temporal server at $TEMPORAL_ADDRESS"
fi

echo "demo: starting the worker (log: $run_dir/worker.log)"
NO_COLOR=1 ./target/release/worker >"$run_dir/worker.log" 2>&1 &
pids+=($!)
wait_until 60 "the worker" grep -q "worker started" "$run_dir/worker.log" || {
  cat "$run_dir/worker.log" >&2; exit 1; }

status=0
./target/release/starter "$@" || status=$?
exit "$status"
