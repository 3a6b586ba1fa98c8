#!/usr/bin/env bash
# Runs the quick start as a user would and checks it: the stack comes up, the printed curl
# line returns the sample through all tiers (a miss, then an edge hit), and Ctrl-C (SIGINT)
# stops all three. It empties the local stack's cache (var/cache) first, so the first request
# is a miss whatever ran before.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$root/var/cache/edge" "$root/var/cache/shield"
out=$(mktemp)
setsid "$root/deploy/local/start.sh" >"$out" 2>&1 &
starter=$!
cleanup() { kill -INT -- -"$starter" 2>/dev/null || true; rm -f "$out"; }
trap cleanup EXIT

for _ in $(seq 1 600); do
    grep -q '^try:' "$out" && break
    kill -0 "$starter" 2>/dev/null || { cat "$out"; echo "smoke: quick start exited early" >&2; exit 1; }
    sleep 0.5
done
grep -q '^try:' "$out" || { cat "$out"; echo "smoke: quick start never came up" >&2; exit 1; }
url=$(sed -nE 's/^try: +curl -i (.*)$/\1/p' "$out")

first=$(curl -si "$url")
second=$(curl -si "$url")
grep -q 'Hello from the origin' <<<"$first" || { echo "$first"; echo "smoke: wrong body" >&2; exit 1; }
grep -qi '^cache-status: shield; fwd=miss.*edge-pop; fwd=miss' <<<"$first" || { echo "$first"; exit 1; }
grep -qi '^cache-status: edge-pop; hit' <<<"$second" || { echo "$second"; exit 1; }
# The protected route: 401 without the printed token, the object with it.
auth=$(sed -nE 's/^auth: +curl -i -H "(Authorization: Bearer [^"]+)" (http[^ ]+)$/\1 \2/p' "$out")
[[ -n $auth ]] || { cat "$out"; echo "smoke: no auth line" >&2; exit 1; }
header=${auth% *}; private=${auth##* }
[[ $(curl -s -o /dev/null -w '%{http_code}' "$private") == 401 ]] || { echo "smoke: $private without a token is not 401" >&2; exit 1; }
curl -sf -H "$header" "$private" >/dev/null || { echo "smoke: $private with the token failed" >&2; exit 1; }
# The package routes: the sample packument names tarballs through the edge, and the sample
# image's manifest carries its digest.
npm=$(sed -nE 's/^npm: +npm install --registry (http[^ ]+) (.*)$/\1\2/p' "$out")
[[ -n $npm ]] || { cat "$out"; echo "smoke: no npm line" >&2; exit 1; }
packument=$(curl -sf "$npm") || { echo "smoke: $npm failed" >&2; exit 1; }
tarball=$(grep -oE '"tarball":"[^"]+"' <<<"$packument" | head -1 | cut -d'"' -f4)
[[ $tarball == "${npm%/npm/*}/npm/demo-hello/-/demo-hello-1.0.0.tgz" ]] \
    || { echo "smoke: tarball URL $tarball does not lead through the edge" >&2; exit 1; }
curl -sf -o /dev/null "$tarball" || { echo "smoke: $tarball failed" >&2; exit 1; }
manifest=$(curl -sfi "${npm%/npm/*}/v2/demo/hello/manifests/1.0") \
    || { echo "smoke: the sample image's manifest failed" >&2; exit 1; }
grep -qi '^docker-content-digest: sha256:' <<<"$manifest" \
    || { echo "$manifest"; echo "smoke: no Docker-Content-Digest" >&2; exit 1; }
metrics=$(sed -nE 's/^  edge metrics +(http[^ ]+).*/\1/p' "$out")
counted=$(curl -sf "$metrics")
grep -q '^cdn_request_duration_seconds_count{cache="hit",tier="edge"} [1-9]' <<<"$counted" \
    || { echo "smoke: $metrics does not count the hit" >&2; exit 1; }

# Ctrl-C reaches the whole foreground group; do the same.
kill -INT -- -"$starter"
for _ in $(seq 1 100); do
    kill -0 "$starter" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$starter" 2>/dev/null; then echo "smoke: stack did not stop on SIGINT" >&2; exit 1; fi
for bin in origin-adapter shield edge-pop; do
    if pgrep -f "target/debug/$bin --config $root/config.yaml" >/dev/null; then
        echo "smoke: $bin still running after SIGINT" >&2; exit 1
    fi
done
echo "smoke: quick start ok (miss, then edge hit, counted in /metrics; the token opens /private/; the sample package and image; stopped on SIGINT)"
