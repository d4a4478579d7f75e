#!/usr/bin/env bash
# Side-by-side benchmark against the Python demo (../shared/peers/python-seed), on one
# in-memory dev server of its own, in one run:
#   bench/compare.sh [N]            (default 2000; ROUNDS=2 rounds by default)
# Each round runs the same batch (N items, batch size 10, 5 children, item mode) twice, Python
# demo first, then this project, each served by its own worker process on the demo's task
# queue `batch-processing-task-queue`, never both at once: start the Python worker, run the
# Python starter (WORKFLOW_ID_SUFFIX=rK), stop its worker; start the release worker
# (--no-cache), run the release starter (--workflow-id batch-processing-N-b10-c5-rust-rK),
# stop it. One line per run: side, round, n, wall seconds (the starter process, client start-up
# included), worker CPU seconds (utime+stime, read before and after the batch), worker peak RSS
# (VmHWM), server CPU seconds during the batch, and the check of the exact sum n(n+1)(2n+1)/6.
# Then the ratios python/rust of each round and their medians, with the date and the machine:
# absolute times on shared machines vary by several times from day to day, only ratios
# measured side by side mean anything.
# In item mode the server's CPU dominates: it is about the same for both sides and bounds the
# wall time, so the wall ratio is much closer to 1 than the worker CPU and RSS ratios.
# The Python side needs a virtualenv with temporalio==1.35.0: made (from PyPI) in
# target/bench/python-seed-venv when missing (../shared is read-only). The release binaries
# and plugins are built only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
rounds=${ROUNDS:-2}
batch=10 children=5
queue=batch-processing-task-queue
peer=../shared/peers/python-seed
venv=target/bench/python-seed-venv

if [ ! -f "$peer/worker.py" ] || [ ! -f "$peer/starter.py" ]; then
  echo "compare: this benchmark compares with the Python demo in $peer, which is not here" >&2
  exit 1
fi
peer=$(cd "$peer" && pwd)
case $n in '' | *[!0-9]*) echo "compare: N must be a whole number, got '$n'" >&2; exit 2 ;; esac
case $rounds in '' | *[!0-9]* | 0) echo "compare: ROUNDS must be at least 1, got '$rounds'" >&2; exit 2 ;; esac

[ -x target/release/worker ] && [ -x target/release/starter ] || cargo build --quiet --release --workspace --bins
[ -f target/plugins/square_number.wasm ] || bash scripts/build-plugins.sh >/dev/null

if ! "$venv/bin/python" -c 'import temporalio.version as v, sys; sys.exit(v.__version__ != "1.35.0")' 2>/dev/null; then
  echo "compare: making the Python demo's virtualenv in $venv (temporalio==1.35.0)" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet temporalio==1.35.0
fi
python=$(pwd)/$venv/bin/python

source scripts/lib.sh

peak_rss_mb() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
now() { date +%s.%N; }

