#!/usr/bin/env bash
# Plugins that call services (docs/benchmarks.md, "Requests through the engine"):
#   bench/http.sh [REQUESTS] [ROUNDS] [LEAVES]      (defaults: 2000 requests, 3 rounds, 8 leaves)
# One local service (e2e's http_test_server, recording every request) and, alternating in each
# round, REQUESTS POSTs of `{"n": i}` with an Idempotency-Key made by:
#   direct   e2e's http_load: a native client, a new connection per request, one at a time;
#   sandbox  `batch-plugin run` of http_post (Rust), granted the service: one item per call,
#            no server; its per-request time minus the direct one is the host's overhead;
#   direct   again, LEAVES at a time;
#   engine   a whole batch on a dev server of its own: `starter --source` of REQUESTS records,
#            LEAVES leaves (splits of the file's size / LEAVES bytes), one worker granted the
#            service; with its worker's and the
#            server's CPU.
# Prints each round's figures and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-2000} rounds=${2:-3} leaves=${3:-8}
cargo build --quiet --release --workspace --bins
[ -f target/plugins/http_post.wasm ] || bash scripts/build-plugins.sh >/dev/null

source scripts/lib.sh

./target/release/http_test_server "$run_dir/service.jsonl" >"$run_dir/service.out" 2>&1 &
track $!
wait_until 30 "the service" grep -q "listening on" "$run_dir/service.out"
service=$(sed -n 's|^listening on http://||p' "$run_dir/service.out")
url="http://$service/items"
config="{\"url\": \"$url\", \"output_field\": \"id\"}"
data="$run_dir/items.jsonl"
python3 -c 'import sys; [print("{\"n\":%d}" % i) for i in range(1, int(sys.argv[1]) + 1)]' "$requests" >"$data"

bench_node http_post -- --allow-http "$service" --allow-read "$run_dir"

# direct AT_ONCE: the native client's microseconds per request and requests per second.
direct() {
  ./target/release/http_load "$url" "$requests" "$1" |
    sed -n 's/.* \([0-9]*\) requests\/s, \([0-9]*\) us per request/\2 \1/p'
}

# sandbox: microseconds per request in `batch-plugin run` (the calls' own time), checked.
sandbox() {
  ./target/release/batch-plugin run target/plugins/http_post.wasm --lines "$data" \
    --config "$config" --allow-http "$service" 2>"$run_dir/sandbox.err" >"$run_dir/sandbox.out"
  grep -q "^Failed: 0$" "$run_dir/sandbox.out" || { cat "$run_dir/sandbox.err" >&2; exit 1; }
  sed -n 's/^block .*: 1 items in \([0-9.]*\) ms .*/\1/p' "$run_dir/sandbox.err" |
    awk -v n="$requests" '{ total += $1 } END { printf "%.0f\n", total * 1000 / n }'
}

# engine: requests per second of a whole batch, worker and server CPU seconds, and the sum.
engine() {
  local s0 w0 start end
  s0=$(cpu_seconds "$server_pid") w0=$(cpu_seconds "$worker_pid") start=$(date +%s.%N)
  ./target/release/starter --address "$address" --source "$data" --plugin http_post \
    --plugin-config "$config" --http-allow "$service" --split-size $(($(wc -c <"$data") / leaves + 1)) \
    --max-leaves-in-flight "$leaves" >"$run_dir/summary.txt" 2>"$run_dir/starter.err" ||
    { cat "$run_dir/starter.err" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 -c 'import sys; n, a, b, s0, s1, w0, w1 = map(float, sys.argv[1:8]); print(f"{n / (b - a):.0f} {w1 - w0:.2f} {s1 - s0:.2f}")' \
    "$requests" "$start" "$end" "$s0" "$(cpu_seconds "$server_pid")" "$w0" "$(cpu_seconds "$worker_pid")"
  grep -q "^Sum of all outputs: $((3 * requests * (requests + 1) / 2))$" "$run_dir/summary.txt" ||
    { echo "wrong sum:" >&2; cat "$run_dir/summary.txt" >&2; exit 1; }
}

echo "bench/http.sh: $requests requests, $leaves leaves, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
results="$run_dir/results"
for round in $(seq "$rounds"); do
  read -r d_us d_rate < <(direct 1)
  s_us=$(sandbox)
  read -r p_us p_rate < <(direct "$leaves")
  read -r e_rate e_worker e_server < <(engine)
  echo "round $round: one at a time: direct $d_us us, sandbox $s_us us per request (host $((s_us - d_us)) us);" \
    "$leaves at once: direct $p_rate/s, engine $e_rate/s (worker CPU $e_worker s, server CPU $e_server s)"
  echo "$d_us $s_us $p_rate $e_rate $e_worker $e_server" >>"$results"
done
python3 - "$results" "$requests" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
d, s, p, e, w, srv = (statistics.median(c) for c in zip(*rows))
n = int(sys.argv[2])
print(f"median: one at a time {d:.0f} us direct, {s:.0f} us in the sandbox: the host adds {s - d:.0f} us "
      f"per request ({s / d:.2f}x); at once {p:.0f}/s direct, {e:.0f}/s through the engine ({e / p:.2f}x), "
      f"worker CPU {w * 1e6 / n:.0f} us and server CPU {srv * 1e6 / n:.0f} us per request")
PY
