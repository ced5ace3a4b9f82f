#!/usr/bin/env bash
# Installs what building and testing Dragonfly needs on a Debian machine that has Rust:
# Debian packages (only the missing ones) and the musl target. Idempotent and quiet when
# everything is already there.
#
#   scripts/deps.sh [GROUP...]  build + test needs, plus each named group:
#   scripts/deps.sh bench      adds the load tools used by scripts/bench-*.sh
#   scripts/deps.sh e2e        adds Chromium and ChromeDriver for the UI tests
#   scripts/deps.sh os-image   adds what scripts/os-image.sh needs (mmdebstrap, mkfs)
#   scripts/deps.sh netboot    adds what image/build.sh and scripts/lab.sh need; the kernel,
#                              busybox and iPXE packages are only downloaded and unpacked by
#                              image/build.sh, never installed
#   scripts/deps.sh dhcp       adds what the DHCP tests and `scripts/lab.sh --network bridge`
#                              need: dnsmasq (the "site's" DHCP server) and iproute2
#   scripts/deps.sh kube       adds what scripts/kube.sh needs to build and run a real
#                              kube-apiserver (Go and the Kubernetes source are only
#                              downloaded and unpacked by it, never installed)
set -euo pipefail

# fdisk (sfdisk) and mtools check what the native install writes, independently of the
# crates that wrote it; qemu-img makes the qcow2 images the agent's tests convert
want=(musl-tools pkg-config fdisk mtools qemu-utils)
for group in "$@"; do
case "$group" in
  bench) want+=(wrk hyperfine time curl) ;;
  # the web UI tests: headless Chromium driven through ChromeDriver
  e2e) want+=(chromium chromium-driver) ;;
  netboot)
    # build: apt-get source + dpkg-source (dpkg-dev, xz-utils), a static kexec-tools
    # (gcc, make, linux-libc-dev, binutils), module dependencies (kmod: modprobe, depmod);
    # lab: QEMU with its NIC option ROMs (ipxe-qemu), UEFI firmware (ovmf), curl
    # Alpine flavour (alpine/fetch.sh): the wheel unzipped, its root image read with
    # qemu-img and debugfs, pip in a virtual environment; from a mirror: signatures checked
    # with openssl, modules possibly zstd-compressed
    want+=(dpkg-dev xz-utils gcc make libc6-dev linux-libc-dev binutils kmod
      qemu-system-x86 ipxe-qemu ovmf curl unzip e2fsprogs python3-venv openssl zstd) ;;
  # a private network in namespaces (scripts/netns.sh) with dnsmasq as its DHCP server
  dhcp) want+=(dnsmasq-base iproute2) ;;
  # kube-apiserver from source (make, rsync), its certificates (openssl), readiness (curl)
  kube) want+=(make rsync openssl curl python3) ;;
  # the Debian cloud image the native-install tests write (scripts/os-image.sh)
  os-image) want+=(mmdebstrap dosfstools mtools fdisk e2fsprogs zstd util-linux mount) ;;
esac
done

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  echo "==> adding the Rust target x86_64-unknown-linux-musl"
  rustup target add x86_64-unknown-linux-musl
fi
