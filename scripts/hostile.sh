#!/usr/bin/env bash
# Hostile load against the static release binary on loopback, under a 1,024-descriptor
# limit (the systemd default): idle and trickling connections, huge methods, registration
# floods and identity takeovers, boot-script floods, unacknowledged TFTP requests, password
# guessing. Then checks that /healthz answered within 100 ms throughout, that the real
# agent and machine were untouched, that the admin can log in, and the memory and database
# bounds (scripts/hostile.py). Bounded: about a minute; all traffic to 127.0.0.0/8.
#
#   scripts/hostile.sh          (builds target/x86_64-unknown-linux-musl/release/dragonfly if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
bin="$target/x86_64-unknown-linux-musl/release/dragonfly"
[ -x "$bin" ] || scripts/build-release.sh

work="$(mktemp -d)"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
tftp_port=$(free_udp)
mkdir -p "$work/boot/tftp"
head -c 4096 /dev/urandom >"$work/boot/vmlinuz"
head -c 4096 /dev/urandom >"$work/boot/initramfs.zst"
head -c 65536 /dev/urandom >"$work/boot/tftp/undionly.kpxe"

password="hostile operator passphrase"
echo "$password" | "$bin" admin set-password --db "$work/sqlite.db" 2>/dev/null
token=$("$bin" admin create-token --db "$work/sqlite.db" --name hostile 2>/dev/null)

# The soft and hard descriptor limits both 1,024: the server cannot raise its way out.
RUST_LOG=warn prlimit --nofile=1024:1024 "$bin" --host 127.0.0.1 --port "$port" \
  --db "$work/sqlite.db" --boot-dir "$work/boot" --tftp --tftp-port "$tftp_port" \
  >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
status=0
timeout 300 python3 scripts/hostile.py "http://127.0.0.1:$port" "$tftp_port" "$password" \
  "$token" "$pid" "$work/sqlite.db" || status=$?
if grep -q 'os error 24' "$work/server.log"; then
  echo "FAIL the server ran out of descriptors:"; grep -m3 'os error 24' "$work/server.log"
  status=1
fi
exit $status
