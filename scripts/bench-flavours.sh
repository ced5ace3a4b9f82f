#!/usr/bin/env bash
# The two netboot flavours side by side, in one run: build time (caches warm: downloads and
# the static kexec cached, the agent built), artefact sizes (kernel, initramfs, total), and
# QEMU start -> /init -> registered (BIOS), median of RUNS boots each,
# the flavours alternating so that both see the same machine load.
#
#   scripts/bench-flavours.sh [RUNS]      default 3
#
# Builds out/netboot (debian) and out/netboot-alpine; boots through scripts/lab.sh (QEMU on
# its user network, a fresh local server each time).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A dir=([debian]=out/netboot [alpine]=out/netboot-alpine)

[ -x target/x86_64-unknown-linux-musl/release/dragonfly ] || scripts/build-release.sh > /dev/null
version() { sed -n 's/^  "version": "\(.*\)",$/\1/p' "$1/manifest.json"; }
declare -A first
for f in debian alpine; do
  image/build.sh --flavour "$f" --out "${dir[$f]}" > /dev/null  # warm the caches
  first[$f]=$(version "${dir[$f]}")
done
for f in debian alpine; do
  start=$(date +%s.%N)
  image/build.sh --flavour "$f" --out "${dir[$f]}" > /dev/null
  awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }' > "$work/build-$f"
  # Same inputs, same bytes: the second build's manifest version is the first's.
  [ "$(version "${dir[$f]}")" = "${first[$f]}" ] && echo "$f: rebuilt byte for byte (version ${first[$f]})" \
    || { echo "$f: the rebuild differs: ${first[$f]} then $(version "${dir[$f]}")"; exit 1; }
done
for i in $(seq "$runs"); do
  for f in debian alpine; do
    scripts/lab.sh --no-build --no-assign --boot-dir "${dir[$f]}" --timeout 300 > "$work/lab-$f-$i.log" 2>&1 \
      || { echo "lab run $i of $f failed:"; tail -20 "$work/lab-$f-$i.log"; exit 1; }
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The summary line of vm1: "vm1 MAC NETBOOT INIT REGISTERED CHAINLOAD HOOKOS".
col() { for i in $(seq "$runs"); do awk '$1 == "vm1" {print $'"$2"'}' "$work/lab-$1-$i.log" | tail -1; done | median; }
size() { stat -c %s "$1"; }
printf '%-8s %12s %14s %12s %8s %8s %13s\n' flavour vmlinuz initramfs.zst total build_s init_s registered_s
for f in debian alpine; do
  k=$(size "${dir[$f]}/vmlinuz") i=$(size "${dir[$f]}/initramfs.zst")
  printf '%-8s %12d %14d %12d %8.1f %8s %13s\n' "$f" "$k" "$i" $((k + i)) "$(cat "$work/build-$f")" \
    "$(col "$f" 4)" "$(col "$f" 5)"
done
echo "(median of $runs boots each; seconds from QEMU start; the lab logs: $work, removed on exit)"
