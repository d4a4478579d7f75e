#!/usr/bin/env bash
# Interpreter plugins on records (docs/benchmarks.md, "Interpreter plugins on records"):
#   bench/interpreters.sh [RECORDS] [ROUNDS]      (defaults: 30000 records; 3 rounds)
# The per-record cost of the Python plugin (py_square: a JSON record in, the record with a
# field added out) and of the JavaScript one (js_fizzbuzz: a line in, the line in upper case
# out) in the sandbox, against the same code run by CPython and Node outside it
# (bench/native/: the plugins' own app.py and plugin.js), on the same JSON Lines, alternating. In
# the sandbox: the median of `batch-plugin run`'s per-block figures once blocks are full;
# outside: the plugin calls' own time, over blocks of 4,096.
# Prints each round's figures and the median ratios. (30,000 records: a JavaScript instance's
# memory grows with every record it sees, see docs/benchmarks.md.)
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-30000} rounds=${2:-3}
cargo build --quiet --release --workspace --bins
[ -f target/plugins/py_square.wasm ] && [ -f target/plugins/js_fizzbuzz.wasm ] ||
  bash scripts/build-plugins.sh >/dev/null
data=$(mktemp)
trap 'rm -f "$data"' EXIT
python3 -c '
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(1, int(sys.argv[2]) + 1):
        f.write(json.dumps({"n": i, "user": f"u{i * 7919 % 10000}", "kind": "click"}, separators=(",", ":")) + "\n")
' "$data" "$records"

# The median ns/item of the full blocks `batch-plugin run` reports on stderr.
in_sandbox() {
  ./target/release/batch-plugin run "target/plugins/$1.wasm" --lines "$data" 2>&1 >/dev/null |
    sed -n 's/^block [0-9]*\.\.=[0-9]*: \([0-9]*\) items in .* (\([0-9]*\) ns\/item).*/\1 \2/p' |
    awk '$1 >= 1024 { print $2 }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

echo "bench/interpreters.sh: $records records, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(python3 --version), node $(node --version), componentize-py $(componentize-py --version | cut -d' ' -f2)"
results=$(mktemp)
for round in $(seq "$rounds"); do
  py_wasm=$(in_sandbox py_square) py_native=$(python3 bench/native/py_square.py "$data")
  js_wasm=$(in_sandbox js_fizzbuzz) js_native=$(node bench/native/js_fizzbuzz.mjs "$data")
  echo "round $round: python sandbox $py_wasm ns, CPython $py_native ns; javascript sandbox $js_wasm ns, Node $js_native ns (per record)"
  echo "$py_wasm $py_native $js_wasm $js_native" >>"$results"
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1])]
med = [statistics.median(column) for column in zip(*rows)]
print(f"median per record: python {med[0]:.0f} ns in the sandbox, {med[1]:.0f} ns in CPython "
      f"({med[0] / med[1]:.2f}x); javascript {med[2]:.0f} ns in the sandbox, {med[3]:.0f} ns in "
      f"Node ({med[2] / med[3]:.1f}x)")
PY
rm -f "$results"
