#!/usr/bin/env bash
# The Tinkerbell backend against a real kube-apiserver (scripts/kube.sh), in one run: the API
# server's start time, registration -> Hardware visible, Workflow status -> progress visible,
# and Dragonfly's RSS idle and with MACHINES machines and their objects in the cluster
# (scripts/bench-kube.py says how each is measured). Uses the static release binary.
#
#   scripts/bench-kube.sh [MACHINES] [SAMPLES]     defaults 1000 and 200
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/x86_64-unknown-linux-musl/release/dragonfly
[ -x "$bin" ] || scripts/build-release.sh > /dev/null
scripts/kube.sh build > /dev/null
dir=$(mktemp -d)
trap 'scripts/kube.sh stop "$dir"; rm -rf "$dir"' EXIT
scripts/kube.sh start "$dir" | grep 'ready'
python3 scripts/bench-kube.py "$dir" "$bin" "${1:-1000}" "${2:-200}"
