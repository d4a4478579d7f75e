#!/usr/bin/env bash
# check-one-build.sh MAIN_BUILD_JSON: fails when the binaries alone (`cargo build --release
# --workspace --bins`: the demo, bench/run.sh, the README) would not be a part of the main
# build, whose `--message-format=json` output is MAIN_BUILD_JSON. Cargo turns dev-dependencies'
# features on only when it builds tests, so a dev-dependency asking a shared crate for a
# feature splits the two builds, and every crate above that one (wasmtime, the Temporal SDK) is
# compiled twice: ~10 minutes on a clean CI machine. The fix is in worker/Cargo.toml ("One
# build"): ask for the same feature in the worker's dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
main_build=$1
bins_build=$(mktemp)
trap 'rm -f "$bins_build"' EXIT
cargo build --release --workspace --bins --message-format=json-render-diagnostics >"$bins_build"
python3 - "$main_build" "$bins_build" <<'PY'
import json, sys

def artifacts(path):
    found = set()
    for line in open(path, encoding="utf-8"):
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact":
            found.update(message["filenames"])
    return found

main, bins = artifacts(sys.argv[1]), artifacts(sys.argv[2])
extra = sorted(bins - main)
if extra:
    print("check-one-build: the binaries alone build these artifacts, which the main build "
          "does not: features differ between the two builds (see scripts/check-one-build.sh)",
          file=sys.stderr)
    for path in extra:
        print(f"  {path}", file=sys.stderr)
    sys.exit(1)
print(f"check-one-build: the binaries' {len(bins)} artifacts are all in the main build")
PY
