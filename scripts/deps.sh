#!/usr/bin/env bash
# Installs what building and testing Dragonfly needs on a Debian machine that has Rust:
# Debian packages (only the missing ones) and the musl target. Idempotent and quiet when
# everything is already there.
#
#   scripts/deps.sh            build + test needs
#   scripts/deps.sh bench      adds the load tools used by scripts/bench-*.sh
set -euo pipefail

want=(musl-tools pkg-config)
case "${1:-}" in
  bench) want+=(wrk hyperfine time) ;;
esac

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
