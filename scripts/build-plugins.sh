#!/usr/bin/env bash
# Builds the plugins and installs each as <dest>/<name>.wasm (default dest: target/plugins, the
# worker's default plugins directory).
#   scripts/build-plugins.sh [DEST]             the real plugins: Rust (plugins/*, not the SDKs),
#                                                Python (plugins/python/*/app.py, componentize-py;
#                                                with the `records` export when app.py has a
#                                                `class Records`, with wasi:http's client when
#                                                it uses `outgoing_handler`),
#                                                JavaScript (plugins/js/*/plugin.js,
#                                                componentize-js) and text (plugins/wat/*.wat)
#   scripts/build-plugins.sh --fixtures [DEST]  the test fixtures (plugins/fixtures/*),
#                                                default DEST target/test-plugins
# Rust plugins build for wasm32-unknown-unknown (no imports), or for the target named in their
# Cargo.toml's [package.metadata.batch] (wasm32-wasip2 fixtures). Python and JavaScript plugins
# are rebuilt only when their source or the WIT changed (they take ~30 s each); the toolchains
# come from scripts/setup.sh. Installing renames a complete file into place, so a running
# worker never reads half a plugin.
set -euo pipefail
cd "$(dirname "$0")/.."

pattern='plugins/*/Cargo.toml'
wat_files=(plugins/wat/*.wat)
python_plugins=(plugins/python/*/app.py)
js_plugins=(plugins/js/*/plugin.js)
dest=target/plugins
if [ "${1:-}" = --fixtures ]; then
  pattern='plugins/fixtures/*/Cargo.toml'
  dest=target/test-plugins
  wat_files=()
  python_plugins=()
  js_plugins=()
  shift
fi
dest="${1:-$dest}"
mkdir -p "$dest"
target_dir="${CARGO_TARGET_DIR:-target}"

install_plugin() { # <built file> <name>
  cp "$1" "$dest/.$2.wasm.tmp"
  mv -f "$dest/.$2.wasm.tmp" "$dest/$2.wasm"
  echo "plugin $2 -> $dest/$2.wasm ($(wc -c <"$dest/$2.wasm") bytes, sha256 $(sha256sum "$dest/$2.wasm" | cut -c1-12))"
}

# Rust, grouped by target.
declare -A by_target=()
for manifest in $pattern; do
  name=$(basename "$(dirname "$manifest")")
  case "$name" in sdk | sdk_*) continue ;; esac
  wasm_target=$(sed -n 's/^target = "\(wasm32-[a-z0-9]*\)"$/\1/p' "$manifest")
  wasm_target=${wasm_target:-wasm32-unknown-unknown}
  by_target[$wasm_target]+=" $name"
done
for wasm_target in "${!by_target[@]}"; do
  args=()
  for p in ${by_target[$wasm_target]}; do args+=(-p "$p"); done
  cargo build --quiet --profile wasm --target "$wasm_target" "${args[@]}"
  for p in ${by_target[$wasm_target]}; do
    install_plugin "$target_dir/$wasm_target/wasm/$p.wasm" "$p"
  done
done

# Python and JavaScript: one component each, rebuilt when a source or the WIT is newer.
polyglot="$target_dir/polyglot"
mkdir -p "$polyglot"
stale() { # <output> <inputs...>: whether output is missing or older than an input
  local out=$1 newest
  shift
  [ -e "$out" ] || return 0
  newest=$(find "$@" plugins/wit/v2 -type f -newer "$out" | head -1)
  [ -n "$newest" ]
}
for app in "${python_plugins[@]}"; do
  [ -e "$app" ] || continue
  dir=$(dirname "$app")
  name=$(basename "$dir")
  if stale "$polyglot/$name.wasm" "$dir"; then
    # A plugin that calls services (imports wasi:http's `outgoing_handler`) is built with
    # `plugin-with-http` (which exports `records` too); one that defines the `records` export
    # is built with it.
    world=plugin
    if grep -q 'outgoing_handler' "$app"; then
      world=plugin-with-http
    elif grep -q '^class Records(' "$app"; then
      world=plugin-with-record-blocks
    fi
    componentize-py -d plugins/wit/v2 -w "$world" componentize -p "$dir" app \
      -o "$polyglot/$name.wasm.tmp" >/dev/null
    mv -f "$polyglot/$name.wasm.tmp" "$polyglot/$name.wasm"
  fi
  install_plugin "$polyglot/$name.wasm" "$name"
done
for source in "${js_plugins[@]}"; do
  [ -e "$source" ] || continue
  dir=$(dirname "$source")
  name=$(basename "$dir")
  if stale "$polyglot/$name.wasm" "$dir"; then
    node plugins/js/build.mjs "$source" plugins/wit/v2 "$polyglot/$name.wasm"
  fi
  install_plugin "$polyglot/$name.wasm" "$name"
done

# Text-format plugins need no build: the worker loads `.wat` as it is.
for wat in "${wat_files[@]}"; do
  name=$(basename "$wat")
  cp "$wat" "$dest/.$name.tmp"
  mv -f "$dest/.$name.tmp" "$dest/$name"
  echo "plugin ${name%.wat} -> $dest/$name (text format)"
done
