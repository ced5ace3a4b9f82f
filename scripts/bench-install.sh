#!/usr/bin/env bash
# The agent's image write against the shell pipeline it replaces, on the same image and the
# same disk in the same run:
#   A: dragonfly-agent write-image --url URL --format raw.zst --sha256 SUM --device DISK
#   B: curl -s URL | zstd -dc | dd of=DISK bs=4M oflag=direct conv=notrunc
# (B verifies nothing; A also hashes the download.) Then the same for the qcow2 image:
#   C: dragonfly-agent write-image --url URL --format qcow2 --sha256 SUM --device DISK
#   D: curl -s -o FILE URL && qemu-img convert -n -f qcow2 -O raw -t none FILE DISK
# (C spools on the disk itself, D on the file system next to it.) The image is the OS test image from
# scripts/os-image.sh, served on loopback by Python's http.server; the disk is a
# preallocated file in $BENCH_DIR (default: a temporary directory). hyperfine alternates
# nothing, so the two are run in turn, RUNS times each; /usr/bin/time -v gives the agent's
# peak memory.
#
#   scripts/bench-install.sh [RUNS]      (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}

scripts/deps.sh bench >&2
image_dir=$(scripts/os-image.sh)
sha=$(cat "$image_dir/debian-12.raw.zst.sha256")
size=$(cat "$image_dir/size_bytes")
cargo build --release --locked -q -p dragonfly-agent
agent=$PWD/target/release/dragonfly-agent

dir=${BENCH_DIR:-$(mktemp -d)}
disk=$dir/disk.img
qcow2_sha=$(cat "$image_dir/debian-12.qcow2.sha256")
qcow2_bytes=$(stat -c %s "$image_dir/debian-12.qcow2")
# Room for the image, the qcow2 spool past it, and the seed the agent keeps free.
fallocate -l $((size + qcow2_bytes + (64 << 20))) "$disk"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$image_dir" "$port" > /dev/null 2>&1 &
http=$!
trap 'kill $http 2> /dev/null; [ -n "${BENCH_DIR:-}" ] || rm -rf "$dir"' EXIT
url=http://127.0.0.1:$port/debian-12.raw.zst
for _ in $(seq 50); do curl -sfI "$url" > /dev/null && break; sleep 0.1; done

echo "==> image: $(stat -c %s "$image_dir/debian-12.raw.zst") bytes zstd, $size bytes raw; disk: $disk"
hyperfine --runs "$runs" --warmup 1 \
  -n agent "$agent write-image --url $url --format raw.zst --sha256 $sha --device $disk" \
  -n 'curl | zstd -d | dd' "curl -s $url | zstd -dc | dd of=$disk bs=4M oflag=direct conv=notrunc status=none"
echo "==> the agent's peak memory"
/usr/bin/time -v "$agent" write-image --url "$url" --format raw.zst --sha256 "$sha" --device "$disk" 2>&1 |
  grep -E "wrote|Maximum resident|Elapsed"

qurl=http://127.0.0.1:$port/debian-12.qcow2
echo "==> qcow2: $qcow2_bytes bytes (zlib clusters)"
hyperfine --runs "$runs" --warmup 1 \
  -n 'agent qcow2' "$agent write-image --url $qurl --format qcow2 --sha256 $qcow2_sha --device $disk" \
  -n 'curl + qemu-img convert' "curl -s -o $dir/spool.qcow2 $qurl && qemu-img convert -n -f qcow2 -O raw -t none $dir/spool.qcow2 $disk && rm $dir/spool.qcow2"
/usr/bin/time -v "$agent" write-image --url "$qurl" --format qcow2 --sha256 "$qcow2_sha" --device "$disk" 2>&1 |
  grep -E "wrote|Maximum resident|Elapsed"
