#!/usr/bin/env bash
# Brings up a single-node ferrokube cluster on the embedded store, from this checkout.
#
#   deploy/local-up.sh          build, create the PKI and kubeconfigs, start every component that exists
#   deploy/local-up.sh --down   stop every process this script started
#
# Everything lives in $FERROKUBE_STATE_DIR (default /var/lib/ferrokube-local): pki/, the kubeconfigs
# (admin.conf for you), data/ (the API server's store), logs/ and run/ (pid files).
# Knobs: FERROKUBE_APISERVER_PORT (6443), FERROKUBE_NODE_NAME (hostname), FERROKUBE_PROFILE (release|debug),
# FERROKUBE_CLUSTER_CIDR (10.244.0.0/16), FERROKUBE_CONTROLLER_MANAGER_PORT and FERROKUBE_SCHEDULER_PORT (0: not served),
# FERROKUBE_BIN_DIR (use binaries built elsewhere instead of building).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${FERROKUBE_STATE_DIR:-/var/lib/ferrokube-local}
PORT=${FERROKUBE_APISERVER_PORT:-6443}
PROFILE=${FERROKUBE_PROFILE:-release}
NODE=${FERROKUBE_NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}
RUN="$STATE/run"
LOGS="$STATE/logs"

say() { printf '[local-up] %s\n' "$*"; }

stop_all() {
    local stopped=0
    if [ -d "$RUN" ]; then
        for pidfile in "$RUN"/*.pid; do
            [ -e "$pidfile" ] || continue
            local name pid
            name=$(basename "$pidfile" .pid)
            pid=$(cat "$pidfile")
            if kill -0 "$pid" 2>/dev/null; then
                kill "$pid" 2>/dev/null || true
                for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                kill -9 "$pid" 2>/dev/null || true
                say "stopped $name (pid $pid)"
                stopped=$((stopped + 1))
            fi
            rm -f "$pidfile"
        done
    fi
    say "$stopped process(es) stopped"
}

if [ "${1:-}" = "--down" ]; then
    stop_all
    exit 0
fi
if [ $# -gt 0 ]; then
    echo "usage: $0 [--down]" >&2
    exit 2
fi

# Build tools the first time on a fresh machine.
if [ -z "${FERROKUBE_BIN_DIR:-}" ] && ! command -v cargo >/dev/null; then
    echo "cargo is required (install Rust with rustup)" >&2
    exit 1
fi
if ! command -v protoc >/dev/null || ! command -v cc >/dev/null || ! command -v curl >/dev/null; then
    say "installing build dependencies (protobuf-compiler, gcc, curl)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends protobuf-compiler gcc curl >/dev/null
fi

if [ -n "${FERROKUBE_BIN_DIR:-}" ]; then
    # Prebuilt binaries (the end-to-end tests pass the ones cargo just built).
    BIN=$FERROKUBE_BIN_DIR
else
    say "building ($PROFILE)"
    build_flags=(--workspace --bins --quiet)
    [ "$PROFILE" = release ] && build_flags+=(--release)
    (cd "$ROOT" && cargo build "${build_flags[@]}")
    TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
    BIN="$TARGET/$PROFILE"
fi

mkdir -p "$STATE/pki" "$STATE/data" "$LOGS" "$RUN"
stop_all >/dev/null

common=(--cert-dir "$STATE/pki" --kubeconfig-dir "$STATE" --apiserver-advertise-address 127.0.0.1
        --apiserver-bind-port "$PORT" --control-plane-endpoint "127.0.0.1:$PORT" --node-name "$NODE"
        --apiserver-cert-extra-sans localhost)
"$BIN/ferroadm" certs generate all "${common[@]}" | sed 's/^/[local-up] /'
"$BIN/ferroadm" kubeconfig generate all "${common[@]}" | sed 's/^/[local-up] /'

start() {
    local name=$1; shift
    "$@" >"$LOGS/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
    say "started $name (pid $!), log $LOGS/$name.log"
}

started=()
if [ -x "$BIN/kube-apiserver" ]; then
    start kube-apiserver "$BIN/kube-apiserver" \
        --data-dir "$STATE/data" \
        --bind-address 127.0.0.1 --secure-port "$PORT" --advertise-address 127.0.0.1 \
        --cert-dir "$STATE/pki/serving" \
        --tls-cert-file "$STATE/pki/apiserver.crt" --tls-private-key-file "$STATE/pki/apiserver.key" \
        --client-ca-file "$STATE/pki/ca.crt" \
        --service-account-key-file "$STATE/pki/sa.pub" \
        --service-account-signing-key-file "$STATE/pki/sa.key" \
        --service-account-issuer "https://kubernetes.default.svc.cluster.local" \
        --authorization-mode AlwaysAllow
    started+=(kube-apiserver)
    say "waiting for the API server to be ready"
    for i in $(seq 1 120); do
        if curl -sk --max-time 2 "https://127.0.0.1:$PORT/readyz" 2>/dev/null | grep -q '^ok$'; then
            break
        fi
        if ! kill -0 "$(cat "$RUN/kube-apiserver.pid")" 2>/dev/null; then
            say "kube-apiserver exited; see $LOGS/kube-apiserver.log"
            tail -20 "$LOGS/kube-apiserver.log" >&2 || true
            exit 1
        fi
        [ "$i" = 120 ] && { say "kube-apiserver not ready after 60s"; exit 1; }
        sleep 0.5
    done
fi
if [ -x "$BIN/kube-controller-manager" ]; then
    # As kubeadm runs it: its own kubeconfig, the cluster CA for kube-root-ca.crt and signing, the
    # service-account key, node CIDRs from the cluster CIDR. --secure-port 0: this single-node setup
    # leaves 10257 to a real control plane on the same machine.
    start kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$STATE/controller-manager.conf" \
        --leader-elect=true \
        --root-ca-file "$STATE/pki/ca.crt" \
        --service-account-private-key-file "$STATE/pki/sa.key" \
        --cluster-signing-cert-file "$STATE/pki/ca.crt" --cluster-signing-key-file "$STATE/pki/ca.key" \
        --allocate-node-cidrs=true --cluster-cidr "${FERROKUBE_CLUSTER_CIDR:-10.244.0.0/16}" \
        --bind-address 127.0.0.1 --secure-port "${FERROKUBE_CONTROLLER_MANAGER_PORT:-0}"
    started+=(kube-controller-manager)
fi
if [ -x "$BIN/kube-scheduler" ]; then
    start kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig "$STATE/scheduler.conf" \
        --leader-elect=true \
        --bind-address 127.0.0.1 --secure-port "${FERROKUBE_SCHEDULER_PORT:-0}"
    started+=(kube-scheduler)
fi
for component in kubelet kube-proxy; do
    [ -x "$BIN/$component" ] || say "$component is not built yet in this tree; skipped"
done

say "cluster state in $STATE"
if [ ${#started[@]} -gt 0 ]; then
    say "running: ${started[*]}"
    say "use it:   export KUBECONFIG=$STATE/admin.conf; kubectl get --raw /version"
else
    say "no component binaries exist yet: created the PKI and kubeconfigs only"
fi
say "stop it:  $0 --down"
