#!/usr/bin/env bash
# Builds the images ferrokube runs without a registry, and optionally imports them into containerd:
#   docker.io/library/busybox:1.36   Debian's busybox-static, with the usual applet links
#   registry.k8s.io/pause:3.10       a static pause binary built from pause.c
#
#   deploy/images/build.sh OUT_DIR [CONTAINERD_SOCKET]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: build.sh OUT_DIR [CONTAINERD_SOCKET]}
SOCK=${2:-}
mkdir -p "$OUT"

BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked'; then
    BUSYBOX=/bin/busybox
fi
if [ ! -x "$BUSYBOX" ]; then
    echo "busybox-static is required (apt-get install busybox-static)" >&2
    exit 1
fi

if [ ! -s "$OUT/busybox.tar" ] || [ "$BUSYBOX" -nt "$OUT/busybox.tar" ] || [ "$HERE/build-image.py" -nt "$OUT/busybox.tar" ]; then
    links=()
    for applet in $("$BUSYBOX" --list); do
        [ "$applet" = busybox ] && continue
        links+=(--link "/bin/busybox:/bin/$applet")
    done
    python3 "$HERE/build-image.py" "$OUT/busybox.tar" docker.io/library/busybox:1.36 --cmd sh \
        --file "$BUSYBOX:/bin/busybox" "${links[@]}" \
        --dir /tmp --dir /etc --dir /proc --dir /sys --dir /dev --dir /root --dir /var --dir /home
fi
if [ ! -s "$OUT/pause.tar" ] || [ "$HERE/pause.c" -nt "$OUT/pause.tar" ]; then
    cc -static -O2 -o "$OUT/pause" "$HERE/pause.c"
    python3 "$HERE/build-image.py" "$OUT/pause.tar" registry.k8s.io/pause:3.10 --entrypoint /pause \
        --file "$OUT/pause:/pause"
fi

if [ -n "$SOCK" ]; then
    for img in busybox pause; do
        ctr --address "$SOCK" --namespace k8s.io images import --all-platforms "$OUT/$img.tar" >/dev/null
    done
fi
