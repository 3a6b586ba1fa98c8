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
echo "smoke: quick start ok (miss, then edge hit, counted in /metrics; the token opens /private/; stopped on SIGINT)"
