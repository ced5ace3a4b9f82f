#!/usr/bin/env bash
# A real Kubernetes API server on loopback, for the Tinkerbell tests and by hand:
# kube-apiserver 1.20 built from Debian's `kubernetes` source package with Go 1.15, and
# Debian's etcd, with RBAC, token authentication and the Tinkerbell CRDs.
#
#   scripts/kube.sh build                 build once; cached under ~/.cache/dragonfly/kube/KEY
#                                         (KEY: the package versions), progress shown
#   scripts/kube.sh start DIR             start etcd and kube-apiserver on free 127.0.0.1 ports
#                                         (state, logs, certificates in DIR), install the
#                                         Tinkerbell CRDs; writes DIR/env and DIR/kubeconfig
#   scripts/kube.sh crds DIR current|legacy   replace the Tinkerbell CRDs with that set
#   scripts/kube.sh restart DIR [--compact]   stop kube-apiserver and start it again on the same
#                                         port; --compact first moves etcd on and compacts it, so
#                                         a watch resuming from before gets 410 Gone
#   scripts/kube.sh stop DIR              stop both by their process ids
#
# DIR/env (shell syntax): KUBE_URL, KUBE_CA (the CA file), KUBE_ADMIN_TOKEN (a member of
# system:masters, for setting up; what is tested authenticates as a ServiceAccount).
# Loopback only: 1.20 has known CVEs. What 1.20 cannot check (CEL rules, strict field
# validation) is in ../README.md's Tinkerbell section.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

