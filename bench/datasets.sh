#!/usr/bin/env bash
# The dataset benchmark (docs/benchmarks.md, "Datasets against DuckDB"):
#   bench/datasets.sh [RECORDS] [OBJECTS] [ROUNDS]   (defaults: 10000000 records, ~1.05 GB of
#                                                     JSON Lines; 20 objects; 3 rounds)
# Makes RECORDS JSON Lines (scripts/make-dataset.py), deals them in order into OBJECTS gzip
# objects (~50 MB each before compression), and writes the same records as OBJECTS Parquet
# files (by DuckDB, from the gzip objects), all cached in target/bench-data. Then, on one dev
# server and one worker, alternating, ROUNDS times each, one job on each dataset: the `amount`
# of every record to an output, one per line:
#   gzip:    this project, json_field over the prefix of .jsonl.gz objects;
#            DuckDB: COPY (SELECT amount FROM read_json('DIR/*.jsonl.gz')) TO csv;
#   parquet: this project, json_field over the prefix of .parquet files with --columns amount;
#            DuckDB: COPY (SELECT amount FROM read_parquet('DIR/*.parquet')) TO csv.
# Prints each run's wall and CPU seconds (this project's worker, server and starter; DuckDB's
# own, Python's start included) and each job's median ratio. The outputs must be equal, byte
# for byte (the parts concatenated against DuckDB's CSV); otherwise the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-10000000} objects=${2:-20} rounds=${3:-3}
cargo build --quiet --release --workspace --bins
[ -f target/plugins/json_field.wasm ] || bash scripts/build-plugins.sh >/dev/null

venv=target/bench-venv
duckdb_version=2.0.1
if ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
  echo "bench/datasets.sh: installing duckdb $duckdb_version into $venv (pip)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "duckdb==$duckdb_version"
fi

source scripts/lib.sh
source_file=$(bench_dataset "$records")
data="$PWD/target/bench-data/datasets-$records-$objects"
if [ ! -f "$data/done" ]; then
  echo "bench/datasets.sh: dealing $source_file into $objects gzip objects and Parquet files"
  rm -rf "$data" && mkdir -p "$data/gzip" "$data/parquet"
  python3 - "$source_file" "$objects" "$data/gzip" <<'EOF'
import gzip, os, sys
source, objects, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = sum(1 for _ in open(source, "rb"))
per = -(-lines // objects)
with open(source, "rb") as f:
    for k in range(objects):
        path = os.path.join(out, f"part-{k:05d}.jsonl.gz")
        with gzip.GzipFile(path, "wb", compresslevel=6, mtime=0) as part:
            for _ in range(per):
                line = f.readline()
                if not line:
                    break
                part.write(line)
EOF
  "$venv/bin/python" - "$data" <<'EOF'
import duckdb, glob, os, sys
data = sys.argv[1]
for part in sorted(glob.glob(f"{data}/gzip/*.jsonl.gz")):
    name = os.path.basename(part).replace(".jsonl.gz", ".parquet")
    duckdb.sql(f"COPY (SELECT * FROM read_json('{part}', format = 'newline_delimited')) "
               f"TO '{data}/parquet/{name}' (FORMAT parquet, COMPRESSION zstd)")
EOF
  touch "$data/done"
fi
gzip_bytes=$(cat "$data"/gzip/* | wc -c) parquet_bytes=$(cat "$data"/parquet/* | wc -c)
bench_node json_field -- --no-cache --allow-read "$data" --allow-write "$run_dir"
results="$run_dir/results.tsv"

cpu_since() { python3 -c "print(f'{$(cpu_seconds "$1") - $2:.2f}')"; }
# timed COMMAND...: runs it; prints its wall seconds and the user + system CPU seconds of it and
# its children (bash's own `time`).
timed() {
  local TIMEFORMAT='%R %U %S'
  { time "$@" >&2; } 2>"$run_dir/time.txt" || { cat "$run_dir/time.txt" >&2; return 1; }
  tail -1 "$run_dir/time.txt" | awk '{ printf "%s %.2f\n", $1, $2 + $3 }'
}
report() { # JOB TOOL WALL CPU
  printf '%s\t%s\t%s\t%s\n' "$@" >>"$results"
  printf '%-8s %-8s %7.2f s   CPU %6.2f s\n' "$@"
}

run_project() { # JOB DIR ROUND EXTRA...
  local job=$1 dir=$2 round=$3 out="$run_dir/out-$1-$3" w0 s0 wall starter
  shift 3
  w0=$(cpu_seconds "$worker_pid") s0=$(cpu_seconds "$server_pid")
  read -r wall starter < <(timed sh -c '"$@" >"$0" 2>"$0.err"' "$run_dir/summary.txt" \
    ./target/release/starter --address "$address" --source "$dir/" --plugin json_field \
    --plugin-config '{"field": "amount"}' --output "$out" "$@") ||
    { cat "$run_dir/summary.txt.err" >&2; exit 1; }
  report "$job" project "$wall" "$(python3 -c "print($(cpu_since "$worker_pid" "$w0") + $(cpu_since "$server_pid" "$s0") + $starter)")"
  cat "$out"/part-* >"$run_dir/project-$job.out"
  rm -rf "$out"
}

run_duckdb() { # JOB SQL
  local wall cpu
  read -r wall cpu < <(timed "$venv/bin/python" -c 'import sys, duckdb
duckdb.sql(f"COPY ({sys.argv[1]}) TO {sys.argv[2]!r} (HEADER false)")' "$2" "$run_dir/duckdb-$1.csv") ||
    { echo "bench/datasets.sh: DuckDB failed on the $1 job" >&2; exit 1; }
  report "$1" duckdb "$wall" "$cpu"
  cmp -s "$run_dir/project-$1.out" "$run_dir/duckdb-$1.csv" ||
    { echo "bench/datasets.sh: the $1 job's outputs differ (this project's against DuckDB's)" >&2; exit 1; }
}

echo "bench/datasets.sh: $records records in $objects objects: $gzip_bytes bytes of gzip JSON Lines, $parquet_bytes bytes of Parquet; $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, duckdb $duckdb_version"
for round in $(seq "$rounds"); do
  run_project gzip "$data/gzip" "$round"
  run_duckdb gzip "SELECT amount FROM read_json('$data/gzip/*.jsonl.gz', format = 'newline_delimited')"
  run_project parquet "$data/parquet" "$round" --columns amount
  run_duckdb parquet "SELECT amount FROM read_parquet('$data/parquet/*.parquet')"
done
python3 - "$results" <<'EOF'
import statistics, sys
from collections import defaultdict
walls, cpus = defaultdict(list), defaultdict(list)
for line in open(sys.argv[1]):
    job, tool, wall, cpu = line.split("\t")
    walls[job, tool].append(float(wall))
    cpus[job, tool].append(float(cpu))
for job in ("gzip", "parquet"):
    med = {tool: statistics.median(walls[job, tool]) for tool in ("project", "duckdb")}
    cpu = {tool: statistics.median(cpus[job, tool]) for tool in ("project", "duckdb")}
    print(f"{job}: median wall s: project {med['project']:.2f}, duckdb {med['duckdb']:.2f}, "
          f"project/duckdb {med['project'] / med['duckdb']:.2f}; median CPU s: "
          f"{cpu['project']:.2f} / {cpu['duckdb']:.2f}")
EOF
