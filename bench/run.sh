#!/usr/bin/env bash
# One benchmark run on a fresh, in-memory dev server of its own:
#   bench/run.sh [N] [BATCH_SIZE] [MAX_CHILDREN] [MODE]     (defaults: 2000 10 5 item)
# Builds what is missing, starts the server and a release worker (extra flags in
# BENCH_WORKER_ARGS; another worker binary in WORKER_BIN), runs the starter (extra flags in
# BENCH_STARTER_ARGS, e.g. "--max-leaves-in-flight 500") with
# `--mode MODE` and `--plugin ${BENCH_PLUGIN:-square_number}` (a plugin computing squares:
# square_number, interface v1, or square_v2), and prints one line:
#   n, mode, wall seconds, items per second, workflows, activities, workflow tasks of one leaf,
#   worker CPU seconds and peak RSS, server CPU seconds, and the check of the exact sum.
# CPU figures cover the batch only (counters are read before and after it).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000} batch=${2:-10} children=${3:-5} mode=${4:-item}

cargo build --quiet --release --workspace --bins
[ -f target/plugins/square_number.wasm ] || bash scripts/build-plugins.sh >/dev/null

source scripts/lib.sh

peak_rss_mb() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
plugin=${BENCH_PLUGIN:-square_number}
# BENCH_WORKER_ARGS: extra worker flags, e.g. "--max-cached-workflows 100".
# shellcheck disable=SC2086
bench_node "$plugin" -- --no-cache ${BENCH_WORKER_ARGS:-}

server_cpu0=$(cpu_seconds "$server_pid")
worker_cpu0=$(cpu_seconds "$worker_pid")
start=$(date +%s.%N)
./target/release/starter "$n" "$batch" "$children" --mode "$mode" --plugin "$plugin" ${BENCH_STARTER_ARGS:-} --address "$address" \
  >"$run_dir/summary.txt" 2>"$run_dir/starter.err" || { cat "$run_dir/starter.err" >&2; exit 1; }
end=$(date +%s.%N)
server_cpu1=$(cpu_seconds "$server_pid")
worker_cpu1=$(cpu_seconds "$worker_pid")
worker_rss=$(peak_rss_mb "$worker_pid")

field() { sed -n "s/^$1: //p" "$run_dir/summary.txt"; }
sum=$(sed -n "s/^Sum of all \(squares\|outputs\): //p" "$run_dir/summary.txt")
depth=$(field "Tree depth (max nesting level)")
root=$(field "Workflow ID")
leaf="$root"; for _ in $(seq "$depth"); do leaf="$leaf-c0"; done
leaf_tasks=$(temporal workflow show --address "$address" --workflow-id "$leaf" --output json |
  python3 -c 'import json,sys; print(sum("workflowTaskCompletedEventAttributes" in e for e in json.load(sys.stdin)["events"]))')

python3 - "$n" "$mode:$plugin" "$start" "$end" "$(field Workflows)" "$(field Activities)" "$leaf_tasks" \
  "$worker_cpu0" "$worker_cpu1" "$worker_rss" "$server_cpu0" "$server_cpu1" "$sum" <<'PY'
import sys
n, mode, start, end, workflows, activities, leaf_tasks, w0, w1, rss, s0, s1, total = sys.argv[1:]
n = int(n); wall = float(end) - float(start)
expected = n * (n + 1) * (2 * n + 1) // 6
check = "ok" if int(total) == expected else f"MISMATCH (expected {expected})"
print(f"n={n} mode={mode} wall_s={wall:.2f} items_per_s={n / wall:,.0f} workflows={workflows} "
      f"activities={activities} leaf_workflow_tasks={leaf_tasks} "
      f"worker_cpu_s={float(w1) - float(w0):.2f} worker_peak_rss_mb={rss} "
      f"server_cpu_s={float(s1) - float(s0):.2f} sum={total} sum_check={check}")
PY
