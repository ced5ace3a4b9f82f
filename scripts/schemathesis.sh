#!/usr/bin/env bash
# Generated requests for every operation of the OpenAPI document, against the real server on
# 127.0.0.1 with a throwaway database, in every phase (examples, coverage with its boundary
# and negative cases, fuzzing, stateful sequences) and with every check: no request gets a
# 5xx, every response matches the document (status code, content type, body schema), no
# request the document calls valid is refused, none it calls invalid is accepted. Exits
# non-zero on any failure and prints the counts.
#
#   scripts/schemathesis.sh [EXAMPLES_PER_OPERATION]     default 60 (over 3,000 cases)
#   SCHEMATHESIS_CHECKS=... SCHEMATHESIS_PHASES=...       narrow the run
#
# Bounded: EXAMPLES_PER_OPERATION generated cases per operation, and a wall-clock limit of
# SCHEMATHESIS_TIMEOUT seconds (default 300) for the whole run. Uses the debug binary that
# `cargo test` builds (target/debug/dragonfly), building it only when it is missing.
# schemathesis is pip-installed into a virtualenv under target/, once.
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${1:-60}"
timeout_secs="${SCHEMATHESIS_TIMEOUT:-300}"
version="4.32.5"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
venv="$target/schemathesis-venv"
bin="$target/debug/dragonfly"

if ! "$venv/bin/st" --version 2>/dev/null | grep -qF "$version"; then
  echo "==> installing schemathesis $version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
if [ ! -x "$bin" ]; then
  echo "==> building $bin"
  cargo build --locked -p dragonfly
fi

work="$(mktemp -d)"
server_pid=""
mirror_pid=""
cleanup() {
  [ -z "$mirror_pid" ] || kill "$mirror_pid" 2>/dev/null || true
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

db="$work/dragonfly.db"
token="$("$bin" admin create-token --name schemathesis --db "$db" 2>/dev/null)"
# Long-polls are held 1 s at most: generated heartbeats may ask for the full 60.
"$bin" --host 127.0.0.1 --port 0 --db "$db" --boot-dir "$work/boot" --long-poll-secs 1 \
  >"$work/server.log" 2>&1 &
server_pid=$!

# The port is the kernel's choice: read it from the server's ready line, then poll /healthz.
url=""
for _ in $(seq 300); do
  port="$(sed 's/\x1b\[[0-9;]*m//g' "$work/server.log" | grep -o 'listen=127\.0\.0\.1:[0-9]*' | head -1 | cut -d: -f2 || true)"
  if [ -n "$port" ] && curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
    url="http://127.0.0.1:$port"
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "the server did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
echo "==> server on $url"

# Machines from the agent's fixtures, so that operations on /machines/{id} meet real ones.
machine=""
agent_token=""
for fixture in agent/fixtures/*.json; do
  answer="$(printf '{"agent_version":"schemathesis","protocol":1,"report":%s}' "$(cat "$fixture")" |
    curl -fsS -H 'content-type: application/json' --data-binary @- "$url/api/v1/agent/register")"
  machine="$(printf '%s' "$answer" | sed 's/.*"machine_id":"\([^"]*\)".*/\1/')"
  agent_token="$(printf '%s' "$answer" | sed 's/.*"token":"\([^"]*\)".*/\1/')"
done
curl -fsS -H "Authorization: Bearer $token" -o "$work/openapi.json" "$url/api/openapi.json"
# schemathesis feeds ids seen in responses to other operations, DELETE included: give the
# deleting operations a machine, a token and an OS entry of their own, or it revokes its own
# token.
victim_machine="$(printf '{"agent_version":"schemathesis","report":{"boot_mac":"52:54:00:5c:ff:01"}}' |
  curl -fsS -H 'content-type: application/json' --data-binary @- "$url/api/v1/agent/register" |
  sed 's/.*"machine_id":"\([^"]*\)".*/\1/')"
victim_token="$(curl -fsS -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"to be revoked","scope":"read"}' "$url/api/v1/tokens" |
  sed 's/.*"id":"\([^"]*\)".*/\1/')"
curl -fsS -o /dev/null -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"slug":"to-be-deleted","name":"Victim","family":"debian","version":"1","image_url":"http://mirror.invalid/x.img"}' \
  "$url/api/v1/os"
