#!/usr/bin/env bash
# Builds the OS image the native-install tests write to a VM's disk: a real Debian 12 cloud
# image made from Debian packages (kernel, systemd, cloud-init, OpenSSH, GRUB for BIOS and
# UEFI), 1 GiB raw, compressed with zstd as a catalogue entry expects, and the same disk as
# a compressed qcow2 (the format Debian and Ubuntu publish their cloud images in).
#
#   scripts/os-image.sh            build (or reuse) and print the directory holding
#                                  debian-12.raw.zst, debian-12.qcow2, a .sha256 file for
#                                  each, size_bytes
#                                  (also recorded in out/os-image.path for the tests)
#   scripts/os-image.sh --rebuild  build again even when a cached image exists
#
# Needs root (loop devices, mount, chroot; it runs itself with sudo otherwise) and the machine's own apt sources (the packages
# come from the mirror this machine uses). The result is cached outside the clone under
# ${DRAGONFLY_CACHE_DIR:-~/.cache/dragonfly}/os-image/KEY, where KEY hashes this script and
# the versions apt resolves for the image's main packages: same inputs, no rebuild.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C

rebuild=0
case "${1:-}" in
  --rebuild) rebuild=1 ;;
  "") ;;
  -h | --help) awk 'NR > 1 && /^#/ { print substr($0, 3); next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  # Loop devices, mount and chroot need root; the cache stays the calling user's.
  export DRAGONFLY_CACHE_DIR=${DRAGONFLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dragonfly}
  exec sudo --preserve-env=DRAGONFLY_CACHE_DIR "$0" "$@"
fi
scripts/deps.sh os-image >&2

packages=linux-image-cloud-amd64,systemd-sysv,udev,dbus,initramfs-tools,grub-pc-bin,grub-efi-amd64-bin,grub2-common,cloud-init,cloud-guest-utils,sudo,openssh-server,ifupdown,isc-dhcp-client,iproute2,netbase
# The key: this script and the versions apt would take for the packages that matter most.
versions=$(apt-cache policy linux-image-cloud-amd64 cloud-init grub-pc-bin grub-efi-amd64-bin systemd 2>/dev/null |
  awk '/^[a-z]/ { p = $1 } /Candidate:/ { print p, $2 }')
key=$( { cat "$0"; echo "$versions"; } | sha256sum | cut -c1-16)
cache=${DRAGONFLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dragonfly}/os-image/$key
record() { mkdir -p out && echo "$cache" > out/os-image.path && echo "$cache"; }
if [ "$rebuild" -eq 0 ] && [ -s "$cache/debian-12.raw.zst.sha256" ] && [ -s "$cache/debian-12.qcow2.sha256" ]; then
  say "OS image: cached ($cache)"
  record
  exit 0
fi

