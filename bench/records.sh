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
# Prints per run: wall seconds, MB/s of the source, CPU seconds (this project's worker, Temporal
# server and starter; jq's and DuckDB's own), and each job's median ratios (this project against
# jq and against DuckDB) and median CPU (this project's three processes against DuckDB's). Every output of
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
bench_node json_field json_filter -- --no-cache --allow-read "$source_file" --allow-write "$run_dir"

field_config='{"field": "amount"}'
filter_config='{"field": "kind", "equals": "click", "select": ["id", "amount"]}'
field_jq='.amount'
filter_jq='select(.kind == "click") | {amount, id}'
field_sql="SELECT amount FROM read_json('$source_file', format = 'newline_delimited')"
filter_sql="SELECT amount, id FROM read_json('$source_file', format = 'newline_delimited') WHERE kind = 'click'"
results="$run_dir/results.tsv"

cpu_since() { python3 -c "print(f'{$(cpu_seconds "$1") - $2:.2f}')"; }
report() { # JOB TOOL SECONDS CPU [SERVER_CPU STARTER_CPU]: this project's CPU is its worker's
  python3 -c 'import sys
job, tool, wall, cpu, server, starter, bytes_, results = sys.argv[1:]
wall = float(wall)
total = float(cpu) + (float(server) + float(starter) if server != "-" else 0)
with open(results, "a") as f:
    f.write(f"{job}\t{tool}\t{wall}\t{total}\n")
line = f"{job:<7} {tool:<8} {wall:7.2f} s {int(bytes_) / wall / 1e6:7.1f} MB/s   CPU {cpu:>5} s"
if server != "-":
    line += f" worker, {server:>5} s server, {starter:>5} s starter"
print(line)' "$1" "$2" "$3" "$4" "${5:--}" "${6:--}" "$bytes" "$results"
}
# timed COMMAND...: runs it; prints its wall seconds and the user + system CPU seconds of it and
# its children (jq with the shell around it; DuckDB with its Python, started and importing).
# Bash's own `time`: a Python wrapper's getrusage counts ~0.05 s of its fork in the child's CPU.
timed() {
  local TIMEFORMAT='%R %U %S'
  # The command's own output goes there too, before the times: the last line.
  { time "$@" >&2; } 2>"$run_dir/time.txt" || { cat "$run_dir/time.txt" >&2; return 1; }
  tail -1 "$run_dir/time.txt" | awk '{ printf "%s %.2f\n", $1, $2 + $3 }'
}

run_project() { # JOB PLUGIN CONFIG ROUND
  local out="$run_dir/out-$1-$4" w0 s0 wall starter
  w0=$(cpu_seconds "$worker_pid") s0=$(cpu_seconds "$server_pid")
  read -r wall starter < <(timed sh -c '"$@" >"$0" 2>"$0.err"' "$run_dir/summary.txt" \
    ./target/release/starter --address "$address" --source "$source_file" --plugin "$2" \
    --plugin-config "$3" --output "$out") ||
    { cat "$run_dir/summary.txt.err" >&2; exit 1; }
  report "$1" project "$wall" "$(cpu_since "$worker_pid" "$w0")" \
    "$(cpu_since "$server_pid" "$s0")" "$starter"
  cat "$out"/part-* | cmp -s - "$run_dir/jq-$1.out" ||
    { echo "bench/records.sh: the $1 job's output differs from jq's" >&2; exit 1; }
  rm -rf "$out"
}

run_jq() { # JOB FILTER
  local wall cpu
  read -r wall cpu < <(timed sh -c 'jq -c "$1" "$2" >"$3"' jq "$2" "$source_file" "$run_dir/jq-$1.out") ||
    { echo "bench/records.sh: jq failed on the $1 job" >&2; exit 1; }
  report "$1" jq "$wall" "$cpu"
}

run_duckdb() { # JOB SQL
  local rows lines wall cpu
  rm -f "$run_dir/duckdb-$1.csv"
  read -r wall cpu < <(timed "$venv/bin/python" -c 'import sys, duckdb
duckdb.sql(f"COPY ({sys.argv[1]}) TO {sys.argv[2]!r} (HEADER false)")' "$2" "$run_dir/duckdb-$1.csv") ||
    { echo "bench/records.sh: DuckDB failed on the $1 job" >&2; exit 1; }
  report "$1" duckdb "$wall" "$cpu"
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
walls, cpus = defaultdict(list), defaultdict(list)
for line in open(sys.argv[1]):
    job, tool, wall, cpu = line.split("\t")
    walls[job, tool].append(float(wall))
    cpus[job, tool].append(float(cpu))
for job in ("field", "filter"):
    med = {tool: statistics.median(walls[job, tool]) for tool in ("project", "jq", "duckdb")}
    cpu = {tool: statistics.median(cpus[job, tool]) for tool in ("project", "duckdb")}
    print(f"{job}: median wall s: project {med['project']:.2f}, jq {med['jq']:.2f}, "
          f"duckdb {med['duckdb']:.2f}; project/jq {med['project'] / med['jq']:.2f}, "
          f"project/duckdb {med['project'] / med['duckdb']:.2f}; median CPU s (worker + "
          f"server + starter against DuckDB's own): {cpu['project']:.2f} / {cpu['duckdb']:.2f}")
EOF
