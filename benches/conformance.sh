#!/usr/bin/env bash
# Runs the HTTP caching test suite (github.com/http-tests/cache-tests) through edge-pop →
# shield and scores it the way cache-tests.fyi does. Not part of CI: it needs a checkout of
# the suite (outside this repository, with `npm install --omit=dev` done in it), node and nginx.
#
#   benches/conformance.sh SUITE_DIR                 every test; results + failures table
#   benches/conformance.sh SUITE_DIR --out FILE      results JSON elsewhere
#   benches/conformance.sh SUITE_DIR --id TEST_ID    one test, both sides of each exchange shown
#
# Options: --failures FILE (the markdown table; default benches/conformance/failures.md),
# --keep (keep the temporary folder with the logs and configs).
# Builds the release binaries first, unless CDN_BIN_DIR names a folder that has them.
#
# What runs, all on 127.0.0.1:
#   client ──▶ nginx router ──/config/, /state/──▶ suite origin (node)
#                         └──everything else──▶ edge-pop ──▶ shield ──▶ suite origin
# The client PUTs each test's set-up to /config/ and reads the origin's record of what it saw
# from /state/; both are the harness talking to its origin, not tests, so they bypass the
# tiers. The router passes the rest through untouched.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here="$root/benches/conformance"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

suite="" out="$here/results.json" failures="$here/failures.md" test_id="" keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --failures) failures=${2:?--failures needs a file}; shift 2 ;;
    --id) test_id=${2:?--id needs a test id}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage ;;
    -*) echo "conformance: unknown option $1" >&2; usage ;;
    *) [ -z "$suite" ] || usage; suite=$1; shift ;;
  esac
done
[ -n "$suite" ] || usage
dir=$(cd "$suite" 2>/dev/null && pwd) && [ -f "$dir/test-engine/cli.mjs" ] && [ -d "$dir/node_modules" ] || {
  echo "conformance: $suite is not a cache-tests checkout with npm install done" >&2; exit 2; }
suite=$dir
# Absolute, as the client runs from the suite's folder.
out=$(realpath -m "$out") failures=$(realpath -m "$failures")

if [ -n "${CDN_BIN_DIR:-}" ]; then
  bin=$CDN_BIN_DIR
else
  echo "conformance: building (release)…" >&2
  (cd "$root" && cargo build --quiet --release -p shield -p edge-pop)
  bin=$root/target/release
fi
for b in edge-pop shield; do
  [ -x "$bin/$b" ] || { echo "conformance: no $bin/$b (build first, or set CDN_BIN_DIR)" >&2; exit 2; }
