#!/usr/bin/env bash
# Installs what building the workspace needs beyond the Rust toolchain: cmake (libz-ng-sys,
# under pingora) and a C compiler; with --tests also promtool (Debian's prometheus package),
# and the package clients the tests drive: skopeo (Docker/OCI pulls) and npm (with node); with --bench also nginx, varnish, Apache Traffic Server, wrk,
# openssl (the HTTPS rows' certificate) and perf (profiles under load), which benches/run.sh runs.
# Safe to run again; does nothing when all is present.
set -euo pipefail

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null || missing+=(gcc)
command -v make >/dev/null || missing+=(make)
command -v curl >/dev/null || missing+=(curl)
# promtool, for the tests that check metrics and the Prometheus rules.
case ${1:-} in
    --tests)
        command -v promtool >/dev/null || missing+=(prometheus)
        command -v skopeo >/dev/null || missing+=(skopeo)
        command -v npm >/dev/null || missing+=(npm) ;;
    --bench)
        command -v nginx >/dev/null || missing+=(nginx)
        command -v varnishd >/dev/null || missing+=(varnish)
        command -v traffic_server >/dev/null || missing+=(trafficserver)
        command -v perf >/dev/null || missing+=(linux-perf)
        command -v wrk >/dev/null || missing+=(wrk)
        command -v taskset >/dev/null || missing+=(util-linux)
        command -v openssl >/dev/null || missing+=(openssl)
        command -v python3 >/dev/null || missing+=(python3) ;;
esac
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: need ${missing[*]}; run as root or install them: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}" >&2
    # Install tools only: no package may start a service (prometheus ships one).
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
