#!/usr/bin/env bash
# Builds Dragonfly's netboot artefact into out/netboot/ (see image/README.md):
#   vmlinuz  initramfs.zst  ipxe.lkrn  manifest.json  tftp/{undionly.kpxe,ipxe.pxe,ipxe.efi,snponly.efi}
#
#   image/build.sh                 build (downloads are cached under out/cache/)
#   image/build.sh --refresh       fetch the package lists again first (else: when a day old)
#   image/build.sh --kernel cloud  the Debian flavour with Debian's cloud kernel instead of the
#                                  generic one: faster under QEMU, but virtio only
#   image/build.sh --out DIR       write somewhere else than out/netboot
#   image/build.sh --flavour alpine|debian  which system's kernel, modules, busybox (and musl):
#                                  Alpine 3.23 (the default; alpine/README.md) or Debian's
#   Alpine's source (alpine/fetch.sh verifies each): the mirror alpine/lock names, else (when it
#   cannot be reached) the offline one with a warning (Alpine's `virt` kernel: virtual machines
#   only); --alpine-mirror URL (no fallback), --alpine-dir DIR (a mirror copy or the wheel, for
#   air-gapped sites), --offline; --alpine-keys DIR / --alpine-lock FILE for a site's own
#   signed repository
#
# Same inputs, same bytes: the Debian packages come at the versions apt resolves from this
# machine's own sources (recorded in manifest.json), the initramfs is written by
# dragonfly-image with sorted entries, owner 0:0 and one mtime, SOURCE_DATE_EPOCH (default:
# the last commit touching image/, agent/, proto/ or Cargo.lock).
#
# Nothing is installed from the downloaded packages: kernel, busybox, iPXE and the kexec-tools
# source come through a private apt configuration under out/cache/apt (the system's sources,
# plus deb-src, in the system's mirror), never touching /boot or the system's apt state.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

flavour=amd64
distro=alpine
distro_set=""
kernel_set=0
alpine_args=()
alpine_keys=alpine/keys
out=out/netboot
refresh=0
while [ $# -gt 0 ]; do
  case "$1" in
    --refresh) refresh=1 ;;
    --kernel)
      kernel_set=1
      case "${2:-}" in
        generic) flavour=amd64 ;;
        cloud) flavour=cloud-amd64 ;;
        *) echo "error: --kernel generic|cloud" >&2; exit 2 ;;
      esac
      shift ;;
    --out) out=${2:?--out DIR}; shift ;;
    --flavour)
      case "${2:-}" in
        debian | alpine) distro=$2; distro_set=$2 ;;
        *) echo "error: --flavour alpine|debian" >&2; exit 2 ;;
      esac
      shift ;;
    --alpine-dir | --alpine-mirror | --alpine-lock) alpine_args+=("$1" "${2:?$1 needs a value}"); shift ;;
    --alpine-keys) alpine_keys=${2:?--alpine-keys DIR}; alpine_args+=("$1" "$2"); shift ;;
    --offline) alpine_args+=("$1") ;;
    -h | --help) awk 'NR > 1 && /^#/ { print substr($0, 3); next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# --kernel picks a Debian kernel: it means the Debian flavour.
if [ "$kernel_set" = 1 ]; then
  [ "$distro_set" = alpine ] && { echo "error: --kernel is for --flavour debian" >&2; exit 2; }
  distro=debian
