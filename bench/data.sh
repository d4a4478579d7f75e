#!/usr/bin/env bash
# The data benchmark (docs/benchmarks.md, "Data batches against jq"):
#   bench/data.sh [RECORDS] [ROUNDS]      (defaults: 10000000 records, ~1.2 GB; 2 rounds)
# Generates RECORDS JSON Lines (scripts/make-dataset.py, cached in target/bench-data), then, on
# one machine, alternating, ROUNDS times each:
#   - jq: `jq -c 'select(.kind == "click") | {amount, id}'` from the file to a file;
#   - the batch: the same transform by the json_filter plugin through the tree (batch leaves
#     of 64 MiB splits), from the file to an output directory, on a fresh dev server and worker;
#   - the batch again with the source and the output on the S3-compatible test server.
# Prints, per run: wall seconds, records per second, the worker's and the server's CPU seconds
# (the server's work is small here: one workflow and one activity per split), and checks each
# batch's output, concatenated, against jq's, byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-10000000} rounds=${2:-2}
command -v jq >/dev/null || { echo "bench/data.sh: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
cargo build --quiet --release --workspace --bins
[ -f target/plugins/json_filter.wasm ] || bash scripts/build-plugins.sh >/dev/null
source scripts/lib.sh
source_file=$(bench_dataset "$records")
bytes=$(stat -c %s "$source_file")
port=$(free_port)
address="127.0.0.1:$port"
start_dev_server "$port"
server_pid=${tracked[0]}
mkdir -p "$run_dir/plugins" "$run_dir/s3/bench"
cp target/plugins/json_filter.wasm "$run_dir/plugins/"
./target/release/s3_test_server "$run_dir/s3" bench-key bench-secret >"$run_dir/s3.log" 2>&1 &
track $!
wait_until 30 "the S3 server" grep -q "listening on" "$run_dir/s3.log"
export AWS_ENDPOINT=$(sed -n 's/^listening on //p' "$run_dir/s3.log") AWS_ALLOW_HTTP=true \
  AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
# The source, uploaded once through S3, as any client would (s3s-fs then keeps its ETag; a
# file merely copied into its directory would be hashed whole on every ranged read).
./target/release/s3_put "$source_file" s3://bench/events.jsonl >/dev/null
# Granted exactly what the runs read and write: the dataset, the outputs, the test bucket.
start_worker --address "$address" --plugins-dir "$run_dir/plugins" --no-cache \
  --allow-read "$source_file" --allow-read s3://bench/events.jsonl \
  --allow-write "$run_dir" --allow-write s3://bench/
worker_pid=${tracked[2]}
config='{"field": "kind", "equals": "click", "select": ["id", "amount"]}'
filter='select(.kind == "click") | {amount, id}'

report() { # NAME SECONDS WORKER_CPU SERVER_CPU
  python3 -c 'import sys
name, wall, w, s, records, bytes_ = sys.argv[1:]
wall = float(wall)
print(f"{name:<6} {wall:8.2f} s {int(records) / wall / 1e6:7.2f} M records/s "
      f"{int(bytes_) / wall / 1e6:8.1f} MB/s  worker CPU {w:>7} s  server CPU {s:>6} s")' "$@" "$records" "$bytes"
}
timed_batch() { # NAME SOURCE OUTPUT CHECK_DIR
  local w0 s0 t0 t1
  w0=$(cpu_seconds "$worker_pid") s0=$(cpu_seconds "$server_pid") t0=$(date +%s.%N)
  ./target/release/starter --address "$address" --source "$2" --plugin json_filter \
    --plugin-config "$config" --output "$3" >"$run_dir/summary.txt" 2>"$run_dir/starter.err" ||
    { cat "$run_dir/starter.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  local w s
  w=$(python3 -c "print(f'{$(cpu_seconds "$worker_pid") - $w0:.2f}')")
  s=$(python3 -c "print(f'{$(cpu_seconds "$server_pid") - $s0:.2f}')")
  report "$1" "$(python3 -c "print($t1 - $t0)")" "$w" "$s"
  cat "$4"/part-* | cmp -s - "$run_dir/jq.out" || { echo "bench/data.sh: $1 output differs from jq's" >&2; exit 1; }
  rm -rf "$4"
}
echo "bench/data.sh: $records records, $bytes bytes, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
for round in $(seq "$rounds"); do
  t0=$(date +%s.%N)
  jq -c "$filter" "$source_file" >"$run_dir/jq.out"
  t1=$(date +%s.%N)
  report jq "$(python3 -c "print($t1 - $t0)")" - -
  # A new output location each round: a new batch (the id names the output), not an attach.
  timed_batch batch "$source_file" "$run_dir/out-$round" "$run_dir/out-$round"
  timed_batch s3 "s3://bench/events.jsonl" "s3://bench/out-$round/" "$run_dir/s3/bench/out-$round"
done
