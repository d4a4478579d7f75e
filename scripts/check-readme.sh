#!/usr/bin/env bash
# Runs every command of README.md and docs/*.md, so the documents cannot drift from the code.
#
# Every line of every ```bash block is a command (comments and blank lines aside). Each must
# match a rule below, which runs it (literally where possible) against a dev server this script
# starts, and checks what the document says it prints (`# Total: 656`, `# Sum of all outputs:
# 10100`). A command no rule knows fails the check: a new command in a document needs a rule
# here. The documents run in one go, README.md first, then docs/*.md in name order, and share
# what they start: the worker of the README's three-terminal flow serves the batches of the
# documents after it, and its batches are the ones the `temporal workflow` commands look at.
# Expects a release build and the plugins (scripts/test.sh runs this last).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

fail() {
  echo "check-readme: $*" >&2
  exit 1
}

# The documents whose commands run, in order.
documents=(README.md docs/*.md)

# A document's bash lines, one per line: "<line number>\t<command>\t<expected output or empty>".
document_commands() {
  python3 - "$1" <<'PY'
import re, sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
in_bash = False
for number, line in enumerate(lines, 1):
    if line.startswith("```"):
        in_bash = (not in_bash) and line.strip() == "```bash"
        continue
    if not in_bash or not line.strip() or line.lstrip().startswith("#"):
        continue
    command, _, comment = line.partition("  #")
    # A comment that quotes output ("Total: 656", "Sum of all outputs: 10100") is checked.
    expected = comment.strip() if re.match(r"\s*[A-Z][A-Za-z ]+: \S+$", comment) else ""
    print(f"{number}\t{command.strip()}\t{expected}")
PY
}

# The block of the given language that follows the line containing MARKER in DOCUMENT (the
# plugin example): document_block_after DOCUMENT MARKER LANGUAGE.
document_block_after() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
document, marker, language = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(document, encoding="utf-8").read()
rest = text[text.index(marker):]
start = rest.index("```" + language + "\n") + len(language) + 4
print(rest[start:rest.index("```", start)], end="")
PY
}

# run WHERE COMMAND EXPECTED: WHERE is "<document>:<line>".
run() {
  local where=$1 command=$2 expected=$3 out
  echo "check-readme: $where: $command"
  local started=$SECONDS
  # A command that hangs (say, a starter with no worker) fails the check instead.
  if ! out=$(timeout 900 bash -c "$command" 2>&1 </dev/null); then
    echo "$out" >&2
    fail "$where failed: $command"
  fi
  # What each command costs, for keeping CI's time in check.
  echo "check-readme: $where: ok in $((SECONDS - started)) s"
  echo "$command" >>"$run_dir/ran"
  if [ -n "$expected" ] && ! grep -qF -- "$expected" <<<"$out"; then
    echo "$out" >&2
    fail "$where: expected \"$expected\" in the output of: $command"
  fi
}

port=$(free_port)
start_dev_server "$port"
export TEMPORAL_ADDRESS="127.0.0.1:$port"
# For the profile examples: a namespace and a temporal.toml of our own.
temporal operator namespace create --namespace batch --address "$TEMPORAL_ADDRESS" >/dev/null
cat >"$run_dir/temporal.toml" <<EOF
[profile.prod]
address = "$TEMPORAL_ADDRESS"
namespace = "batch"
EOF
# The plugin examples add crates (and `cargo new` adds them to the workspace) and Python and
# JavaScript plugin directories: undo all of it at the end.
cp Cargo.toml Cargo.lock "$run_dir/"
example_plugins=(double halve scale odd_squares)
cleanup_examples() {
  for name in "${example_plugins[@]}"; do
    rm -rf "plugins/$name" "plugins/python/$name" "plugins/js/$name" \
      "target/plugins/$name.wasm" "target/polyglot/$name.wasm"
  done
  cp "$run_dir/Cargo.toml" "$run_dir/Cargo.lock" .
}
trap 'cleanup_examples; stop_tracked' EXIT

# write_example DOCUMENT PATH LANGUAGE: writes the block that follows PATH in DOCUMENT to PATH.
write_example() {
  document_block_after "$1" "$2" "$3" >"$2"
}

checked=0
for document in "${documents[@]}"; do
  while IFS=$'\t' read -r number command expected; do
    where="$document:$number"
    case "$command" in
      "scripts/test.sh")
        echo "check-readme: $where: $command (what runs this check)" ;;
      "scripts/demo.sh"*)
        # The main job starts its own dev server when TEMPORAL_ADDRESS is not set.
        if [ "$command" = "scripts/demo.sh" ]; then expected="Sum of all squares: 2668667000"; fi
        run "$where" "env -u TEMPORAL_ADDRESS $command" "$expected" ;;
      "temporal server start-dev")
        echo "check-readme: $where: $command (running: on $TEMPORAL_ADDRESS)" ;;
      "./target/release/worker --allow-read "*)
        # The README's worker, with the grants it documents (its words expanded by bash).
        echo "check-readme: $where: $command (in the background)"
        eval "start_worker ${command#./target/release/worker }" ;;
      "./target/release/worker --metrics-addr "*)
        echo "check-readme: $where: $command (in the background)"
        NO_COLOR=1 bash -c "$command" >"$run_dir/metrics-worker.log" 2>&1 &
        track $!
        wait_until 60 "the metrics worker" grep -q "worker started" "$run_dir/metrics-worker.log" ||
          fail "$where: $(cat "$run_dir/metrics-worker.log")" ;;
      "./target/release/worker --plugin-store "*)
        # The fleet's worker, on its own task queue, with nothing but the store.
        echo "check-readme: $where: $command (in the background)"
        NO_COLOR=1 bash -c "$command" >"$run_dir/fleet-worker.log" 2>&1 &
        track $!
        wait_until 60 "the fleet worker" grep -q "worker started" "$run_dir/fleet-worker.log" ||
          fail "$where: $(cat "$run_dir/fleet-worker.log")" ;;
      "TEMPORAL_PROFILE=prod ./target/release/worker --plugins-dir /srv/batch-plugins")
        # The profile points at this script's server; the plugins are this checkout's.
        echo "check-readme: $where: $command (in the background, with target/plugins)"
        TEMPORAL_CONFIG_FILE="$run_dir/temporal.toml" TEMPORAL_PROFILE=prod NO_COLOR=1 \
          env -u TEMPORAL_ADDRESS ./target/release/worker --plugins-dir target/plugins \
          >"$run_dir/prod-worker.log" 2>&1 &
        track $!
        wait_until 60 "the prod worker" grep -q 'worker started.*namespace=batch' \
          "$run_dir/prod-worker.log" || fail "$where: $(cat "$run_dir/prod-worker.log")" ;;
      "TEMPORAL_PROFILE=prod "*)
        profile="export TEMPORAL_CONFIG_FILE=$run_dir/temporal.toml; unset TEMPORAL_ADDRESS"
        run "$where" "$profile; $command" "$expected" ;;
      "cargo new --lib plugins/"*)
        # A Rust plugin example: the crate, then the document's own Cargo.toml and lib.rs.
        crate=${command#cargo new --lib }
        [ ! -e "$crate" ] || fail "$crate exists already: remove it to run the check"
        run "$where" "$command" ""
        write_example "$document" "$crate/Cargo.toml" toml
        write_example "$document" "$crate/src/lib.rs" rust ;;
      "mkdir -p plugins/python/"* | "mkdir -p plugins/js/"*)
        # A Python or JavaScript plugin example: its directory, then the document's source.
        dir=${command#mkdir -p }
        [ ! -e "$dir" ] || fail "$dir exists already: remove it to run the check"
        run "$where" "$command" ""
        case "$dir" in
          plugins/python/*) write_example "$document" "$dir/app.py" python ;;
          *) write_example "$document" "$dir/plugin.js" javascript ;;
        esac ;;
      "cargo bench "*)
        # Every benchmark runs, each measured briefly: the figures are for docs/benchmarks.md,
        # taken with criterion's defaults; here only that the command works as documented.
        case "$command" in *" -- "*) quick="" ;; *) quick=" --" ;; esac
        run "$where" "$command$quick --warm-up-time 0.2 --measurement-time 0.5" "$expected" ;;
      "scripts/setup.sh && cargo build --release --workspace --bins && scripts/build-plugins.sh" | \
      "scripts/build-plugins.sh" | \
      "./target/release/starter"* | "./target/release/worker --list-plugins" | \
      "./target/release/batch-plugin "* | \
      "temporal workflow "* | "temporal task-queue describe "* | "bench/run.sh "* | \
      "curl -s http://127.0.0.1:9464/metrics"* | \
      "scripts/make-dataset.py "* | "ls target/"* | "head -n "* | "bench/data.sh "* | \
      "rm -rf target/fleet")
        run "$where" "$command" "$expected" ;;
      *)
        fail "$where: no rule runs this command; add one to $0: $command" ;;
    esac
    checked=$((checked + 1))
  done < <(document_commands "$document")
done
[ "$checked" -gt 0 ] || fail "found no commands in ${documents[*]}"
echo "check-readme: all $checked commands of ${documents[*]} ran as documented"

# The examples of `starter --help`, run from the repository root as the help shows them,
# against the README's worker (granted target/data and target/out), on the README's data
# and the same records as CSV. An example the documents ran already is not run twice.
scripts/make-dataset.py csv 100000 target/data/events.csv
examples=0
while IFS= read -r example; do
  command="./target/release/${example}"
  if grep -qxF -- "$command" "$run_dir/ran"; then
    continue
  fi
  run "starter --help" "$command" ""
  examples=$((examples + 1))
done < <(./target/release/starter --help | sed -n 's/^  \(starter\( .*\)\?\)$/\1/p' |
  sed 's/  *# .*$//')
[ "$examples" -gt 0 ] || fail "found no examples in starter --help"
echo "check-readme: all $examples further examples of starter --help ran"