# real_pid PID EXE_REGEX: PID, or its first descendant, whose executable's name matches
# EXE_REGEX (a launcher such as a pyenv shim or `env` may stand between us and the process to
# measure; it execs, so this is normally PID itself).
real_pid() {
  local pid=$1 pattern=$2 exe
  for _ in 1 2 3 4 5 6; do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || break
    [[ ${exe##*/} =~ $pattern ]] && { echo "$pid"; return; }
    pid=$(pgrep -P "$pid" | head -n 1) || break
  done
  echo "compare: no process whose executable matches '$pattern' under $1" >&2
  return 1
}

exited() { [ ! -e "/proc/$1" ] || awk '{ exit $3 != "Z" }' "/proc/$1/stat"; }

# stop_pid PID SIGNAL: signals the tracked process PID, waits for it (SIGKILL after 30 s) and
# drops it from the list that the EXIT trap stops.
stop_pid() {
  local pid=$1 sig=$2 kept=() p
  kill "-$sig" "$pid" 2>/dev/null || true
  wait_until 30 "process $pid to stop" exited "$pid" || kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${tracked[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
  tracked=("${kept[@]}")
}

port=$(free_port)
address="127.0.0.1:$port"
echo "compare: dev server on $address, n=$n, $rounds round(s)" >&2
start_dev_server "$port"
server_pid=$(real_pid "${tracked[0]}" "^temporal$")

# start_python_worker: the demo's worker, tracked; sets worker_pid (the python process itself).
start_python_worker() {
  TEMPORAL_ADDRESS="$address" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    "$python" "$peer/worker.py" >"$run_dir/python-worker.log" 2>&1 &
  track $!
  launched=$!
  wait_until 60 "the Python worker" grep -q "Worker started" "$run_dir/python-worker.log" || {
    cat "$run_dir/python-worker.log" >&2
    return 1
  }
  worker_pid=$(real_pid "$launched" "^python")
}

# run_side SIDE ROUND: one batch served by a worker of its own; prints its line and records it.
run_side() {
  local side=$1 round=$2 launched out="$run_dir/$1-r$2.out" err="$run_dir/$1-r$2.err"
  if [ "$side" = python ]; then
    start_python_worker
  else
    start_worker --address "$address" --task-queue "$queue" --plugins-dir target/plugins --no-cache
    launched=${tracked[-1]}
    worker_pid=$(real_pid "$launched" "^$(basename "${WORKER_BIN:-worker}")$")
  fi

  local s0 w0 start end s1 w1 rss status=0
  s0=$(cpu_seconds "$server_pid")
  w0=$(cpu_seconds "$worker_pid")
  start=$(now)
  if [ "$side" = python ]; then
    TEMPORAL_ADDRESS="$address" WORKFLOW_ID_SUFFIX="r$round" PYTHONDONTWRITEBYTECODE=1 \
      "$python" "$peer/starter.py" "$n" "$batch" "$children" >"$out" 2>"$err" || status=$?
  else
    ./target/release/starter "$n" "$batch" "$children" --workflow-id "batch-processing-$n-b$batch-c$children-rust-r$round" \
      --task-queue "$queue" --address "$address" >"$out" 2>"$err" || status=$?
  fi
  end=$(now)
  s1=$(cpu_seconds "$server_pid")
  w1=$(cpu_seconds "$worker_pid")
  rss=$(peak_rss_mb "$worker_pid")
  if [ "$side" = python ]; then stop_pid "${tracked[-1]}" INT; else stop_pid "${tracked[-1]}" TERM; fi
  if [ "$status" -ne 0 ]; then
    echo "compare: the $side starter failed (exit $status) in round $round:" >&2
    cat "$out" "$err" >&2
    exit 1
  fi

  local sum check
  sum=$(sed -n 's/^Sum of all squares: //p' "$out")
  check=$(python3 -c 'import sys
n, s = int(sys.argv[1]), sys.argv[2]
e = n * (n + 1) * (2 * n + 1) // 6
print("exact" if s.isdigit() and int(s) == e else f"WRONG(got={s or None},expected={e})")' "$n" "$sum")
  local wall cpu server
  wall=$(minus "$end" "$start") cpu=$(minus "$w1" "$w0") server=$(minus "$s1" "$s0")
  printf '%-6s round=%s n=%s wall_s=%s worker_cpu_s=%s worker_peak_rss_mb=%s server_cpu_s=%s sum=%s\n' \
    "$side" "$round" "$n" "$wall" "$cpu" "$rss" "$server" "$check"
  printf '%s %s %s %s %s %s %s\n' "$side" "$round" "$wall" "$cpu" "$rss" "$server" "$check" >>"$run_dir/results"
}

for round in $(seq "$rounds"); do
  echo "compare: round $round: python" >&2
  run_side python "$round"
  echo "compare: round $round: rust" >&2
  run_side rust "$round"
done

python3 - "$run_dir/results" "$n" "$(date -u)" "$(nproc)" "$(uname -m)" <<'PY'
import statistics, sys
path, n, date, cpus, arch = sys.argv[1:]
runs = {}
for line in open(path):
    side, rnd, wall, cpu, rss, server, check = line.split()
    runs[(side, int(rnd))] = dict(wall=float(wall), cpu=float(cpu), rss=float(rss),
                                  server=float(server), check=check)
names = [("wall", "wall"), ("cpu", "worker_cpu"), ("rss", "worker_peak_rss"), ("server", "server_cpu")]
ratios = {k: [] for k, _ in names}
def ratio(a, b):
    return a / b if b > 0 else None
def fmt(r):
    return "n/a" if r is None else f"{r:.2f}"
print(f"ratios python/rust, n={n}:")
for rnd in sorted({r for _, r in runs}):
    py, rs = runs[("python", rnd)], runs[("rust", rnd)]
    parts = []
    for key, label in names:
        r = ratio(py[key], rs[key])
        if r is not None:
            ratios[key].append(r)
        parts.append(f"{label}={fmt(r)}")
    print(f"  round {rnd}: " + " ".join(parts))
print("  median:  " + " ".join(
    f"{label}={fmt(statistics.median(ratios[key]) if ratios[key] else None)}" for key, label in names))
exact = all(v["check"] == "exact" for v in runs.values())
print(f"sums: {'all exact' if exact else 'NOT ALL EXACT'}")
print(f"measured {date} on {cpus} CPU(s), {arch}; one in-memory dev server, runs alternated")
sys.exit(0 if exact else 1)
PY