work=$(mktemp -d)
mnt=$work/mnt
loop=""
cleanup() {
  set +e
  for m in dev/pts dev proc sys ""; do
    mountpoint -q "$mnt/$m" 2> /dev/null && umount "$mnt/$m"
  done
  if [ -n "$loop" ]; then
    partx -d "$loop" 2> /dev/null
    losetup -d "$loop"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The machine's own apt sources (deb822 files and one-line lists) for mmdebstrap.
mirrors=()
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -s "$f" ] && grep -qvE '^\s*(#|$)' "$f" && mirrors+=("$f")
done
[ ${#mirrors[@]} -gt 0 ] || die "no apt sources in /etc/apt"

started=$(date +%s)
say "[1/5] Debian 12 root file system with cloud-init (mmdebstrap, about a minute)"
mkdir -p "$work/root"
mmdebstrap --quiet --variant=minbase --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='echo debian > "$1/etc/hostname"' \
  --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
  --customize-hook='printf "%s\n" "datasource_list: [ NoCloud, None ]" "ssh_genkeytypes: [ ed25519 ]" > "$1/etc/cloud/cloud.cfg.d/90-dragonfly.cfg"' \
  --customize-hook='printf "%s\n" "GRUB_TIMEOUT=1" "GRUB_RECORDFAIL_TIMEOUT=1" "GRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200n8\"" "GRUB_TERMINAL=\"console serial\"" "GRUB_SERIAL_COMMAND=\"serial --speed=115200\"" >> "$1/etc/default/grub"' \
  bookworm "$work/root" "${mirrors[@]}" >&2

say "[2/5] 1 GiB GPT disk: BIOS boot, EFI system, root"
disk=$work/debian-12.raw
truncate -s 1G "$disk"
sfdisk --quiet "$disk" >&2 <<'EOF'
label: gpt
size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios
size=64MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
EOF
loop=$(losetup -f --show "$disk")
# No GPT parser in some kernels: tell the kernel about the partitions directly.
partx -a "$loop" 2> /dev/null || true
for i in 2 3; do
  [ -b "${loop}p$i" ] || die "no partition device ${loop}p$i after partx -a"
done
root_uuid=$(cat /proc/sys/kernel/random/uuid)
esp_id=$(printf '%08X' $((RANDOM * 32768 + RANDOM)))
echo "UUID=$root_uuid / ext4 errors=remount-ro 0 1" > "$work/root/etc/fstab"

say "[3/5] file systems (ext4 root from the tree, FAT ESP)"
mkfs.ext4 -q -F -L root -U "$root_uuid" -d "$work/root" "${loop}p3"
mkfs.vfat -F 32 -n ESP -i "$esp_id" "${loop}p2" > /dev/null 2>&1

say "[4/5] GRUB for BIOS (grub-install) and UEFI (BOOTX64.EFI with an embedded search)"
mkdir -p "$mnt"
mount "${loop}p3" "$mnt"
mount --bind /dev "$mnt/dev"
mount --bind /proc "$mnt/proc"
mount --bind /sys "$mnt/sys"
chroot "$mnt" grub-install --target=i386-pc --modules="part_gpt ext2" "$loop" >&2
chroot "$mnt" update-grub >&2 2>&1 | tail -n 2 >&2 || true
# Without udev, update-grub names the loop partition: point it at the root's UUID.
sed -i "s#root=/dev/loop[0-9]*p3#root=UUID=$root_uuid#g" "$mnt/boot/grub/grub.cfg"
grep -q "root=UUID=$root_uuid" "$mnt/boot/grub/grub.cfg" || die "grub.cfg has no root=UUID"
printf 'search.fs_uuid %s root\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n' "$root_uuid" > "$mnt/tmp/embedded.cfg"
chroot "$mnt" grub-mkimage -O x86_64-efi -p /boot/grub -c /tmp/embedded.cfg -o /tmp/BOOTX64.EFI \
  part_gpt ext2 fat search search_fs_uuid normal configfile linux echo all_video gzio serial terminal
mmd -i "${loop}p2" ::/EFI ::/EFI/BOOT
mcopy -i "${loop}p2" "$mnt/tmp/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
rm -f "$mnt/tmp/BOOTX64.EFI" "$mnt/tmp/embedded.cfg"
for m in sys proc dev ""; do umount "$mnt/$m"; done
partx -d "$loop" 2> /dev/null || true
losetup -d "$loop"
loop=""

say "[5/5] zstd -3, qcow2 (zlib clusters) and checksums"
zstd -q -3 -T0 "$disk" -o "$disk.zst"
qemu-img convert -c -f raw -O qcow2 "$disk" "$disk.qcow2"
mkdir -p "$cache"
mv "$disk.zst" "$cache/debian-12.raw.zst"
mv "$disk.qcow2" "$cache/debian-12.qcow2"
stat -c %s "$disk" > "$cache/size_bytes"
(cd "$cache" && for f in debian-12.raw.zst debian-12.qcow2; do sha256sum "$f" | cut -d' ' -f1 > "$f.sha256"; done)
echo "$versions" > "$cache/versions"
say "OS image built in $(($(date +%s) - started)) s: $(stat -c %s "$cache/debian-12.raw.zst") bytes zstd ($cache)"
record
