#!/usr/bin/env bash
# UI benchmarks (issue: web UI): the machine list page with 10,000 machines — server time
# (wrk, 1 connection, p50/p99) beside /healthz in the same run, and its weight gzipped for
# a page of 50. The delay from a registration to its row in an open browser is measured by
# the Chromium test (`cargo test -p dragonfly-e2e --test ui -- --nocapture` prints
# UI_LIVE_DELAY_MS).
#
#   scripts/bench-ui.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
scripts/deps.sh bench
target=x86_64-unknown-linux-musl
# SERVER=path reuses a server binary already built (the one scripts/bench-api.sh leaves).
if [ -z "${SERVER:-}" ]; then
  cargo build --release --locked --target "$target" -p dragonfly >&2
fi
bin="${SERVER:-target/$target/release/dragonfly}"
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token=$("$bin" admin create-token --db "$dir/sqlite.db" --name bench 2>/dev/null)
RUST_LOG=warn "$bin" --host 127.0.0.1 --port "$port" --db "$dir/sqlite.db" >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
url="http://127.0.0.1:$port"
for _ in $(seq 1 200); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.05; done
echo "==> seeding 10,000 machines" >&2
TOKEN=$token python3 scripts/bench/seed.py "$url" 10000 "$dir/tokens" --decorate
auth="Authorization: Bearer $token"
# Matches 1,000 machines (every 10th is tagged, every 5th assigned): page 2 is a full page.
page="$url/machines?state=assigned&tag=rack-a&q=node-0&sort=hostname&page=2"
first="$url/machines"
hz=$(wrk -t1 -c1 -d"${secs}s" --latency "$url/healthz")
lf=$(wrk -t1 -c1 -d"${secs}s" --latency -H "$auth" "$page")
lp=$(wrk -t1 -c1 -d"${secs}s" --latency -H "$auth" "$first")
p50() { awk '/^ +50%/ {print $2}'; }
p99() { awk '/^ +99%/ {print $2}'; }
gz=$(curl -s -H "$auth" -H 'Accept-Encoding: gzip' -o "$dir/page.gz" -w '%{size_download}' "$first")
raw=$(curl -s -H "$auth" -o /dev/null -w '%{size_download}' "$first")
assets=0
for a in /static/app.css /static/app.js /static/vendor/htmx-2.0.11/htmx.min.js; do
  assets=$((assets + $(curl -s -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "$url$a")))
done
cat <<REPORT
machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
date: $(date -u +%Y-%m-%d)

| request (10,000 machines, 1 connection) | p50 | p99 |
|---|---|---|
| /healthz (same run) | $(echo "$hz" | p50) | $(echo "$hz" | p99) |
| /machines, first page of 50 | $(echo "$lp" | p50) | $(echo "$lp" | p99) |
| /machines filtered (state+tag+search+sort), page 2 | $(echo "$lf" | p50) | $(echo "$lf" | p99) |

page of 50: $raw bytes, $gz bytes gzipped; CSS + JS + htmx gzipped: $assets bytes (cached after the first page)
REPORT
