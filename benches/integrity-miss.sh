#!/usr/bin/env bash
# What the shield's digest check costs a cold miss: one 256 MiB object fetched through
# edge -> shield -> origin-adapter (local folder, disk tiers on both proxies, emptied before
# each round), once as a registry blob (its sha256 checked at the shield) and once as a plain
# file (not checked), alternating, N rounds (default 5). Prints each round's seconds; compare
# the medians. Release binaries from target/release unless BIN says otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/target/release}
n=${N:-5}
[[ -x $bin/edge-pop ]] || (cd "$root" && cargo build --release -p edge-pop -p shield -p origin-adapter)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/files"
head -c $((256 << 20)) /dev/urandom >"$work/root/files/blob.bin"
hex=$(sha256sum "$work/root/files/blob.bin" | cut -d' ' -f1)
reg="$work/root/registry/docker/registry/v2"
mkdir -p "$reg/blobs/sha256/${hex:0:2}/$hex" "$reg/repositories/bench/app/_layers/sha256/$hex"
cp "$work/root/files/blob.bin" "$reg/blobs/sha256/${hex:0:2}/$hex/data"
printf 'sha256:%s' "$hex" >"$reg/repositories/bench/app/_layers/sha256/$hex/link"
cat >"$work/config.yaml" <<YAML
origin:
  listen: 127.0.0.1:19000
  backend: {local: {root: $work/root}}
shield:
  listen: 127.0.0.1:18081
  origin: 127.0.0.1:19000
  cache: {memory: 64MiB, max_object: 512MiB, disk: {path: $work/cache/shield, size: 4GiB}}
edge:
  listen: 127.0.0.1:18080
  shields: [127.0.0.1:18081]
  cache: {memory: 64MiB, max_object: 512MiB, disk: {path: $work/cache/edge, size: 4GiB}}
routes:
  - {prefix: /v2/, ttl: 1h, scope: oci, source: {prefix: registry}}
  - {prefix: /, ttl: 1h, source: {prefix: files}}
YAML
round() { # path: "seconds bytes status" of one cold fetch
    rm -rf "$work/cache"
    local pids=()
    for tier in origin-adapter shield edge-pop; do
        "$bin/$tier" --config "$work/config.yaml" >/dev/null 2>&1 &
        pids+=($!)
    done
    for _ in $(seq 100); do curl -s -o /dev/null 127.0.0.1:18080/ && break; sleep 0.1; done
    curl -s -o /dev/null -w '%{time_total} %{size_download} %{http_code}\n' "http://127.0.0.1:18080$1"
    kill "${pids[@]}"
    wait "${pids[@]}" 2>/dev/null || true
}
for _ in $(seq "$n"); do
    echo "checked $(round "/v2/bench/app/blobs/sha256:$hex")"
    echo "plain   $(round /files/blob.bin)"
done