fi
[ "$distro" = debian ] && [ ${#alpine_args[@]} -gt 0 ] && { echo "error: ${alpine_args[0]} is for --flavour alpine" >&2; exit 2; }

cache=out/cache
logs=$PWD/$cache/logs
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$cache/debs" "$cache/src" "$logs"

n=0
step() { n=$((n + 1)); printf '==> [%2d] %s\n' "$n" "$*"; }
die() { echo "error: $*" >&2; exit 1; }
# Runs a command with its output in a log file; on failure shows the end of the log.
logged() {
  local log=$logs/$1.log
  shift
  if ! "$@" > "$log" 2>&1; then
    echo "error: '$*' failed; the end of $log:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
}
static_elf() { ! readelf -l "$1" | grep -q 'Requesting program interpreter' && ! readelf -d "$1" | grep -q NEEDED; }

step "dependencies (scripts/deps.sh netboot)"
scripts/deps.sh netboot

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct -- image agent proto Cargo.lock 2>/dev/null || true)
  SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
fi
export SOURCE_DATE_EPOCH

# ---- Debian packages, through a private apt configuration --------------------------------
apt_dir=$PWD/$cache/apt
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
[ "$(id -u)" -eq 0 ] && apt_opts+=(-o "APT::Sandbox::User=root")

# The machine's own sources, each also as deb-src (for kexec-tools' source package).
write_sources() {
  local d=$apt_dir/sources.list.d f i=0
  rm -f "$d"/*
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    i=$((i + 1))
    sed -E 's/^Types:.*/Types: deb deb-src/' "$f" > "$d/$i-$(basename "$f")"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    i=$((i + 1))
    sed -nE 's/^[[:space:]]*deb[[:space:]]+(.*)$/deb \1\ndeb-src \1/p' "$f" > "$d/$i-$(basename "$f")"
  done
  [ "$i" -gt 0 ] || die "no apt sources in /etc/apt: cannot find the Debian packages"
}
stamp=$apt_dir/lists/.updated
if [ "$refresh" = 1 ] || [ ! -e "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440)" ]; then
  step "package lists (private apt configuration in $cache/apt)"
  write_sources
  logged apt-update apt-get "${apt_opts[@]}" update
  touch "$stamp"
else
  step "package lists: cached (less than a day old; --refresh to update)"
fi

field() { apt-cache "${apt_opts[@]}" show --no-all-versions "$1" 2>/dev/null | sed -n "s/^$2: //p" | head -n 1; }
declare -A version
if [ "$distro" = alpine ]; then
  # Debian packages still give iPXE and the kexec-tools source; alpine-chroot-install embeds
  # Alpine's signing keys (a second source to check the pinned ones against).
  debian_pkgs=(ipxe kexec-tools alpine-chroot-install)
else
  kernel_pkg=$(field "linux-image-$flavour" Depends | grep -o "linux-image-[0-9][^ ,]*-$flavour" | head -n 1)
  [ -n "$kernel_pkg" ] || die "linux-image-$flavour: not found in the package lists"
  kver=${kernel_pkg#linux-image-}
  debian_pkgs=("$kernel_pkg" busybox-static ipxe kexec-tools)
fi
for p in "${debian_pkgs[@]}"; do
  version[$p]=$(field "$p" Version)
  [ -n "${version[$p]}" ] || die "$p: not found in the package lists"
done

# Downloads PKG at its resolved version into the cache (once), checks its SHA-256 against the
# signed package index, and unpacks it into $cache/root/PKG_VERSION/.
fetch() {
  local pkg=$1 ver=${version[$1]} sha deb dir
  sha=$(apt-cache "${apt_opts[@]}" show "$pkg=$ver" | sed -n 's/^SHA256: //p' | head -n 1)
  cached() {
    for f in "$cache/debs/${pkg}_"*.deb; do
      [ -e "$f" ] && [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$sha" ] && echo "$f" && return
    done
  }
  deb=$(cached)
  if [ -z "$deb" ]; then
    (cd "$cache/debs" && apt-get "${apt_opts[@]}" download "$pkg=$ver") > "$logs/download-$pkg.log" 2>&1 \
      || { tail -n 5 "$logs/download-$pkg.log" >&2; die "downloading $pkg=$ver failed"; }
    deb=$(cached)
    [ -n "$deb" ] || die "$pkg=$ver: the download's SHA-256 differs from the package index"
  fi
  dir=$cache/root/${pkg}_${ver//:/%3a}
  if [ ! -e "$dir/.unpacked" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    dpkg-deb -x "$deb" "$dir"
    touch "$dir/.unpacked"
  fi
  echo "$dir"
}

if [ "$distro" = alpine ]; then
  step "Alpine $(sed -n 's/^release //p' alpine/lock): kernel, busybox, musl (alpine/fetch.sh, verified)"
  aci=$(fetch alpine-chroot-install)
  aroot=$PWD/$cache/alpine/root
  mkdir -p "$(dirname "$aroot")"
  # Alpine's pinned keys are also checked against the ones Debian's alpine-chroot-install embeds.
  [ "$alpine_keys" = alpine/keys ] && alpine_args+=(--debian-keys "$aci/usr/sbin/alpine-chroot-install")
  logged alpine-fetch alpine/fetch.sh "${alpine_args[@]}" "$aroot"
  sed 's/^/    /' "$logs/alpine-fetch.log"
  kver=$(sed -n 's/^kernel=//p' "$aroot.source")
  vmlinuz=$(sed -n 's/^vmlinuz=//p' "$aroot.source")
  # The host's kmod may read no compressed modules: decompressed, for depmod and the image.
  kroot=$cache/alpine/kroot
  rm -rf "$kroot" && mkdir -p "$kroot/lib/modules/$kver" "$kroot/boot"
  (cd "$aroot" && find "lib/modules/$kver" -name '*.ko*') | while read -r m; do
    mkdir -p "$kroot/$(dirname "$m")"
    case "$m" in
      *.ko.gz) gzip -dc "$aroot/$m" > "$kroot/${m%.gz}" ;;
      *.ko.xz) xz -dc "$aroot/$m" > "$kroot/${m%.xz}" ;;
      *.ko.zst) zstd -q -dc "$aroot/$m" > "$kroot/${m%.zst}" ;;
      *.ko) cp "$aroot/$m" "$kroot/$m" ;;
    esac
  done
  for f in modules.builtin modules.builtin.modinfo modules.order; do
    [ ! -e "$aroot/lib/modules/$kver/$f" ] || cp "$aroot/lib/modules/$kver/$f" "$kroot/lib/modules/$kver/"
  done
  [ -e "$kroot/lib/modules/$kver/modules.builtin" ] || : > "$kroot/lib/modules/$kver/modules.builtin"
  cp "$aroot/$vmlinuz" "$kroot/boot/vmlinuz-$kver"
  logged depmod depmod -b "$kroot" "$kver"
  alpine_source=$(sed -n 's/^source=//p' "$aroot.source")
else
  step "kernel $kernel_pkg ${version[$kernel_pkg]}"
  kroot=$(fetch "$kernel_pkg")
  [ -e "$kroot/lib/modules/$kver/modules.dep" ] || logged depmod depmod -b "$kroot" "$kver"
  step "busybox-static ${version[busybox-static]}"
  bbroot=$(fetch busybox-static)
fi
step "ipxe ${version[ipxe]}"
ipxeroot=$(fetch ipxe)

# ---- kexec-tools: static, with musl, from Debian's source package --------------------------
kexec_ver=${version[kexec-tools]}
musl_ver=$(dpkg-query -W -f='${Version}' musl-dev)
kexec_cflags="-O2 -ffile-prefix-map=@SRC@=."
kexec_configure="--without-xen --without-lzma --without-zlib"
kexec_key=$(printf '%s\n' "$kexec_ver" "$musl_ver" "$(gcc -dumpfullversion)" "$kexec_cflags" "$kexec_configure" | sha256sum | cut -c1-12)
kexec_bin=$cache/kexec/$kexec_key/kexec
if [ -x "$kexec_bin" ]; then
  step "kexec-tools $kexec_ver: cached static build"
else
  step "kexec-tools $kexec_ver: static build with musl-gcc"
  src_dir=$cache/src/kexec-tools
  mkdir -p "$src_dir"
  (cd "$src_dir" && apt-get "${apt_opts[@]}" source --download-only "kexec-tools=$kexec_ver") > "$logs/kexec-source.log" 2>&1 \
    || { tail -n 5 "$logs/kexec-source.log" >&2; die "downloading the kexec-tools source failed"; }
  build=$PWD/$cache/build/kexec-tools
  rm -rf "$build" && mkdir -p "$build"
  src_ver=${kexec_ver#*:}        # the .dsc is named without the epoch
  src_ver=${src_ver%+b[0-9]*}    # and without a binNMU suffix
  logged kexec-unpack dpkg-source -x "$src_dir/kexec-tools_$src_ver.dsc" "$build/src"
  # musl-gcc sees only musl's headers; kexec-tools also needs the kernel's (linux-libc-dev).
  multiarch=$(gcc -print-multiarch)
  mkdir -p "$build/include"
  ln -s /usr/include/linux "$build/include/linux"
  ln -s /usr/include/asm-generic "$build/include/asm-generic"
  ln -s "/usr/include/$multiarch/asm" "$build/include/asm"
  (
    cd "$build/src"
    export CC=musl-gcc LDFLAGS=-static CFLAGS="${kexec_cflags//@SRC@/$build/src} -I$build/include"
    # shellcheck disable=SC2086
    logged kexec-configure ./configure $kexec_configure
    logged kexec-make make -j"$(nproc)"
  )
  static_elf "$build/src/build/sbin/kexec" || die "kexec is not static"
  mkdir -p "$(dirname "$kexec_bin")"
  strip -o "$kexec_bin.tmp" "$build/src/build/sbin/kexec"
  mv "$kexec_bin.tmp" "$kexec_bin"
  rm -rf "$build"
fi

# ---- our binaries ----------------------------------------------------------------------------
step "dragonfly-agent (cargo build --release --target x86_64-unknown-linux-musl)"
# The agent for the image is built in its own target directory with this checkout's and
# Cargo's paths remapped, so the bytes do not depend on where the repository or the Cargo
# home live (reproducible across machines, not only across runs).
agent_target=$target_dir/image-agent
CARGO_TARGET_DIR=$agent_target \
  RUSTFLAGS="--remap-path-prefix=$PWD=/dragonfly --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
  logged cargo-agent cargo build --release --locked --target x86_64-unknown-linux-musl -p dragonfly-agent
agent_bin=$agent_target/x86_64-unknown-linux-musl/release/dragonfly-agent
static_elf "$agent_bin" || die "$agent_bin is not static"

step "dragonfly-image (cargo build --release)"
logged cargo-image cargo build --release --locked -p dragonfly-image
tool=$target_dir/release/dragonfly-image

# ---- the initramfs -----------------------------------------------------------------------------
step "staging the initramfs (modules from image/modules.list)"
stage=$cache/stage
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/dragonfly,dev,proc,sys,run,tmp,root,boot,lib/modules/"$kver"}
install -m 0755 image/init "$stage/init"
install -m 0755 image/udhcpc.script "$stage/etc/dragonfly/udhcpc.script"
if [ "$distro" = alpine ]; then
  # Alpine's busybox is linked against musl: its loader (which is the libc) comes along.
  mkdir -p "$stage/lib"
  install -m 0755 "$aroot/bin/busybox" "$stage/bin/busybox"
  install -m 0755 "$aroot/lib/ld-musl-x86_64.so.1" "$stage/lib/ld-musl-x86_64.so.1"
  ln -s ld-musl-x86_64.so.1 "$stage/lib/libc.musl-x86_64.so.1"
  "$stage/lib/ld-musl-x86_64.so.1" --library-path "$stage/lib" "$stage/bin/busybox" true \
    || die "Alpine's busybox does not run with its musl"
else
  install -m 0755 "$bbroot/bin/busybox" "$stage/bin/busybox"
  static_elf "$stage/bin/busybox" || die "busybox is not static"
  "$stage/bin/busybox" true || die "busybox does not run"
fi
ln -s busybox "$stage/bin/sh"
install -m 0755 "$kexec_bin" "$stage/sbin/kexec"
install -m 0755 "$agent_bin" "$stage/bin/dragonfly-agent"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$stage/etc/passwd"
printf 'root:x:0:\n' > "$stage/etc/group"
# The static binaries run here too: a cheap check that they are whole.
for check in "sbin/kexec --version" "bin/dragonfly-agent --version"; do
  # shellcheck disable=SC2086 # "program argument"
  "$stage/"$check > /dev/null || die "$check: this static binary of the initramfs does not run"
done

# Modules: each listed name with its dependencies, in load order, each file once.
wanted=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' image/modules.list)
missing=()
: > "$stage/etc/dragonfly/modules"
for m in $wanted; do
  if ! deps=$(modprobe -S "$kver" -d "$PWD/$kroot" --show-depends "$m" 2>/dev/null); then
    missing+=("$m")
    continue
  fi
  while read -r kind path args; do
    [ "$kind" = insmod ] || continue
    rel=${path#"$PWD/$kroot"}
    grep -qxF "$rel${args:+ $args}" "$stage/etc/dragonfly/modules" && continue
    mkdir -p "$stage$(dirname "$rel")"
    install -m 0644 "$path" "$stage$rel"
    echo "$rel${args:+ $args}" >> "$stage/etc/dragonfly/modules"
  done <<< "$deps"
done
# A kernel without the real-hardware drivers makes an image for virtual machines only: the
# manifest, /healthz and the dashboard say so.
hardware=any
if [ ${#missing[@]} -gt 0 ]; then
  [ "$distro" = debian ] && [ "$flavour" = amd64 ] && die "not in $kernel_pkg: ${missing[*]}"
  hardware="virtual machines only (the kernel $kver has no ${missing[*]})"
  echo "    warning: $hardware"
fi
install -m 0644 "$kroot/lib/modules/$kver/modules.builtin" "$stage/lib/modules/$kver/"
# modules.dep and modules.alias for exactly these modules: /init's modprobe loads by modalias.
logged depmod-stage depmod -b "$stage" "$kver"

# iPXE for kexec (BIOS chainload): the patched lkrn, also served at /boot/ipxe.lkrn.
new=$out.new
rm -rf "$new" && mkdir -p "$new/tftp"
logged patch-lkrn "$tool" patch-lkrn "$ipxeroot/boot/ipxe.lkrn" "$new/ipxe.lkrn"
install -m 0644 "$new/ipxe.lkrn" "$stage/boot/ipxe.lkrn"
{
  echo "flavour=$distro"
  echo "kernel=$kver"
  if [ "$distro" = alpine ]; then
    sed -n 's/^package=\([^ ]*\) \(.*\)/alpine:\1=\2/p' "$aroot.source"
    echo "source=$alpine_source"
  fi
  for p in "${debian_pkgs[@]}"; do echo "$p=${version[$p]}"; done
} > "$stage/etc/dragonfly/packages"

step "initramfs.zst (newc cpio, zstd -19, mtime $SOURCE_DATE_EPOCH)"
logged initramfs "$tool" initramfs --root "$stage" --node dev/console:c:5:1:600 \
  --out "$new/initramfs.zst" --mtime "$SOURCE_DATE_EPOCH"
sed 's/^/    /' "$logs/initramfs.log"

step "vmlinuz, TFTP first stage, manifest.json"
install -m 0644 "$kroot/boot/vmlinuz-$kver" "$new/vmlinuz"
install -m 0644 "$ipxeroot/usr/lib/ipxe/undionly.kpxe" "$ipxeroot/usr/lib/ipxe/ipxe.pxe" \
  "$ipxeroot/usr/lib/ipxe/snponly.efi" "$ipxeroot/boot/ipxe.efi" "$new/tftp/"
packages=()
for p in "${debian_pkgs[@]}"; do packages+=(--package "$p=${version[$p]}"); done
if [ "$distro" = alpine ]; then
  while read -r name ver; do packages+=(--package "alpine:$name=$ver"); done < <(sed -n 's/^package=//p' "$aroot.source")
fi
logged manifest "$tool" manifest --boot-dir "$new" --kernel "$kver" "${packages[@]}" \
  --source-date-epoch "$SOURCE_DATE_EPOCH" --flavour "$distro" --hardware "$hardware" \
  ${alpine_source:+--source "$alpine_source"}

# Swap the new directory in (a server reading the old one never sees a half-written file).
rm -rf "$out.old"
[ -e "$out" ] && mv "$out" "$out.old"
mv "$new" "$out"
rm -rf "$out.old"

size() { stat -c %s "$1"; }
k=$(size "$out/vmlinuz") i=$(size "$out/initramfs.zst")
printf '==> done: %s (version %s)\n' "$out" "$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$out/manifest.json")"
awk -v k="$k" -v i="$i" -v l="$(size "$out/ipxe.lkrn")" 'BEGIN {
  printf "    vmlinuz %d + initramfs.zst %d = %d bytes (%.1f MiB); ipxe.lkrn %d\n", k, i, k + i, (k + i) / 1048576, l }' 