# A checksum refresh fetches the entry's checksum_url: only ever this entry's, a list served
# on loopback by Python's http.server, never a URL a generated PUT wrote elsewhere.
mkdir -p "$work/mirror"
printf '%s  x.img\n' "$(printf 'schemathesis' | sha256sum | cut -d' ' -f1)" >"$work/mirror/SUMS"
mirror_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server --bind 127.0.0.1 --directory "$work/mirror" "$mirror_port" >/dev/null 2>&1 &
mirror_pid=$!
for _ in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$mirror_port/SUMS" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d "{\"slug\":\"refresh-target\",\"name\":\"Refresh\",\"family\":\"debian\",\"version\":\"1\",\"image_url\":\"http://mirror.invalid/x.img\",\"checksum_url\":\"http://127.0.0.1:$mirror_port/SUMS\"}" \
  "$url/api/v1/os"

# Operator requests carry the API token, heartbeats the last machine's agent token. Requests for one machine or OS
# entry name a real one. The one value the document cannot describe is whether user_data
# parses as YAML: it comes from a list of real cloud-config documents.
cat >"$work/schemathesis.toml" <<TOML
headers = { Authorization = "Bearer $token" }
continue-on-failure = true
request-timeout = 10

# A body past the server's size limit is refused with 413 before it is parsed: that too is
# a rejection of invalid data (user_data's maxLength is the limit the document states).
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]

[dictionaries.cloud_configs]
values = ["#cloud-config", "#cloud-config\npackages: [htop]\n", "#cloud-config\nruncmd:\n  - echo hi\n",
  "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: hello\n", ""]

[[operations]]
include-path = "/api/v1/os"
include-method = "POST"
parameters = { "body.user_data" = { dictionary = "cloud_configs", probability = 1.0 } }

[[operations]]
include-path = "/api/v1/agent/heartbeat"
headers = { Authorization = "Bearer $agent_token" }
parameters = { "query.wait" = 0 }

[[operations]]
include-path-regex = '^/api/v1/machines/\{id\}'
exclude-method = "DELETE"
parameters = { "path.id" = "$machine" }

[[operations]]
include-path = "/api/v1/machines/{id}"
include-method = "DELETE"
parameters = { "path.id" = "$victim_machine" }

[[operations]]
include-path = "/api/v1/tokens/{id}"
parameters = { "path.id" = "$victim_token" }

[[operations]]
include-path = "/api/v1/os/{slug}"
exclude-method = "DELETE"
parameters = { "path.slug" = "debian-12", "body.user_data" = { dictionary = "cloud_configs", probability = 1.0 } }

[[operations]]
include-path = "/api/v1/os/{slug}"
include-method = "DELETE"
parameters = { "path.slug" = "to-be-deleted" }

# A refresh of an entry whose checksum_url names no reachable server is the upstream's
# failure: 502, documented (the stateful phase makes such entries).
[[operations]]
include-path = "/api/v1/os/{slug}/refresh"
parameters = { "path.slug" = "refresh-target" }
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "502"]
TOML

# GET /api/v1/events is the live event stream: it never ends, so it is left out. One worker:
# with two, the generator sometimes fails inside Python's own parser ("AST constructor
# recursion depth mismatch", a thread-safety bug of CPython 3.11), an error of the tool, not
# of the server.
set +e
(
  cd "$work" &&
    NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 timeout --signal=INT --kill-after=30 "$timeout_secs" \
      "$venv/bin/st" --config-file "$work/schemathesis.toml" run "$work/openapi.json" \
      --url "$url" \
      --checks "${SCHEMATHESIS_CHECKS:-all}" \
      --phases "${SCHEMATHESIS_PHASES:-examples,coverage,fuzzing,stateful}" \
      --max-examples "$examples" \
      --exclude-path /api/v1/events \
      --workers 1 \
      --seed "${SCHEMATHESIS_SEED:-$RANDOM}" \
      --generation-database none \
      --no-color
) 2>&1 | tee "$work/st.log"
status="${PIPESTATUS[0]}"
set -e

# The counts: cases from the summary; 5xx from the server's own log; schema violations are
# the failures of codes ST108-ST111 (body not matching, or not parsing as, the document).
cases="$(grep -oE '[0-9]+ generated' "$work/st.log" | tail -1 | cut -d' ' -f1 || true)"
# (502 is the answer for a mirror that failed a checksum refresh, not the server's failure.)
server_errors="$(grep -cE 'response failed classification=Status code: 5(0[013-9]|[1-9][0-9])' "$work/server.log" || true)"
violations="$(sed -n 's/.*ST1\(08\|09\|10\|11\) .*: \([0-9][0-9]*\)$/\2/p' "$work/st.log" |
  awk '{ n += $1 } END { print n + 0 }')"
echo
echo "==> schemathesis: ${cases:-0} test cases; ${server_errors:-0} answers were 5xx;" \
  "$violations schema violations; exit status $status"
sed -n '/^Failures:/,/^$/p' "$work/st.log"
if [ "${server_errors:-0}" -gt 0 ]; then
  echo "server errors (count, message):"
  grep -E ' ERROR dragonfly|panicked at' "$work/server.log" | sed 's/^[0-9TZ:.-]* *//' |
    sort | uniq -c | sort -rn | head -20
fi
if [ "${cases:-0}" -lt 1 ]; then
  echo "schemathesis ran no test case" >&2
  exit 1
fi
exit "$status"
