#!/usr/bin/env bash
# Refreshes the vendored htmx (served from the binary; data centres are often offline, so
# the UI never loads anything from a CDN). Takes the file and its licence from the npm
# package and checks it against the recorded hash.
#
#   scripts/vendor-htmx.sh            verify the vendored copy
#   scripts/vendor-htmx.sh --update   fetch htmx.org@$VERSION with `npm pack` and vendor it
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=2.0.11
dest=server/assets/vendor/htmx-$VERSION
if [ "${1:-}" = "--update" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "htmx.org@$VERSION" >/dev/null && tar xzf htmx.org-$VERSION.tgz)
  mkdir -p "$dest"
  cp "$tmp/package/dist/htmx.min.js" "$tmp/package/LICENSE" "$dest/"
  sha256sum "$dest/htmx.min.js" | awk '{print $1 "  htmx.min.js"}' >"$dest/SHA256SUM"
  rm -rf "$tmp"
fi
(cd "$dest" && sha256sum -c SHA256SUM)