k8s_source_version=1.20.5+really1.20.2-1.1+deb12u1
crds_current=server/tests/tinkerbell/crds
crds_legacy=server/tests/tinkerbell/crds/legacy-tink-v0.12.2
cache=${XDG_CACHE_HOME:-$HOME/.cache}/dragonfly/kube
die() { echo "error: $*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }

# ---- build ------------------------------------------------------------------------------------
apt_setup() {
  apt_dir=$cache/apt
  mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
  [ "$(id -u)" -eq 0 ] && apt_opts+=(-o "APT::Sandbox::User=root")
  # Debian's own entries of this machine's sources (deb and deb-src), plus the bullseye suite
  # of the same mirror (Go 1.15: what Kubernetes 1.20 was made with).
  local f uri=""
  rm -f "$apt_dir/sources.list.d/"*
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    grep -q 'debian-archive-keyring' "$f" || continue
    sed -E 's/^Types:.*/Types: deb deb-src/' "$f" > "$apt_dir/sources.list.d/$(basename "$f")"
    [ -n "$uri" ] || uri=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' "$f")
  done
  if [ -z "$uri" ] && [ -e /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list)
    sed -nE 's/^[[:space:]]*deb[[:space:]]+(.*)$/deb \1\ndeb-src \1/p' /etc/apt/sources.list \
      > "$apt_dir/sources.list.d/system.list"
  fi
  [ -n "$uri" ] || die "no Debian mirror in this machine's apt sources"
  printf 'Types: deb\nURIs: %s\nSuites: bullseye\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" > "$apt_dir/sources.list.d/bullseye.sources"
  if [ ! -e "$apt_dir/lists/.updated" ] || [ -n "$(find "$apt_dir/lists/.updated" -mmin +1440)" ]; then
    say "package lists (private apt configuration; bookworm and bullseye)"
    apt-get "${apt_opts[@]}" update > "$cache/apt-update.log" 2>&1 || { tail -n 20 "$cache/apt-update.log" >&2; die "apt-get update failed"; }
    touch "$apt_dir/lists/.updated"
  fi
}
candidate() { apt-cache "${apt_opts[@]}" policy "$1" | sed -n 's/^  Candidate: //p'; }

build() {
  scripts/deps.sh kube
  mkdir -p "$cache"
  apt_setup
  local go_ver etcd_ver key out work root src
  go_ver=$(candidate golang-1.15-go)
  etcd_ver=$(candidate etcd-server)
  [ -n "$go_ver" ] && [ "$go_ver" != "(none)" ] || die "golang-1.15-go: not in the bullseye suite of this machine's mirror"
  [ -n "$etcd_ver" ] && [ "$etcd_ver" != "(none)" ] || die "etcd-server: not in this machine's sources"
  key=$(printf '%s\n' "$k8s_source_version" "$go_ver" "$etcd_ver" | sha256sum | cut -c1-12)
  out=$cache/$key
  if [ -x "$out/bin/kube-apiserver" ] && [ -x "$out/bin/etcd" ]; then
    echo "$out/bin"
    return
  fi
  work=$cache/work
  rm -rf "$work" && mkdir -p "$work/debs" "$work/root" "$work/src"
  say "downloading golang-1.15 $go_ver, etcd-server $etcd_ver, kubernetes $k8s_source_version (source, 34 MB)" >&2
  (cd "$work/debs" && apt-get "${apt_opts[@]}" download "golang-1.15-go=$go_ver" "golang-1.15-src=$go_ver" \
    "etcd-server=$etcd_ver" && apt-get "${apt_opts[@]}" source --download-only "kubernetes=$k8s_source_version") \
    > "$work/download.log" 2>&1 || { tail -n 20 "$work/download.log" >&2; die "download failed"; }
  for d in "$work/debs/"*.deb; do dpkg-deb -x "$d" "$work/root"; done
  say "unpacking the Kubernetes 1.20.2 tree" >&2
  orig=$(ls "$work/debs/"kubernetes_*.orig.tar.* | head -n 1)
  tar -xf "$orig" -C "$work/src" --strip-components=1
  say "building kube-apiserver with Go 1.15 (~3-5 min on 2 cores; log: $work/make.log)" >&2
  local goroot=$work/root/usr/lib/go-1.15
  (
    cd "$work/src"
    export GOROOT=$goroot PATH=$goroot/bin:$PATH GOPATH=$work/gopath GOCACHE=$work/gocache \
      GOFLAGS=-mod=vendor KUBE_VERBOSE=0
    make WHAT=cmd/kube-apiserver > "$work/make.log" 2>&1 &
    pid=$!
    start=$(date +%s)
    while kill -0 "$pid" 2> /dev/null; do
      sleep 15
      printf '    ... %3d s, %s\n' $(($(date +%s) - start)) "$(tail -n 1 "$work/make.log" | cut -c1-80)" >&2
    done
    wait "$pid"
  ) || { tail -n 30 "$work/make.log" >&2; die "building kube-apiserver failed"; }
  mkdir -p "$out/bin"
  install -m 0755 "$(find "$work/src/_output" -type f -name kube-apiserver | head -n 1)" "$out/bin/kube-apiserver"
  install -m 0755 "$work/root/usr/bin/etcd" "$out/bin/etcd"
  rm -rf "$work"
  echo "$out/bin"
}

# ---- start / stop -----------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

api() { # METHOD PATH [curl args...]: as the admin
  local method=$1 path=$2
  shift 2
  curl -sS --max-time 30 --cacert "$dir/ca.crt" -H "Authorization: Bearer $KUBE_ADMIN_TOKEN" \
    -X "$method" "$KUBE_URL$path" "$@"
}

# Exits 0 when the CRD read from standard input is Established.
established='
import json, sys
try:
    c = json.load(sys.stdin)["status"]["conditions"] or []
except (ValueError, KeyError, TypeError):
    sys.exit(1)
sys.exit(0 if any(x.get("type") == "Established" and x.get("status") == "True" for x in c) else 1)
'

install_crds() { # DIR SET
  local set_dir f name
  case "$2" in current) set_dir=$crds_current ;; legacy) set_dir=$crds_legacy ;; *) die "crds: current|legacy" ;; esac
  # shellcheck disable=SC1091
  . "$dir/env"
  for f in "$set_dir"/*.yaml; do
    name=$(awk '/^metadata:/ { m = 1 } m && /^  name:/ { print $2; exit }' "$f")
    api DELETE "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name" -o /dev/null || true
  done
  for f in "$set_dir"/*.yaml; do
    name=$(awk '/^metadata:/ { m = 1 } m && /^  name:/ { print $2; exit }' "$f")
    # A deleted CRD lingers until its objects are gone: retry the create until it takes.
    for i in $(seq 120); do
      code=$(api POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions -H 'Content-Type: application/yaml' \
        --data-binary "@$f" -o "$dir/crd.out" -w '%{http_code}')
      [ "$code" = 201 ] && break
      [ "$code" = 409 ] || die "creating CRD $name: HTTP $code: $(head -c 400 "$dir/crd.out")"
      sleep 0.25
      [ "$i" = 120 ] && die "CRD $name: still terminating after 30 s"
    done
    for i in $(seq 120); do
      api GET "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$name" \
        | python3 -c "$established" \
        && break
      sleep 0.25
      [ "$i" = 120 ] && die "CRD $name: not Established after 30 s"
    done
  done
  echo "$2" > "$dir/crds"
}

start() {
  local bin t0 etcd_port peer_port api_port token
  bin=$(build)
  mkdir -p "$dir"
  dir=$(realpath "$dir")
  [ ! -e "$dir/apiserver.pid" ] || ! kill -0 "$(cat "$dir/apiserver.pid")" 2> /dev/null || die "$dir: already running"
  t0=$(date +%s.%N)
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=dragonfly-test-ca -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout server.key -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) > "$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; die "openssl failed"; }
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '%s,admin,admin-uid,"system:masters"\n' "$token" > "$dir/tokens.csv"
  etcd_port=$(free_port) peer_port=$(free_port) api_port=$(free_port)
  "$bin/etcd" --name default --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "default=http://127.0.0.1:$peer_port" > "$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"
  printf '%s\n' "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" --insecure-port 0 \
    --tls-cert-file "$dir/server.crt" --tls-private-key-file "$dir/server.key" --client-ca-file "$dir/ca.crt" \
    --token-auth-file "$dir/tokens.csv" --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --service-cluster-ip-range 10.96.0.0/24 > "$dir/apiserver.args"
  printf 'KUBE_URL=https://127.0.0.1:%s\nKUBE_CA=%s\nKUBE_ADMIN_TOKEN=%s\nKUBE_ETCD=http://127.0.0.1:%s\n' \
    "$api_port" "$dir/ca.crt" "$token" "$etcd_port" > "$dir/env"
  run_apiserver
  printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: %s\n    certificate-authority: %s\nusers:\n- name: admin\n  user:\n    token: %s\ncontexts:\n- name: local\n  context: {cluster: local, user: admin}\ncurrent-context: local\n' \
    "$KUBE_URL" "$KUBE_CA" "$token" > "$dir/kubeconfig"
  install_crds "$dir" current
  awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "==> kube-apiserver ready with the Tinkerbell CRDs after %.1f s\n", a - b }'
  echo "    $KUBE_URL (state: $dir; stop: scripts/kube.sh stop $dir)"
}

# Starts kube-apiserver with the arguments `start` saved, and waits until it is ready.
run_apiserver() {
  local args
  mapfile -t args < "$dir/apiserver.args"
  "${args[@]}" >> "$dir/apiserver.log" 2>&1 &
  echo $! > "$dir/apiserver.pid"
  # shellcheck disable=SC1091
  . "$dir/env"
  for i in $(seq 240); do
    [ "$(api GET /readyz -o /dev/null -w '%{http_code}' 2> /dev/null)" = 200 ] && return
    kill -0 "$(cat "$dir/apiserver.pid")" 2> /dev/null || { tail -n 20 "$dir/apiserver.log" >&2; die "kube-apiserver exited"; }
    sleep 0.25
  done
  tail -n 20 "$dir/apiserver.log" >&2
  die "kube-apiserver not ready after 60 s"
}

stop_one() { # NAME: stops DIR/NAME.pid's process
  local pid
  [ -e "$dir/$1.pid" ] || return 0
  pid=$(cat "$dir/$1.pid")
  if kill "$pid" 2> /dev/null; then
    for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2> /dev/null || true
  fi
  rm -f "$dir/$1.pid"
}

restart() {
  # shellcheck disable=SC1091
  . "$dir/env"
  stop_one apiserver
  if [ "${1:-}" = --compact ]; then
    # Writes past every revision a client has seen, then compacts etcd at the newest one.
    local rev=""
    for i in 1 2 3; do
      rev=$(curl -sS --max-time 10 -X POST "$KUBE_ETCD/v3/kv/put" \
        -d "{\"key\": \"$(printf '/dragonfly-test/%s' "$i" | base64)\", \"value\": \"eA==\"}" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["header"]["revision"])')
    done
    curl -sS --max-time 30 -X POST "$KUBE_ETCD/v3/kv/compaction" -d "{\"revision\": \"$rev\", \"physical\": true}" > /dev/null
    echo "==> etcd compacted at revision $rev"
  fi
  run_apiserver
  echo "==> kube-apiserver restarted"
}

stop() {
  stop_one apiserver
  stop_one etcd
}

case "${1:-}" in
  build) build > /dev/null; echo "kube-apiserver and etcd: $(build)" ;;
  start) dir=${2:?start DIR}; start ;;
  stop) dir=${2:?stop DIR}; stop ;;
  restart) dir=${2:?restart DIR [--compact]}; restart "${3:-}" ;;
  crds) dir=${2:?crds DIR current|legacy}; install_crds "$dir" "${3:?crds DIR current|legacy}" ;;
  -h | --help | "") awk 'NR > 1 && /^#/ { print substr($0, 3); next } NR > 1 { exit }' "$0" ;;
  *) die "unknown command $1 (see --help)" ;;
esac
