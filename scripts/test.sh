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
cargo build --release --workspace --bins --tests
bash scripts/build-plugins.sh
bash scripts/build-plugins.sh --fixtures
cargo test --release --workspace "$@"
# The documents' commands, run as documented (skipped when only some tests were asked for).
if [ $# -eq 0 ]; then
  bash scripts/check-readme.sh
fi
