#!/usr/bin/env bash
# The main job, start to finish: install what is missing, build, start a local Temporal dev
# server (unless TEMPORAL_ADDRESS points at one), start the worker, run a batch (default: the
# demo's 2000 items; arguments go to the starter, e.g. `scripts/demo.sh 50 --plugin cube`),
# print its summary, then stop everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --workspace --bins
bash scripts/build-plugins.sh
source scripts/lib.sh

if [ -z "${TEMPORAL_ADDRESS:-}" ]; then
  port=$(free_port)
  export TEMPORAL_ADDRESS="127.0.0.1:$port"
  echo "demo: starting a Temporal dev server on $TEMPORAL_ADDRESS"
  start_dev_server "$port"
else
  echo "demo: using the Temporal server at $TEMPORAL_ADDRESS"
fi

echo "demo: starting the worker"
start_worker
./target/release/starter "$@"
