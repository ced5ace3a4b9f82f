#!/usr/bin/env bash
# Soak benchmark (hardening issue): N simulated agents (`dragonfly-agent simulate`, the real
# protocol loop on a thread each) registered and long-polling against the static release
# server on loopback for a while. Samples every 10 s: server RSS, CPU, open descriptors,
# and /healthz latency; the same /healthz probe on the idle server first is the same-run
# comparison. Prints a summary (memory per waiting agent, failures) and writes the samples
# to bench-soak.csv in the temporary directory it names.
#
#   scripts/bench-soak.sh [AGENTS] [SECONDS]      default 10000 agents, 600 s (plus a 60 s ramp)
#
# Needs descriptors for both processes (ulimit -n >= AGENTS + 1000); bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
agents="${1:-10000}"
secs="${2:-600}"
ramp=60
target="${CARGO_TARGET_DIR:-target}"
rel="$target/x86_64-unknown-linux-musl/release"
[ -x "$rel/dragonfly" ] && [ -x "$rel/dragonfly-agent" ] || scripts/build-release.sh
# SERVER=path measures another server binary (an older build, for a same-run comparison).
server_bin="${SERVER:-$rel/dragonfly}"
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((agents + 1000)) ]; then
  echo "error: ulimit -n is $(ulimit -n); $((agents + 1000)) descriptors are needed" >&2
  exit 1
fi

work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
RUST_LOG=warn "$server_bin" --host 127.0.0.1 --port "$port" --db "$work/sqlite.db" \
  --max-connections-per-address $((agents + 1000)) \
  --registrations-per-minute-per-address 1000000 >"$work/server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 100); do curl -fs "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
# RSS splits into the heap (anonymous) and pages of mapped files: the database is memory
# mapped (store.rs), so its pages the server touched count as RSS although the kernel can
# drop them at will.
rss_anon() { awk '/RssAnon/ {print $2}' "/proc/$server/status"; }
rss_file() { awk '/RssFile|RssShmem/ {n += $2} END {print n}' "/proc/$server/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
fds() { ls "/proc/$server/fd" | wc -l; }
health_ms() { curl -s -o /dev/null -w '%{time_total}' "$url/healthz" | awk '{printf "%.2f", $1 * 1000}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p99() { sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; print a[i]}'; }

# The idle server: the comparison for /healthz and the memory baseline.
idle_rss=$(rss)
idle_anon=$(rss_anon)
for _ in $(seq 50); do health_ms; echo; done >"$work/idle-health"

"$rel/dragonfly-agent" simulate --server "$url" --count "$agents" --ramp "$ramp" \
  --duration $((secs + ramp)) >"$work/sim.log" 2>&1 &
sim=$!
pids+=("$sim")
echo "t_s,rss_kib,cpu_ticks,fds,healthz_ms,anon_kib,file_kib" >"$work/bench-soak.csv"
start=$(date +%s)
while kill -0 "$sim" 2>/dev/null; do
  t=$(( $(date +%s) - start ))
  echo "$t,$(rss),$(cpu),$(fds),$(health_ms),$(rss_anon),$(rss_file)" >>"$work/bench-soak.csv"
  sleep 10
done
wait "$sim" || true
ticks=$(getconf CLK_TCK)

# Steady state: after the ramp.
steady=$(awk -F, -v r="$ramp" 'NR > 1 && $1 > r + 10' "$work/bench-soak.csv")
peak_rss=$(echo "$steady" | cut -d, -f2 | sort -n | tail -1)
max_fds=$(echo "$steady" | cut -d, -f4 | sort -n | tail -1)
first=$(echo "$steady" | head -1); last=$(echo "$steady" | tail -1)
cpu_pct=$(awk -v a="$(echo "$first" | cut -d, -f3)" -v b="$(echo "$last" | cut -d, -f3)" \
  -v t0="$(echo "$first" | cut -d, -f1)" -v t1="$(echo "$last" | cut -d, -f1)" -v hz="$ticks" \
  'BEGIN {printf "%.1f", (b - a) / hz / (t1 - t0) * 100}')
loaded_med=$(echo "$steady" | cut -d, -f5 | median)
loaded_p99=$(echo "$steady" | cut -d, -f5 | p99)
idle_med=$(median <"$work/idle-health")
per_agent=$(awk -v p="$peak_rss" -v i="$idle_rss" -v n="$agents" 'BEGIN {printf "%.1f", (p - i) / n}')
peak_anon=$(echo "$steady" | cut -d, -f6 | sort -n | tail -1)
peak_file=$(echo "$steady" | cut -d, -f7 | sort -n | tail -1)
anon_per_agent=$(awk -v p="$peak_anon" -v i="$idle_anon" -v n="$agents" 'BEGIN {printf "%.1f", (p - i) / n}')
db_bytes=$(du -cb "$work"/sqlite.db* | tail -1 | cut -f1)
echo "agents:            $agents, ${secs} s after a ${ramp} s ramp"
echo "simulator:         $(tail -1 "$work/sim.log")"
echo "server RSS:        idle ${idle_rss} KiB, peak ${peak_rss} KiB -> ${per_agent} KiB per waiting agent"
echo "  of which heap:   idle ${idle_anon} KiB, peak ${peak_anon} KiB -> ${anon_per_agent} KiB per waiting agent"
echo "  mapped files:    peak ${peak_file} KiB (the database and its WAL index: ${db_bytes} bytes on disk)"
echo "server CPU:        ${cpu_pct} % of one core (steady state)"
echo "descriptors:       ${max_fds} open at most"
echo "/healthz:          idle median ${idle_med} ms; with the agents median ${loaded_med} ms, p99 ${loaded_p99} ms"
echo "accept errors:     $(grep -c 'accept failed' "$work/server.log" || true)"
echo "samples:           $work/bench-soak.csv (kept)"
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
