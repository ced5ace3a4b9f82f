#!/usr/bin/env bash
# Dragonfly's DHCP measured in one run, on scripts/netns.sh's private network (needs root;
# nothing else is touched), with the static release binary:
#   1. DISCOVER -> OFFER latency under a burst of COUNT PXE clients (each its own MAC), in
#      proxy mode and in full mode (an address leased in SQLite per OFFER);
#   2. the server's RSS before and after a flood of 100,000 DISCOVERs from random MACs;
#   3. VM start -> registered for a BIOS VM under TCG: Dragonfly's proxyDHCP beside dnsmasq
#      (scripts/lab.sh --network bridge) against QEMU's built-in DHCP (--network user),
#      alternating, RUNS times each; medians and their ratio.
#
#   sudo scripts/bench-dhcp.sh [COUNT] [RUNS]        defaults 1000 and 3 (RUNS 0: no VMs)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000}
runs=${2:-3}
bin=target/x86_64-unknown-linux-musl/release/dragonfly
[ -x "$bin" ] || scripts/build-release.sh > /dev/null
scripts/deps.sh netboot dhcp
[ -e out/netboot/manifest.json ] || image/build.sh

net=dfly-bench
prefix=10.213.9
work=$(mktemp -d)
pid=""
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2> /dev/null || true
  scripts/netns.sh down "$net"
  rm -rf "$work"
}
trap cleanup EXIT
scripts/netns.sh down "$net"
scripts/netns.sh up "$net" "$prefix" > /dev/null

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
serve() { # MODE [FLAGS...]: starts the server on the network's host end
  local mode=$1
  shift
  rm -f "$work"/db*
  "$bin" --host "$prefix.1" --port 0 --db "$work/db" --boot-dir out/netboot --dhcp "$mode" \
    --dhcp-interface "$net" "$@" > "$work/server-$mode.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    grep -q "DHCP ready" "$work/server-$mode.log" && return 0
    sleep 0.1
  done
  cat "$work/server-$mode.log" >&2
  exit 1
}
burst() { ip netns exec "$net-cli" python3 scripts/bench-dhcp.py cli0 "$prefix.1" "$@"; }

echo "==> 1. DISCOVER -> OFFER, a burst of $count PXE clients"
serve proxy
printf '    proxy: %s\n' "$(burst "$count")"
kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true
serve full --dhcp-range "$prefix.10-$prefix.250" --dhcp-force
printf '    full (%s addresses, the rest get no offer): %s\n' 241 "$(burst "$count")"
kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true

echo "==> 2. RSS under a flood of 100,000 DISCOVERs from new MACs (proxy mode)"
serve proxy
before=$(rss_kb "$pid")
for i in 0 1 2 3 4 5 6 7 8 9; do burst 10000 0.2 $((1000000 + i * 10000)) > /dev/null; done
after=$(rss_kb "$pid")
answered=$(grep -c "answer=offered" "$work/server-proxy.log" || true)
echo "    RSS before ${before} kB, after ${after} kB (x$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a / b }')); offers logged: $answered"
kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true
pid=""
scripts/netns.sh down "$net"

[ "$runs" -gt 0 ] || exit 0
echo "==> 3. BIOS VM start -> registered (TCG), $runs runs each, alternating"
declare -a user bridge
for r in $(seq 1 "$runs"); do
  for n in user bridge; do
    t=$(scripts/lab.sh --network "$n" --no-assign --no-build --timeout 300 2>&1 |
      awk '/==> summary/ { s = 1; next } s && $1 == "vm1" { print $5 }' || true)
    echo "    run $r, $n network: registered at ${t:--} s"
    [ "$n" = user ] && user+=("$t") || bridge+=("$t")
  done
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
mu=$(median "${user[@]}")
mb=$(median "${bridge[@]}")
echo "    median: QEMU's DHCP ${mu} s, Dragonfly's proxyDHCP beside dnsmasq ${mb} s" \
  "(x$(awk -v a="$mb" -v b="$mu" 'BEGIN { printf "%.2f", a / b }'))"
