#!/usr/bin/env bash
# Agent benchmarks (issue: agent): the static binary's size, and the time from process
# start to registered on loopback — the agent reading a fixture tree and registering once
# (`--once --dry-run`), beside curl posting that same report in the same run as the floor.
#
#   scripts/bench-agent.sh [RUNS]        (default 50 runs each, hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-50}"
scripts/deps.sh bench
target=x86_64-unknown-linux-musl
# SERVER=path reuses a server binary already built (the one scripts/bench-api.sh leaves).
if [ -z "${SERVER:-}" ]; then
  cargo build --release --locked --target "$target" -p dragonfly >&2
fi
cargo build --release --locked --target "$target" -p dragonfly-agent >&2   # the agent alone: its own feature set
agent="target/$target/release/dragonfly-agent"
server="${SERVER:-target/$target/release/dragonfly}"
size=$(stat -c %s "$agent")

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn "$server" --host 127.0.0.1 --port "$port" --db "$dir/sqlite.db" \
  --max-connections-per-address 100000 --registrations-per-minute-per-address 1000000 >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$dir"' EXIT
url="http://127.0.0.1:$port"
for _ in $(seq 1 200); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.05; done

fixture=agent/fixtures/qemu-q35
"$agent" inventory --root "$fixture" >"$dir/report.json"
python3 -c 'import json,sys; print(json.dumps({"agent_version":"bench","protocol":1,"report":json.load(open(sys.argv[1]))}))' "$dir/report.json" >"$dir/register.json"

hyperfine --warmup 3 --runs "$runs" --export-markdown "$dir/agent.md" \
  -n "agent: start, read fixture, register" "$agent --server $url --root $fixture --once --dry-run" \
  -n "curl: POST the same report" "curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary @$dir/register.json $url/api/v1/agent/register" >&2

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "date: $(date -u +%Y-%m-%d)"
echo "agent binary: $size bytes (static, stripped)"
echo
cat "$dir/agent.md"
