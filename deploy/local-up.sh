#!/usr/bin/env bash
# Brings up a single-node ferrokube cluster on the embedded store, from this checkout.
#
#   deploy/local-up.sh          build, create the PKI and kubeconfigs, start containerd and every component
#   deploy/local-up.sh --down   stop every process this script started, remove every pod's containers
#
# Everything lives in $FERROKUBE_STATE_DIR (default /var/lib/ferrokube-local): pki/, the kubeconfigs
# (admin.conf for you), data/ (the API server's store), containerd/ (its own root, config and socket,
# so a system containerd is left alone), kubelet/, manifests/ (the kubelet's static pods), images/, logs/
# and run/ (pid files).
# Knobs: FERROKUBE_APISERVER_PORT (6443), FERROKUBE_NODE_NAME (hostname), FERROKUBE_PROFILE (release|debug),
# FERROKUBE_CLUSTER_CIDR (10.244.0.0/16), FERROKUBE_CONTROLLER_MANAGER_PORT and FERROKUBE_SCHEDULER_PORT (0: not served),
# FERROKUBE_BIN_DIR (use binaries built elsewhere instead of building), FERROKUBE_NODE_IP (detected),
# FERROKUBE_KUBELET_HEALTHZ_PORT (10248; 0: not served), FERROKUBE_CLUSTER_SIGNING_DURATION (8760h: how
# long the certificates the controller manager signs, the kubelet's among them, last),
# FERROKUBE_POD_PIDS_LIMIT (-1: the kubelet's podPidsLimit), FERROKUBE_CONTAINER_LOG_MAX_SIZE (10Mi) and
# FERROKUBE_CONTAINER_LOG_MAX_FILES (5): when container logs are rotated, FERROKUBE_EVICTION_HARD (the
# kubelet's evictionHard; by default, as kind does for a development cluster on a shared disk, only
# memory.available<100Mi: the disk signals are off, so a full laptop disk does not evict the cluster),
# FERROKUBE_SERVER_TLS_BOOTSTRAP (false: the kubelet asks for a serving certificate, which an admin
# approves with kubectl certificate approve), FERROKUBE_IMAGE_GC_HIGH_THRESHOLD (100, image garbage collection off, as kind has it: with no registry
# an image collected while no pod uses it could not be pulled again).
# The kubelet joins as kubeadm's join makes it: a bootstrap token (bootstrap-kubelet.conf), a
# CertificateSigningRequest the controller manager approves and signs, its own key and certificate in
# kubelet/pki/ (kubelet/kubelet.conf names them), renewed before they expire.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${FERROKUBE_STATE_DIR:-/var/lib/ferrokube-local}
PORT=${FERROKUBE_APISERVER_PORT:-6443}
PROFILE=${FERROKUBE_PROFILE:-release}
NODE=${FERROKUBE_NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}
RUN="$STATE/run"
LOGS="$STATE/logs"

say() { printf '[local-up] %s\n' "$*"; }
CTR_SOCK="$RUN/containerd.sock"