done
for cmd in node python3 /usr/sbin/nginx; do
  command -v "$cmd" >/dev/null || { echo "conformance: $cmd not found" >&2; exit 2; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cdn-conformance.XXXXXX")
pids=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Background jobs of a script ignore Ctrl-C, so each is stopped here by its own id.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$keep" = 1 ] || [ "$status" != 0 ]; then
    echo "conformance: logs and configs kept in $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port for nginx (the others bind port 0 themselves and say what they got).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (at most ~20 s) for a line matching $2 in log $1, prints its first match.
wait_line() {
  local log=$1 pattern=$2 pid=$3 line
  for _ in $(seq 200); do
    line=$(grep -m1 -E "$pattern" "$log" 2>/dev/null || true)
    if [ -n "$line" ]; then echo "$line"; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "conformance: no '$pattern' in $log:" >&2
  tail -n 20 "$log" >&2
  return 1
}

# The suite's origin. Port 0 plus the preload that pins it to loopback: it reports the port.
(cd "$suite" && exec env npm_config_protocol=http npm_config_port=0 \
  npm_config_pidfile="$tmp/origin.pid" \
  node --require "$here/loopback.cjs" test-engine/server/server.mjs) >"$tmp/origin.log" 2>&1 &
pids+=($!)
origin=$(wait_line "$tmp/origin.log" '^Listening on http://127\.0\.0\.1:[0-9]+/' "${pids[-1]}" \
  | sed -E 's#.*http://(127\.0\.0\.1:[0-9]+)/.*#\1#')

# The most standards-minded settings the config has (benches/CONFORMANCE.md): one route that
# keeps the query (it is part of the URI), passes writes through so they can invalidate,
# gives heuristic freshness only by Last-Modified (a tenth of its age, at most a day), and
# serves a stale copy while the upstream fails (a cache may when disconnected, RFC 9111 §4.2.4)
# unless the response forbids it. The origin-adapter is not run, but its section is required.
# write_config FILE SHIELD_ADDR
write_config() {
  local file=$1 shield_addr=$2
  cat >"$file" <<EOF
origin:
  listen: 127.0.0.1:19399
  backend:
    local:
      root: $tmp/unused-origin
shield:
  listen: 127.0.0.1:0
  origin: $origin
  grace_period: 1s
  cache:
    memory: 64MiB
    disk:
      path: $tmp/shield-cache
      size: 128MiB
edge:
  listen: 127.0.0.1:0
  shields: [$shield_addr]
  grace_period: 1s
  cache:
    memory: 64MiB
    disk:
      path: $tmp/edge-cache
      size: 128MiB
routes:
  - prefix: /
    ttl: 1d
    heuristic: last_modified
    query: keep
    pass_writes: true
    # The suite's origin reads Authorization (RFC 9111 §3.5 is part of what is measured); by
    # default the edge drops it on routes without `auth`.
    forward_authorization: true
logging:
  format: text
EOF
}
mkdir -p "$tmp/unused-origin"

# The shield first: the edge's file needs the port it got. (The shield ignores `edge:`, so its
# file names a placeholder shield nothing listens on.)
write_config "$tmp/shield.yaml" 127.0.0.1:9
"$bin/shield" --config "$tmp/shield.yaml" >"$tmp/shield.log" 2>&1 &
pids+=($!)
shield=$(wait_line "$tmp/shield.log" '^shield: listening on ' "${pids[-1]}" \
  | sed -E 's/^shield: listening on ([0-9.]+:[0-9]+).*/\1/')
write_config "$tmp/edge.yaml" "$shield"
"$bin/edge-pop" --config "$tmp/edge.yaml" >"$tmp/edge.log" 2>&1 &
pids+=($!)
edge=$(wait_line "$tmp/edge.log" '^edge-pop: listening on ' "${pids[-1]}" \
  | sed -E 's/^edge-pop: listening on ([0-9.]+:[0-9]+).*/\1/')

# The router: a plain reverse proxy, no cache, as transparent as nginx gets. Date and Server
# are passed (nginx hides them by default), Host and every request header as sent, no
# rewriting of Location, no retries (a retry would be a second request to the origin),
# responses and request bodies streamed.
router_port=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
# Workers as the caller (as root nginx would switch to nobody, who cannot enter $tmp).
user $(id -un) $(id -gn);
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log info;
events { worker_connections 1024; }
http {
  access_log $tmp/nginx/access.log;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  server_tokens off;
  client_max_body_size 16m;
  underscores_in_headers on;
  ignore_invalid_headers off;
  merge_slashes off;

  upstream suite_origin { server $origin; keepalive 8; }
  upstream edge { server $edge; keepalive 8; }

  server {
    listen 127.0.0.1:$router_port;
    proxy_http_version 1.1;
    proxy_set_header Host \$http_host;
    proxy_set_header Connection "";
    proxy_pass_header Date;
    proxy_pass_header Server;
    proxy_redirect off;
    proxy_buffering off;
    proxy_request_buffering off;
    proxy_next_upstream off;
    proxy_read_timeout 60s;

    location /config/ { proxy_pass http://suite_origin; }
    location /state/ { proxy_pass http://suite_origin; }
    location / { proxy_pass http://edge; }
  }
}
EOF
/usr/sbin/nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" \
  >"$tmp/nginx/stdout.log" 2>&1 &
pids+=($!)
base=http://127.0.0.1:$router_port
for i in $(seq 100); do
  (: <"/dev/tcp/127.0.0.1/$router_port") 2>/dev/null && break
  kill -0 "${pids[-1]}" 2>/dev/null && [ "$i" -lt 100 ] || {
    echo "conformance: nginx did not start:" >&2; tail -n 20 "$tmp/nginx/error.log" >&2; exit 1; }
  sleep 0.1
done
echo "conformance: suite origin $origin, shield $shield, edge $edge, router $base ($bin)" >&2

cd "$suite"
if [ -n "$test_id" ]; then
  # One test, verbose; nothing is written. The origin's side of each exchange is in its log.
  npm_config_base=$base npm_config_id=$test_id node --no-warnings test-engine/cli.mjs
  echo "==== The suite's origin" && sed 1d "$tmp/origin.log"
  exit 0
fi

echo "conformance: running every test (about a minute)…" >&2
mkdir -p "$(dirname "$out")" "$(dirname "$failures")"
# An empty id means every test; the client falls back to npm's package variable when the
# first is empty, as `npm run cli` would set it.
client=0
npm_config_base=$base npm_config_id='' npm_package_config_id='' node --no-warnings test-engine/cli.mjs \
  >"$tmp/results.json" 2>"$tmp/client.log" || client=$?
# Killed by a signal (Ctrl-C): leave quietly; any other failure is the client's own.
[ "$client" -lt 128 ] || exit "$client"
if [ "$client" != 0 ]; then
  echo "conformance: the suite's client failed:" >&2; tail -n 20 "$tmp/client.log" >&2; exit 1
fi
cp "$tmp/results.json" "$out"
echo "conformance: results in $out" >&2
commit=$(git -C "$suite" rev-parse --short HEAD 2>/dev/null || echo unknown)
node "$here/summarize.mjs" "$suite" "$out" "$failures" \
  "edge-pop → shield from \`$bin\`, cache-tests $commit, $(date -u '+%Y-%m-%d %H:%M UTC')"
