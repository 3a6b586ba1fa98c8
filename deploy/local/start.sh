#!/usr/bin/env bash
# Builds and starts the whole stack on loopback with config.yaml: origin-adapter on the bundled
# sample directory, a shield, and an edge-pop in front. Prints where to point a client.
# Ctrl-C stops all three.
#
#   CDN_CONFIG   config file (default: config.yaml at the repository root)
#   CDN_PROFILE  cargo profile to build (default: release; "dev" for a quick debug build)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
config=${CDN_CONFIG:-$root/config.yaml}
profile=${CDN_PROFILE:-release}
case $profile in dev) bindir=$root/target/debug ;; *) bindir=$root/target/$profile ;; esac
logdir=$root/var/log
mkdir -p "$logdir"

"$root/deploy/local/setup.sh"
echo "building ($profile)…" >&2
cargo build --quiet --profile "$profile" -p origin-adapter -p shield -p edge-pop -p cdn-admin

# The bundled config.yaml names a token key pair and the tier secrets under var/: make them
# the first time (an operator makes their own with cdn-admin and points config.yaml at them).
if [[ $config == "$root/config.yaml" ]]; then
    [[ -e $root/var/keys/local.pub.pem ]] || "$bindir/cdn-admin" keygen --id local --out "$root/var/keys" >/dev/null
    for link in edge-to-shield shield-to-origin; do
        [[ -e $root/var/secrets/$link ]] || "$bindir/cdn-admin" secret --out "$root/var/secrets/$link"
    done
fi

# Validate once; the summary names every listener.
summary=$("$bindir/edge-pop" --config "$config" --check)
edge=$(sed -E 's/.*; edge ([^ ]+) .*/\1/' <<<"$summary")
shield=$(sed -E 's/.*; shield ([^ ]+) .*/\1/' <<<"$summary")
origin=$(sed -E 's/.*origin-adapter ([^ ]+) .*/\1/' <<<"$summary")
edge_admin=$(sed -E 's/.*admin: origin [^,]+, shield [^,]+, edge ([^ ]+)$/\1/' <<<"$summary")

pids=()
stop() {
    trap - INT TERM EXIT
    echo >&2
    echo "stopping…" >&2
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    wait "${pids[@]}" 2>/dev/null || true
    echo "stopped" >&2
}
trap stop INT TERM EXIT

wait_for() { # name address
    local host=${2%:*} port=${2##*:}
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$1 did not start; see $logdir/$1.log" >&2
    tail -n 20 "$logdir/$1.log" >&2
    exit 1
}

start() { # name address
    "$bindir/$1" --config "$config" >"$logdir/$1.log" 2>&1 &
    pids+=($!)
    wait_for "$1" "$2"
}

start origin-adapter "$origin"
start shield "$shield"
start edge-pop "$edge"

cat <<MSG
stack is up (config: $config)
  edge-pop        http://$edge/      <- point clients here
  shield          http://$shield/
  origin-adapter  http://$origin/    (serving $root/origin-adapter/sample)
  binaries        $bindir/{edge-pop,shield,origin-adapter}
  logs            $logdir/{edge-pop,shield,origin-adapter}.log
  edge metrics    http://$edge_admin/metrics   (each tier: /metrics, /healthz, /readyz)

try:  curl -i http://$edge/hello.txt
npm:  npm install --registry http://$edge/npm/ demo-hello
oci:  skopeo copy --src-tls-verify=false docker://$edge/demo/hello:1.0 oci:hello:1.0
MSG
if [[ -e $root/var/keys/local.key.pem && $config == "$root/config.yaml" ]]; then
    token=$("$bindir/cdn-admin" token --key "$root/var/keys/local.key.pem" --id local \
        --subject local --scope 'path:/private/*' --ttl 1d)
    cat <<MSG
auth: curl -i -H "Authorization: Bearer $token" http://$edge/private/secret.txt
      (a token for path:/private/* valid one day; without it: 401)
MSG
fi
echo "Ctrl-C stops all three."

# Run until Ctrl-C, or until one of the three exits on its own.
set +e
wait -n "${pids[@]}"
echo "a process exited; see $logdir" >&2
exit 1
