#!/usr/bin/env bash
# Benchmarks our edge against NGINX (proxy_cache) and Varnish (malloc) on this machine, in one
# interleaved run, and writes benches/RESULTS.md. Installs nginx, varnish and wrk from
# Debian's packages if missing (without starting their services) and builds our binaries in
# release mode.
#
#   benches/run.sh            3 runs of every scenario (~15 minutes on 2 cores)
#   benches/run.sh --runs 5   more runs
#   benches/run.sh --quick    one short run, for breakage (under two minutes after the build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v varnishd >/dev/null || missing+=(varnish)
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    echo "bench: installing ${missing[*]}" >&2
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
deploy/local/setup.sh
echo "bench: building (release)…" >&2
cargo build --quiet --release -p origin-adapter -p shield -p edge-pop
exec python3 benches/harness/bench.py "$@"
