#!/usr/bin/env bash
# The Alpine source's checks can fail: fetches the verified files once (alpine/fetch.sh,
# cached), then spoils a copy in each way the checks guard against and expects
# alpine/verify.py to refuse it, naming the file. Exits non-zero if a spoiled copy passes.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

alpine/fetch.sh "$work/root" > "$work/fetch.log" || { cat "$work/fetch.log"; exit 1; }
fails=0
# expect_refusal NAME PATTERN: verify.py on $work/case must fail with PATTERN in its error.
expect_refusal() {
  local name=$1 pattern=$2 out
  if out=$(python3 alpine/verify.py --db "$work/case.db" --root "$work/case" --lock "$work/case.lock" \
    --keys "$work/case.keys" 2>&1); then
    echo "FAIL $name: accepted"; fails=$((fails + 1))
  elif ! grep -q -- "$pattern" <<< "$out"; then
    echo "FAIL $name: refused, but not for the expected reason: $out"; fails=$((fails + 1))
  else
    echo "ok   $name: ${out#error: }"
  fi
}
fresh() {
  rm -rf "$work/case" "$work/case.keys"
  cp -a "$work/root" "$work/case"
  cp "$work/root.db" "$work/case.db"
  cp alpine/lock "$work/case.lock"
  cp -a alpine/keys "$work/case.keys"
}

fresh
python3 alpine/verify.py --db "$work/case.db" --root "$work/case" --lock "$work/case.lock" \
  --keys "$work/case.keys" > /dev/null && echo "ok   the untouched files pass" \
  || { echo "FAIL the untouched files are refused"; fails=$((fails + 1)); }

fresh
printf 'x' | dd of="$work/case/bin/busybox" bs=1 seek=4096 conv=notrunc status=none
expect_refusal "a changed byte in busybox" "bin/busybox: checksum"

fresh
echo extra > "$work/case/lib/modules/evil.ko"
expect_refusal "a file no package installed" "evil.ko: not a file of any installed Alpine package"

fresh
ln -sf /tmp/elsewhere "$work/case/lib/libc.musl-x86_64.so.1"
expect_refusal "a symlink pointing elsewhere" "libc.musl-x86_64.so.1: checksum"

fresh
sed -i 's/^package busybox .*/package busybox 1.36.1-r0/' "$work/case.lock"
expect_refusal "a package at another version than the lock's" "lock pins busybox 1.36.1-r0"

fresh
key=$(ls "$work/case.keys" | head -n 1)
sed -i '2s/^./A/;2s/^A/B/' "$work/case.keys/$key"
expect_refusal "a signing key other than the pinned one" "differs from the pinned one"

[ "$fails" -eq 0 ] && echo "alpine checks: all spoiled copies refused" || exit 1
