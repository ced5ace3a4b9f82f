#!/usr/bin/env bash
# API benchmarks (issue: server core). Builds the static release binary twice — with
# mimalloc (the default) and with musl's own allocator — and measures, for each, in the
# same run:
#   /healthz requests/s (the ceiling), new registrations/s, heartbeats/s   (wrk, 64 conns)
# then, for the default build: p50/p99 of one filtered list page of 50 from 10,000
# machines (wrk -c1 --latency) beside /healthz at -c1, the binary size and the idle RSS.
# Everything runs on loopback; wrk shares the machine's cores with the server.
#
#   scripts/bench-api.sh [SECONDS]      (default 10 s per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
scripts/deps.sh bench
target=x86_64-unknown-linux-musl
out=target/bench
mkdir -p "$out"

echo "==> building both allocator variants" >&2
cargo build --release --locked --target "$target" -p dragonfly
cp "target/$target/release/dragonfly" "$out/dragonfly-mimalloc"
cargo build --release --locked --target "$target" -p dragonfly --no-default-features
cp "target/$target/release/dragonfly" "$out/dragonfly-muslmalloc"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # BINARY DIR -> sets pid, url
  local port; port=$(free_port)
  RUST_LOG=warn "$1" --host 127.0.0.1 --port "$port" --db "$2/sqlite.db" \
    --max-connections-per-address 100000 --registrations-per-minute-per-address 1000000 >"$2/server.log" 2>&1 &
  pid=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 200); do curl -sf "$url/healthz" >/dev/null && return 0; sleep 0.05; done
  echo "server did not start; log:" >&2; cat "$2/server.log" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
rps() { awk '/Requests\/sec/ {print int($2)}'; }
p50() { awk '/^ +50%/ {print $2}'; }
p99() { awk '/^ +99%/ {print $2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

declare -A R
for variant in mimalloc muslmalloc; do
  dir=$(mktemp -d)
  start "$out/dragonfly-$variant" "$dir"
  echo "==> $variant: /healthz" >&2
  R[$variant,health]=$(wrk -t2 -c64 -d"${secs}s" "$url/healthz" | rps)
  echo "==> $variant: registrations" >&2
  R[$variant,register]=$(wrk -t2 -c64 -d"${secs}s" -s scripts/bench/register.lua "$url" -- 1 | rps)
  python3 scripts/bench/seed.py "$url" 1000 "$dir/tokens"
  echo "==> $variant: heartbeats" >&2
  R[$variant,heartbeat]=$(wrk -t2 -c64 -d"${secs}s" -s scripts/bench/heartbeat.lua "$url" -- "$dir/tokens" | rps)
  stop
  rm -rf "$dir"
done

echo "==> list page from 10,000 machines" >&2
dir=$(mktemp -d)
token=$("$out/dragonfly-mimalloc" admin create-token --db "$dir/sqlite.db" --name bench 2>/dev/null)
start "$out/dragonfly-mimalloc" "$dir"
TOKEN=$token python3 scripts/bench/seed.py "$url" 10000 "$dir/tokens" --decorate
# Every 10th machine is tagged rack-a and every 5th assigned, so the combined filter matches
# 1,000 machines and page 2 is a full page; the vendor search matches a third of them; the
# last search matches nothing, so every row is looked at.
api="$url/api/v1/machines"
list_url="$api?state=assigned&tag=rack-a&q=node-0&sort=hostname&order=desc&per_page=50&page=2"
vendor_url="$api?q=supermicro&sort=hostname&per_page=50&page=2"
none_url="$api?q=no-such-machine&per_page=50"
first_url="$api?per_page=50"
count() { curl -sf -H "Authorization: Bearer $token" "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total"], len(d["items"]))'; }
total=$(count "$api?per_page=1" | cut -d' ' -f1)
lf_n=$(count "$list_url") lv_n=$(count "$vendor_url") ln_n=$(count "$none_url")
measure() { wrk -t1 -c1 -d"${secs}s" --latency -H "Authorization: Bearer $token" "$1"; }
hz=$(wrk -t1 -c1 -d"${secs}s" --latency "$url/healthz")
lf=$(measure "$list_url")
lv=$(measure "$vendor_url")
ln=$(measure "$none_url")
lp=$(measure "$first_url")
stop
rm -rf "$dir"

echo "==> idle RSS" >&2
dir=$(mktemp -d)
start "$out/dragonfly-mimalloc" "$dir"
for _ in 1 2 3 4 5; do curl -sf "$url/healthz" >/dev/null; done
sleep 5
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
stop
rm -rf "$dir"

cat <<REPORT
machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
date: $(date -u +%Y-%m-%d)  seconds per measurement: $secs

| build | /healthz req/s (ceiling) | registrations/s | heartbeats/s | reg/ceiling | hb/ceiling |
|---|---|---|---|---|---|
REPORT
for variant in mimalloc muslmalloc; do
  h=${R[$variant,health]} r=${R[$variant,register]} b=${R[$variant,heartbeat]}
  printf '| %s | %s | %s | %s | %s | %s |\n' "$variant" "$h" "$r" "$b" "$(ratio "$r" "$h")" "$(ratio "$b" "$h")"
done
printf '\nmimalloc vs musl malloc: registrations x%s, heartbeats x%s\n' \
  "$(ratio "${R[mimalloc,register]}" "${R[muslmalloc,register]}")" \
  "$(ratio "${R[mimalloc,heartbeat]}" "${R[muslmalloc,heartbeat]}")"
cat <<REPORT

list ($total machines, 1 connection):
| request | p50 | p99 |
|---|---|---|
| /healthz | $(echo "$hz" | p50) | $(echo "$hz" | p99) |
| state+tag+search, sorted by hostname, page 2 (matches, rows: $lf_n) | $(echo "$lf" | p50) | $(echo "$lf" | p99) |
| search "supermicro", sorted by hostname, page 2 (matches, rows: $lv_n) | $(echo "$lv" | p50) | $(echo "$lv" | p99) |
| search that matches nothing (matches, rows: $ln_n) | $(echo "$ln" | p50) | $(echo "$ln" | p99) |
| first page of 50, no filter | $(echo "$lp" | p50) | $(echo "$lp" | p99) |

binary: $(stat -c %s "$out/dragonfly-mimalloc") bytes (static, stripped; musl malloc build: $(stat -c %s "$out/dragonfly-muslmalloc"))
idle RSS: $rss_kb KiB
REPORT
