#!/usr/bin/env bash
# Benchmarks our edge against NGINX (proxy_cache) and Varnish (malloc) on this machine, in one
# interleaved run, and writes benches/RESULTS.md. Installs nginx, varnish and wrk from
# Debian's packages if missing (without starting their services) and builds our binaries in
# release mode.
#
#   benches/run.sh            3 runs of every scenario (~10 minutes on 2 cores)
#   benches/run.sh --runs 5   more runs
#   benches/run.sh --quick    one short run, for breakage (under two minutes after the build)
#   benches/run.sh --only auth,tls   only some groups of rows (main, auth, tls), written to
#                                    benches/RESULTS-<groups>.md instead
# Binaries go where cargo puts them: CARGO_TARGET_DIR is honoured.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

deploy/local/setup.sh --bench
echo "bench: building (release)…" >&2
cargo build --quiet --release -p origin-adapter -p shield -p edge-pop -p cdn-admin
exec python3 benches/harness/bench.py "$@"
