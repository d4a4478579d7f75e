#!/usr/bin/env bash
# The record benchmark (docs/benchmarks.md, "Records against jq and DuckDB"):
#   bench/records.sh [RECORDS] [ROUNDS]      (defaults: 1000000 records, ~117 MB; 3 rounds)
# Generates RECORDS JSON Lines (scripts/make-dataset.py, cached in target/bench-data), installs
# DuckDB from PyPI into a virtualenv (target/bench-venv), then runs two jobs on the same file,
# alternating, ROUNDS times each, on one dev server and one worker:
#   field:  the `amount` field of every record, one per line
#           (this project: json_field; jq -c .amount; DuckDB: SELECT amount ... TO csv);
#   filter: the click events, two fields selected
#           (this project: json_filter; jq select(...) | {amount, id}; DuckDB: WHERE kind = ...).
# Prints per run: wall seconds, MB/s of the source, the worker's and the server's CPU seconds,
# and each job's median ratios (this project against jq and against DuckDB). Every output of
# this project, its parts concatenated, must equal jq's byte for byte, and DuckDB's row count
# must equal jq's line count; otherwise the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000} rounds=${2:-3}
command -v jq >/dev/null || { echo "bench/records.sh: needs jq (scripts/setup.sh installs it)" >&2; exit 1; }
cargo build --quiet --release --workspace --bins
[ -f target/plugins/json_field.wasm ] && [ -f target/plugins/json_filter.wasm ] ||
  bash scripts/build-plugins.sh >/dev/null

venv=target/bench-venv
duckdb_version=2.0.1
if ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
  echo "bench/records.sh: installing duckdb $duckdb_version into $venv (pip)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "duckdb==$duckdb_version"
fi

source scripts/lib.sh
source_file=$(bench_dataset "$records")
bytes=$(stat -c %s "$source_file")
port=$(free_port)
address="127.0.0.1:$port"
start_dev_server "$port"
server_pid=${tracked[0]}
mkdir -p "$run_dir/plugins"
cp target/plugins/json_field.wasm target/plugins/json_filter.wasm "$run_dir/plugins/"
start_worker --address "$address" --plugins-dir "$run_dir/plugins" --no-cache \
  --allow-read "$source_file" --allow-write "$run_dir"
worker_pid=${tracked[1]}

field_config='{"field": "amount"}'
filter_config='{"field": "kind", "equals": "click", "select": ["id", "amount"]}'
field_jq='.amount'
filter_jq='select(.kind == "click") | {amount, id}'
field_sql="SELECT amount FROM read_json('$source_file', format = 'newline_delimited')"
filter_sql="SELECT amount, id FROM read_json('$source_file', format = 'newline_delimited') WHERE kind = 'click'"
results="$run_dir/results.tsv"

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
cpu_since() { python3 -c "print(f'{$(cpu_seconds "$1") - $2:.2f}')"; }
report() { # JOB TOOL SECONDS WORKER_CPU SERVER_CPU
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"
  python3 -c 'import sys
job, tool, wall, w, s, bytes_ = sys.argv[1:]
wall = float(wall)
print(f"{job:<7} {tool:<8} {wall:7.2f} s {int(bytes_) / wall / 1e6:7.1f} MB/s"
      f"   worker CPU {w:>6} s   server CPU {s:>6} s")' "$@" "$bytes"
}

run_project() { # JOB PLUGIN CONFIG ROUND
  local out="$run_dir/out-$1-$4" w0 s0 t0 t1
  w0=$(cpu_seconds "$worker_pid") s0=$(cpu_seconds "$server_pid") t0=$(now)
  ./target/release/starter --address "$address" --source "$source_file" --plugin "$2" \
    --plugin-config "$3" --output "$out" >"$run_dir/summary.txt" 2>"$run_dir/starter.err" ||
    { cat "$run_dir/starter.err" >&2; exit 1; }
  t1=$(now)
  report "$1" project "$(elapsed "$t0" "$t1")" "$(cpu_since "$worker_pid" "$w0")" \
    "$(cpu_since "$server_pid" "$s0")"
  cat "$out"/part-* | cmp -s - "$run_dir/jq-$1.out" ||
    { echo "bench/records.sh: the $1 job's output differs from jq's" >&2; exit 1; }
  rm -rf "$out"
}

run_jq() { # JOB FILTER
  local t0 t1
  t0=$(now)
  jq -c "$2" "$source_file" >"$run_dir/jq-$1.out"
  t1=$(now)
  report "$1" jq "$(elapsed "$t0" "$t1")" - -
}

run_duckdb() { # JOB SQL
  local t0 t1 rows lines
  rm -f "$run_dir/duckdb-$1.csv"
  t0=$(now)
  "$venv/bin/python" -c 'import sys, duckdb
duckdb.sql(f"COPY ({sys.argv[1]}) TO {sys.argv[2]!r} (HEADER false)")' "$2" "$run_dir/duckdb-$1.csv"
  t1=$(now)
  report "$1" duckdb "$(elapsed "$t0" "$t1")" - -
  rows=$(wc -l <"$run_dir/duckdb-$1.csv") lines=$(wc -l <"$run_dir/jq-$1.out")
  [ "$rows" -eq "$lines" ] ||
    { echo "bench/records.sh: DuckDB gave $rows rows for the $1 job, jq $lines lines" >&2; exit 1; }
}

echo "bench/records.sh: $records records, $bytes bytes, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, jq $(jq --version | tr -d jq-), duckdb $duckdb_version"
for round in $(seq "$rounds"); do
  run_jq field "$field_jq"
  run_project field json_field "$field_config" "$round"
  run_duckdb field "$field_sql"
  run_jq filter "$filter_jq"
  run_project filter json_filter "$filter_config" "$round"
  run_duckdb filter "$filter_sql"
done
python3 - "$results" <<'EOF'
import statistics, sys
from collections import defaultdict
walls = defaultdict(list)
for line in open(sys.argv[1]):
    job, tool, wall = line.split("\t")
    walls[job, tool].append(float(wall))
for job in ("field", "filter"):
    med = {tool: statistics.median(walls[job, tool]) for tool in ("project", "jq", "duckdb")}
    print(f"{job}: median wall s: project {med['project']:.2f}, jq {med['jq']:.2f}, "
          f"duckdb {med['duckdb']:.2f}; project/jq {med['project'] / med['jq']:.2f}, "
          f"project/duckdb {med['project'] / med['duckdb']:.2f}")
EOF
