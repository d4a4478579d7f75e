#!/usr/bin/env bash
# Runs every test: unit tests (planner, aggregation, validation), plugin-host tests (real wasm,
# no server) and end-to-end tests (each test binary starts its own `temporal server start-dev`
# on a free port, the real worker and starter), then every command of the README and docs/
# (scripts/check-readme.sh). Extra arguments go to `cargo test` and skip that check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Binaries and tests in one build, so both see the same features (the end-to-end tests run the
# binaries), then the plugins, then every test of the workspace (plugins' own unit tests too).
# Every cargo command here and in the documents selects --workspace: cargo resolves features
# for the packages selected, so `-p e2e` or `-p batch-worker` would compile ~80 crates again
# (wasmtime and the Temporal SDK among them) with other features.
main_build=$(mktemp)
cargo build --release --workspace --bins --tests --message-format=json-render-diagnostics \
  >"$main_build"
bash scripts/check-one-build.sh "$main_build"
rm -f "$main_build"
bash scripts/build-plugins.sh
bash scripts/build-plugins.sh --fixtures
if [ $# -gt 0 ]; then
  # Only some tests: as asked, in cargo's order.
  cargo test --release --workspace "$@"
  exit 0
fi

# Every test, each cargo test's output also kept in $times_log, from which the time of each
# test binary is printed at the end (slowest first): what to split or shorten when CI nears its
# 40 minutes. The crash tests (e2e/tests/faults.rs) spend most of their ~5 minutes waiting for
# Temporal's timeouts (a killed worker's heartbeat, a restarted server), so they run beside the
# other tests instead of before them. The sandbox tests measure how a worker shares the cores,
# so they run alone, after both. Each cargo test prints as it finishes.
started=$SECONDS
times_log=$(mktemp)
faults_log=$(mktemp)
cargo test --release --workspace --test faults >"$faults_log" 2>&1 &
faults=$!
others=()
for file in e2e/tests/*.rs; do
  name=$(basename "$file" .rs)
  case "$name" in faults | sandbox | record_histories) continue ;; esac
  others+=(--test "$name")
done
# Not `--exclude e2e`: without e2e's dependencies (its S3 test server) cargo would resolve
# features differently and compile the worker and the SDK again. The host crates' own tests
# are named instead (libraries, binaries, worker/tests/*.rs, doc tests).
host_tests=()
for file in worker/tests/*.rs; do
  host_tests+=(--test "$(basename "$file" .rs)")
done
# `cargo test` with its output kept for the timings; its own status.
timed() { cargo test --release --workspace "$@" 2>&1 | tee -a "$times_log"; return "${PIPESTATUS[0]}"; }
# One line per test binary: seconds (as cargo test reports them) and name, slowest first.
test_times() {
  awk '
    /^ *Running / {
      name = $2
      if (name == "unittests") { crate = $NF; sub(/.*deps\//, "", crate); sub(/-[0-9a-f]+\)$/, "", crate); name = "unittests " crate }
    }
    /^ *Doc-tests / { name = "doc-tests " $2 }
    /^test result:.*finished in/ { sub(/s$/, "", $NF); printf "%8.1f s  %s\n", $NF, name }
  ' "$@" | sort -rn
}
status=0
timed --lib --bins "${host_tests[@]}" || status=$?
if [ $status -eq 0 ]; then
  timed --doc || status=$?
fi
if [ $status -eq 0 ]; then
  timed "${others[@]}" || status=$?
fi
wait $faults || status=$?
cat "$faults_log"
cat "$faults_log" >>"$times_log"
rm -f "$faults_log"
[ $status -eq 0 ] || exit $status
timed --test sandbox
# The documents' commands, run as documented.
readme_started=$SECONDS
bash scripts/check-readme.sh
echo "test times (each binary's own time; faults ran beside the others, sandbox alone):"
test_times "$times_log" | head -20
echo "$(printf '%8d' $((SECONDS - readme_started))) s  scripts/check-readme.sh"
echo "$(printf '%8d' $((SECONDS - started))) s  all tests, after the build"
rm -f "$times_log"
