#!/usr/bin/env bash
# Builds the plugins under plugins/ for wasm32-unknown-unknown and installs each as
# <dest>/<name>.wasm (default dest: target/plugins, the worker's default plugins directory).
#   scripts/build-plugins.sh [DEST]             the real plugins (plugins/*, not the SDK),
#                                                and the text-format ones (plugins/wat/*.wat)
#   scripts/build-plugins.sh --fixtures [DEST]  the test fixtures (plugins/fixtures/*),
#                                                default DEST target/test-plugins
# Installing renames a complete file into place, so a running worker never reads half a plugin.
set -euo pipefail
cd "$(dirname "$0")/.."

pattern='plugins/*/Cargo.toml'
wat_files=(plugins/wat/*.wat)
dest=target/plugins
if [ "${1:-}" = --fixtures ]; then
  pattern='plugins/fixtures/*/Cargo.toml'
  dest=target/test-plugins
  wat_files=()
  shift
fi
dest="${1:-$dest}"
mkdir -p "$dest"

plugins=()
for manifest in $pattern; do
  name=$(basename "$(dirname "$manifest")")
  [ "$name" = sdk ] || plugins+=("$name")
done

args=()
for p in "${plugins[@]}"; do args+=(-p "$p"); done
cargo build --quiet --profile wasm --target wasm32-unknown-unknown "${args[@]}"

for p in "${plugins[@]}"; do
  src="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/wasm/$p.wasm"
  cp "$src" "$dest/.$p.wasm.tmp"
  mv -f "$dest/.$p.wasm.tmp" "$dest/$p.wasm"
  echo "plugin $p -> $dest/$p.wasm ($(wc -c <"$dest/$p.wasm") bytes, sha256 $(sha256sum "$dest/$p.wasm" | cut -c1-12))"
done

# Text-format plugins need no build: the worker loads `.wat` as it is.
for wat in "${wat_files[@]}"; do
  name=$(basename "$wat")
  cp "$wat" "$dest/.$name.tmp"
  mv -f "$dest/.$name.tmp" "$dest/$name"
  echo "plugin ${name%.wat} -> $dest/$name (text format)"
done
