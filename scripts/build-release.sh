#!/usr/bin/env bash
# Builds the static release binaries and checks that they really are static:
#   target/x86_64-unknown-linux-musl/release/dragonfly
#   target/x86_64-unknown-linux-musl/release/dragonfly-agent
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
target=x86_64-unknown-linux-musl
cargo build --release --locked --target "$target" -p dragonfly -p dragonfly-agent
for bin in dragonfly dragonfly-agent; do
  path="target/$target/release/$bin"
  # A static executable has no program interpreter (no PT_INTERP) and no NEEDED libraries.
  if readelf -l "$path" | grep -q 'Requesting program interpreter' || readelf -d "$path" | grep -q NEEDED; then
    echo "error: $path is dynamically linked" >&2
    exit 1
  fi
  printf '%-16s static, %s bytes\n' "$bin" "$(stat -c %s "$path")"
done
# Smoke test: the static server answers --version and prints its OpenAPI document.
"target/$target/release/dragonfly" --version
doc=$(mktemp)
"target/$target/release/dragonfly" openapi >"$doc"
grep -q '"openapi"' "$doc"
rm -f "$doc"
