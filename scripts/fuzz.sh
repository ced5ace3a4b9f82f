#!/usr/bin/env bash
# Fuzzes the parsers that face the network with cargo-fuzz (libFuzzer): MAC addresses and
# `/boot/{mac}.ipxe` names (mac), TFTP datagrams (tftp_packet), DHCP requests (dhcp_packet), agent hardware reports
# (report_json), and the agent's qcow2 reader (qcow2, seeded with small files qemu-img made).
# Each target runs for SECONDS, from its seeds in fuzz/seeds/ (report_json
# also from the agent's fixtures) plus what earlier runs on this machine found.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      default: 20 seconds, every target
#
# Prints the executions per target; exits non-zero when a target crashes, naming the input
# that did it (under target/fuzz-runs/artifacts/). Replay one with
#   cargo fuzz run -s none --target-dir target/fuzz TARGET FILE
#
# Only the stable toolchain is needed: the targets are built without a sanitizer (ASan needs
# nightly's -Zsanitizer); libFuzzer's coverage instrumentation, Rust's panics and the
# overflow and debug assertions cargo-fuzz turns on are what catch bugs.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(mac tftp_packet dhcp_packet report_json qcow2)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

target_root="${CARGO_TARGET_DIR:-target}"
build_dir="$target_root/fuzz"
runs="$target_root/fuzz-runs"
fuzz=(-s none --target-dir "$build_dir")

echo "==> building the fuzz targets"
if [ ${#targets[@]} -eq 1 ]; then
  cargo fuzz build "${fuzz[@]}" "${targets[0]}"
else
  cargo fuzz build "${fuzz[@]}"
fi

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$runs/corpus/$t"
  artifacts="$runs/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  if [ "$t" = report_json ]; then
    cp -n agent/fixtures/*.json "$corpus/" 2>/dev/null || true
  fi
  options=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
    -artifact_prefix="$artifacts/")
  [ -s "fuzz/dicts/$t.dict" ] && options+=(-dict="fuzz/dicts/$t.dict")
  log="$runs/$t.log"
  echo "==> fuzzing $t for ${seconds}s"
  status=0
  cargo fuzz run "${fuzz[@]}" "$t" "$corpus" "fuzz/seeds/$t" -- "${options[@]}" >"$log" 2>&1 ||
    status=$?
  # The final stats, or after a crash the last progress line (#N ...).
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  [ -n "$execs" ] || execs="$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -1)"
  if [ "$status" -eq 0 ]; then
    summary+=("$t: ${execs:-?} executions in ${seconds}s, no crash")
  else
    crash="$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)"
    summary+=("$t: FAILED (exit $status) after ${execs:-?} executions; input: ${crash:-none, see $log}")
    failed+=("$t")
    grep -E -A3 "panicked at|deadly signal|ERROR: libFuzzer" "$log" | head -20 || true
  fi
done

echo
printf 'fuzz %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (full logs in $runs/)" >&2
  exit 1
fi
