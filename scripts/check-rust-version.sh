#!/usr/bin/env bash
# Checks the README's claim about the supported Rust version against the workspace's
# `rust-version` (what cargo enforces) and against the toolchain here: the README must say
# "Rust X.Y or newer" with X.Y the workspace's rust-version, and this rustc must be at least it.
set -euo pipefail
cd "$(dirname "$0")/.."
declared=$(sed -n 's/^rust-version = "\([0-9.]*\)"/\1/p' Cargo.toml)
[ -n "$declared" ] || { echo "check-rust-version: no rust-version in Cargo.toml" >&2; exit 1; }
claimed=$(grep -o 'Rust [0-9][0-9.]* or newer' README.md | head -1 | cut -d' ' -f2)
if [ "$claimed" != "$declared" ]; then
  echo "check-rust-version: README says Rust ${claimed:-(nothing)} or newer, Cargo.toml's rust-version is $declared" >&2
  exit 1
fi
have=$(rustc --version | cut -d' ' -f2)
if [ "$(printf '%s\n%s\n' "$declared" "$have" | sort -V | head -1)" != "$declared" ]; then
  echo "check-rust-version: rustc $have is older than the declared rust-version $declared" >&2
  exit 1
fi
echo "check-rust-version: README, Cargo.toml and rustc $have agree (Rust $declared or newer)"
