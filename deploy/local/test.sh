#!/usr/bin/env bash
# Runs every test: unit tests and the end-to-end tests, which start the real binaries and a
# real S3-compatible server (s3s-fs, built as a dev dependency) on loopback.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/setup.sh
cargo test --workspace "$@"
