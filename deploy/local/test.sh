#!/usr/bin/env bash
# Runs every test: unit tests, the storage engine's tests, and the end-to-end tests, which
# start the real binaries and a real S3-compatible server (s3s-fs, built as a dev dependency)
# on loopback. Ends with one line totalling every test binary's results.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/setup.sh --tests
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