stopped=0
stop_one() {
    local name=$1 pid
    [ -e "$RUN/$name.pid" ] || return 0
    pid=$(cat "$RUN/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        say "stopped $name (pid $pid)"
        stopped=$((stopped + 1))
    fi
    rm -f "$RUN/$name.pid"
}

# stop_all [keep-pods]: with keep-pods (a restart) the pods' containers outlive containerd and the
# kubelet, which adopt them when they start again.
stop_all() {
    stopped=0
    # The kubelet first (so it restarts nothing), then every pod sandbox through CRI (which stops the
    # containers, tears down their networks and unmounts their filesystems), then the rest.
    stop_one kubelet
    if [ "${1:-}" != keep-pods ] && [ -S "$CTR_SOCK" ] && [ -e "$RUN/containerd.pid" ] && kill -0 "$(cat "$RUN/containerd.pid")" 2>/dev/null \
        && [ -x "${BIN:-}/ferrocrictl" ]; then
        "$BIN/ferrocrictl" --runtime-endpoint "unix://$CTR_SOCK" rmp --all | sed 's/^/[local-up] /' || true
    fi
    if [ -d "$RUN" ]; then
        for pidfile in "$RUN"/*.pid; do
            [ -e "$pidfile" ] || continue
            stop_one "$(basename "$pidfile" .pid)"
        done
    fi
    [ "${1:-}" = keep-pods ] && return 0
    # Whatever is still mounted below the state directory (pod volumes, the runtime's layers).
    if [ -d "$STATE" ]; then
        awk -v p="$STATE/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
    fi
    ip link delete ferrokube0 2>/dev/null || true
    say "$stopped process(es) stopped"
}

if [ "${1:-}" = "--down" ]; then
    if [ -n "${FERROKUBE_BIN_DIR:-}" ]; then
        BIN=$FERROKUBE_BIN_DIR
    else
        BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
    fi
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
CNI_BIN=/usr/lib/cni
[ -x "$CNI_BIN/bridge" ] || { [ -x /opt/cni/bin/bridge ] && CNI_BIN=/opt/cni/bin; }
if ! command -v protoc >/dev/null || ! command -v cc >/dev/null || ! command -v curl >/dev/null \
    || ! command -v containerd >/dev/null || ! command -v runc >/dev/null || [ ! -x "$CNI_BIN/bridge" ] \
    || [ ! -x /bin/busybox ] || ! command -v iptables >/dev/null; then
    say "installing dependencies (protobuf-compiler, gcc, curl, containerd, runc, CNI plugins, busybox-static, iptables)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends protobuf-compiler gcc libc6-dev curl \
        containerd runc containernetworking-plugins busybox-static iptables >/dev/null
    CNI_BIN=/usr/lib/cni
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

mkdir -p "$STATE/pki" "$STATE/data" "$LOGS" "$RUN" "$STATE/containerd" "$STATE/cni/net.d" "$STATE/kubelet" "$STATE/manifests"
stop_all keep-pods >/dev/null

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
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction --allow-privileged=true \
        --enable-bootstrap-token-auth=true
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
    # As kubeadm init: admin.conf's group kubeadm:cluster-admins becomes cluster-admin, bound with the
    # break-glass super-admin.conf (system:masters). An existing binding (a rerun) is left alone.
    creds=$(mktemp -d)
    for f in client-certificate-data:crt client-key-data:key; do
        sed -n "s/^ *${f%%:*}: //p" "$STATE/super-admin.conf" | base64 -d >"$creds/super-admin.${f##*:}"
    done
    # create <what> <api path> <json>: POST as the super admin; an existing object (a rerun) is fine.
    create() {
        local code
        code=$(curl -s -o "$creds/out" -w '%{http_code}' --cacert "$STATE/pki/ca.crt" \
            --cert "$creds/super-admin.crt" --key "$creds/super-admin.key" \
            -H 'Content-Type: application/json' -X POST "https://127.0.0.1:$PORT$2" --data "$3")
        case "$code" in
            201 | 409) ;;
            *) say "could not create $1 (HTTP $code): $(cat "$creds/out")"; rm -rf "$creds"; exit 1 ;;
        esac
    }
    crb() { # crb <name> <cluster role> <group>
        create "ClusterRoleBinding $1" /apis/rbac.authorization.k8s.io/v1/clusterrolebindings \
            "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"ClusterRoleBinding\",\"metadata\":{\"name\":\"$1\"},\"roleRef\":{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"ClusterRole\",\"name\":\"$2\"},\"subjects\":[{\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"Group\",\"name\":\"$3\"}]}"
    }
    crb kubeadm:cluster-admins cluster-admin kubeadm:cluster-admins
    # As kubeadm's bootstrap-token phase: bootstrap tokens may ask for node client certificates,
    # which are approved automatically, and so are nodes' renewals of their own.
    crb kubeadm:kubelet-bootstrap system:node-bootstrapper system:bootstrappers:kubeadm:default-node-token
    crb kubeadm:node-autoapprove-bootstrap system:certificates.k8s.io:certificatesigningrequests:nodeclient \
        system:bootstrappers:kubeadm:default-node-token
    crb kubeadm:node-autoapprove-certificate-rotation \
        system:certificates.k8s.io:certificatesigningrequests:selfnodeclient system:nodes
    # A fresh token each run (kubeadm's 24h lifetime; the token cleaner deletes it after).
    token_id=$(tr -dc 'a-z0-9' </dev/urandom | head -c 6 || true)
    token_secret=$(tr -dc 'a-z0-9' </dev/urandom | head -c 16 || true)
    expires=$(date -u -d '+24 hours' +%Y-%m-%dT%H:%M:%SZ)
    create "the bootstrap token" /api/v1/namespaces/kube-system/secrets \
        "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"bootstrap-token-$token_id\",\"namespace\":\"kube-system\"},\"type\":\"bootstrap.kubernetes.io/token\",\"stringData\":{\"token-id\":\"$token_id\",\"token-secret\":\"$token_secret\",\"expiration\":\"$expires\",\"usage-bootstrap-authentication\":\"true\",\"usage-bootstrap-signing\":\"true\",\"auth-extra-groups\":\"system:bootstrappers:kubeadm:default-node-token\"}}"
    rm -rf "$creds"
    umask 077
    cat >"$STATE/bootstrap-kubelet.conf" <<CONF
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: $(base64 -w0 "$STATE/pki/ca.crt")
    server: https://127.0.0.1:$PORT
  name: ferrokube
contexts:
- context:
    cluster: ferrokube
    user: tls-bootstrap-token-user
  name: tls-bootstrap-token-user@ferrokube
current-context: tls-bootstrap-token-user@ferrokube
users:
- name: tls-bootstrap-token-user
  user:
    token: $token_id.$token_secret
CONF
    umask 022
fi
if [ -x "$BIN/kube-controller-manager" ]; then
    # As kubeadm runs it: its own kubeconfig, each controller as its own service account, the cluster
    # CA for kube-root-ca.crt and signing, the
    # service-account key, node CIDRs from the cluster CIDR. --secure-port 0: this single-node setup
    # leaves 10257 to a real control plane on the same machine.
    start kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$STATE/controller-manager.conf" \
        --leader-elect=true --use-service-account-credentials=true \
        --root-ca-file "$STATE/pki/ca.crt" \
        --service-account-private-key-file "$STATE/pki/sa.key" \
        --cluster-signing-cert-file "$STATE/pki/ca.crt" --cluster-signing-key-file "$STATE/pki/ca.key" \
        --cluster-signing-duration "${FERROKUBE_CLUSTER_SIGNING_DURATION:-8760h}" \
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
if [ -x "$BIN/kubelet" ]; then
    # containerd with its own root, state, socket and CNI directories; the sandbox image is the
    # locally built pause image. Without CAP_SYS_RESOURCE (some sandboxes drop it) no process may
    # lower its OOM score, so containerd is told to keep scores at or above its own.
    restrict_oom=false
    capeff=$(awk '/^CapEff/ { print $2 }' /proc/self/status)
    (( (16#$capeff >> 24) & 1 )) || restrict_oom=true
    cat >"$STATE/containerd/config.toml" <<CONF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$CTR_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = $restrict_oom
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$STATE/cni/net.d"
CONF
    start containerd containerd --config "$STATE/containerd/config.toml"
    for _ in $(seq 1 100); do [ -S "$CTR_SOCK" ] && break; sleep 0.1; done
    [ -S "$CTR_SOCK" ] || { say "containerd did not start; see $LOGS/containerd.log"; exit 1; }
    say "building and importing the local images (busybox:1.36, pause:3.10)"
    "$ROOT/deploy/images/build.sh" "$STATE/images" "$CTR_SOCK"
    NODE_IP=${FERROKUBE_NODE_IP:-$( (ip -o route get 192.0.2.1 2>/dev/null || true) | sed -n 's/.* src \([^ ]*\).*/\1/p')}
    NODE_IP=${NODE_IP:-127.0.0.1}
    cat >"$STATE/kubelet/config.yaml" <<CONF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /ferrokube
clusterDomain: cluster.local
podLogsDir: $LOGS/pods
staticPodPath: $STATE/manifests
healthzPort: ${FERROKUBE_KUBELET_HEALTHZ_PORT:-10248}
rotateCertificates: true
serverTLSBootstrap: ${FERROKUBE_SERVER_TLS_BOOTSTRAP:-false}
podPidsLimit: ${FERROKUBE_POD_PIDS_LIMIT:--1}
containerLogMaxSize: ${FERROKUBE_CONTAINER_LOG_MAX_SIZE:-10Mi}
containerLogMaxFiles: ${FERROKUBE_CONTAINER_LOG_MAX_FILES:-5}
imageGCHighThresholdPercent: ${FERROKUBE_IMAGE_GC_HIGH_THRESHOLD:-100}
evictionHard: ${FERROKUBE_EVICTION_HARD:-{memory.available: 100Mi, nodefs.available: 0%, nodefs.inodesFree: 0%, imagefs.available: 0%, imagefs.inodesFree: 0%\}}
CONF
    start kubelet "$BIN/kubelet" \
        --bootstrap-kubeconfig "$STATE/bootstrap-kubelet.conf" \
        --kubeconfig "$STATE/kubelet/kubelet.conf" --cert-dir "$STATE/kubelet/pki" \
        --config "$STATE/kubelet/config.yaml" \
        --container-runtime-endpoint "unix://$CTR_SOCK" \
        --root-dir "$STATE/kubelet" \
        --cni-conf-dir "$STATE/cni/net.d" \
        --hostname-override "$NODE" --node-ip "$NODE_IP"
    started+=(containerd kubelet)
fi
[ -x "$BIN/kube-proxy" ] || say "kube-proxy is not built yet in this tree; skipped"

say "cluster state in $STATE"
if [ ${#started[@]} -gt 0 ]; then
    say "running: ${started[*]}"
    say "use it:   export KUBECONFIG=$STATE/admin.conf; kubectl get --raw /version"
else
    say "no component binaries exist yet: created the PKI and kubeconfigs only"
fi
say "stop it:  $0 --down"
