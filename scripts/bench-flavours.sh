#!/usr/bin/env bash
# The two netboot flavours side by side, in one run: build time (caches warm: downloads and
# the static kexec cached, the agent built), artefact sizes (kernel, initramfs, total), and
# QEMU start -> registered -> chainloaded (BIOS: the agent kexecs into iPXE, which fetches
# hookos.ipxe), median of RUNS boots each, the flavours alternating so that both see the same
# machine load. The boots are the PXE end-to-end test's BIOS case (tests/netboot), which
# prints those two times.
#
#   scripts/bench-flavours.sh [RUNS]      default 3
#
# Builds out/netboot (debian) and out/netboot-alpine (the offline source); each boot is a
# fresh server and a fresh QEMU on its user network.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A dir=([debian]=out/netboot [alpine]=out/netboot-alpine)
# The offline Alpine source: a benchmark sends nothing beyond this machine.
declare -A args=([debian]="" [alpine]=--offline)

cargo test --locked -p dragonfly-e2e --test netboot --no-run > /dev/null 2>&1
version() { sed -n 's/^  "version": "\(.*\)",$/\1/p' "$1/manifest.json"; }
declare -A first
for f in debian alpine; do
  image/build.sh --flavour "$f" ${args[$f]} --out "${dir[$f]}" > /dev/null  # warm the caches
  first[$f]=$(version "${dir[$f]}")
done
for f in debian alpine; do
  start=$(date +%s.%N)
  image/build.sh --flavour "$f" ${args[$f]} --out "${dir[$f]}" > /dev/null
  awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }' > "$work/build-$f"
  # Same inputs, same bytes: the second build's manifest version is the first's.
  [ "$(version "${dir[$f]}")" = "${first[$f]}" ] && echo "$f: rebuilt byte for byte (version ${first[$f]})" \
    || { echo "$f: the rebuild differs: ${first[$f]} then $(version "${dir[$f]}")"; exit 1; }
done
for i in $(seq "$runs"); do
  for f in debian alpine; do
    DRAGONFLY_NETBOOT_DIR=${dir[$f]} cargo test --locked -p dragonfly-e2e --test netboot bios_ \
      -- --nocapture > "$work/boot-$f-$i.log" 2>&1 \
      || { echo "boot $i of $f failed:"; tail -20 "$work/boot-$f-$i.log"; exit 1; }
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The test's line: "BIOS: registered after 12.3s, hookos after 20.1s" (Debug durations).
col() {
  for i in $(seq "$runs"); do
    sed -n 's/^BIOS: registered after \([0-9.]*\)s, hookos after \([0-9.]*\)s$/\1 \2/p' "$work/boot-$1-$i.log" \
      | awk -v c="$2" '{ printf "%.1f\n", $c }'
  done | median
}
size() { stat -c %s "$1"; }
printf '%-8s %12s %14s %12s %8s %13s %13s\n' flavour vmlinuz initramfs.zst total build_s registered_s chainloaded_s
for f in debian alpine; do
  k=$(size "${dir[$f]}/vmlinuz") i=$(size "${dir[$f]}/initramfs.zst")
  printf '%-8s %12d %14d %12d %8.1f %13s %13s\n' "$f" "$k" "$i" $((k + i)) "$(cat "$work/build-$f")" \
    "$(col "$f" 1)" "$(col "$f" 2)"
done
echo "(median of $runs boots each; seconds from QEMU start, as the test's polling sees them)"
