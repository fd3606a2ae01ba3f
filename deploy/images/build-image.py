#!/usr/bin/env python3
"""Build a single-layer OCI image archive from files on this machine.

No registry is reachable where ferrokube is tested, so the images its tests
and deploy/local-up.sh run are made here and imported with
`ctr -n k8s.io images import`.

usage: build-image.py OUT.tar REF [--entrypoint ARG ...] [--cmd ARG ...]
                      [--file SRC:DEST[:MODE]] [--link TARGET:DEST] [--dir DEST]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

EPOCH = 0  # reproducible: every entry gets mtime 0


def add_dir(tar, seen, path):
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d and d not in seen:
            seen.add(d)
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = EPOCH
            tar.addfile(info)


def layer(files, links, dirs):
    raw = io.BytesIO()
    seen = set()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            add_dir(tar, seen, d)
        for src, dest, mode in files:
            add_dir(tar, seen, os.path.dirname(dest))
            data = open(src, "rb").read()
            info = tarfile.TarInfo(dest.strip("/"))
            info.size = len(data)
            info.mode = mode
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(data))
        for target, dest in links:
            add_dir(tar, seen, os.path.dirname(dest))
            info = tarfile.TarInfo(dest.strip("/"))
            info.type = tarfile.SYMTYPE
            info.linkname = target
            info.mode = 0o777
            info.mtime = EPOCH
            tar.addfile(info)
    diff = raw.getvalue()
    return diff, gzip.compress(diff, mtime=0)


def blob(out, seen, data):
    digest = hashlib.sha256(data).hexdigest()
    if digest not in seen:
        seen.add(digest)
        info = tarfile.TarInfo("blobs/sha256/" + digest)
        info.size = len(data)
        info.mtime = EPOCH
        out.addfile(info, io.BytesIO(data))
    return {"digest": "sha256:" + digest, "size": len(data)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("ref")
    p.add_argument("--entrypoint", nargs="*", default=None)
    p.add_argument("--cmd", nargs="*", default=None)
    p.add_argument("--file", action="append", default=[])
    p.add_argument("--link", action="append", default=[])
    p.add_argument("--dir", action="append", default=[])
    p.add_argument("--env", action="append", default=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    a = p.parse_args()

    files = []
    for spec in a.file:
        parts = spec.split(":")
        mode = int(parts[2], 8) if len(parts) > 2 else 0o755
        files.append((parts[0], parts[1], mode))
    links = [tuple(spec.split(":", 1)) for spec in a.link]
    diff, gz = layer(files, links, a.dir)

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = {
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": a.env, "Entrypoint": a.entrypoint, "Cmd": a.cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(diff).hexdigest()]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "ferrokube build-image.py"}],
    }
    with tarfile.open(a.out, "w") as out:
        seen = set()
        cfg = blob(out, seen, json.dumps(config, sort_keys=True).encode())
        lay = blob(out, seen, gz)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(cfg, mediaType="application/vnd.oci.image.config.v1+json"),
            "layers": [dict(lay, mediaType="application/vnd.oci.image.layer.v1.tar+gzip")],
        }
        man = blob(out, seen, json.dumps(manifest, sort_keys=True).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                dict(
                    man,
                    mediaType="application/vnd.oci.image.manifest.v1+json",
                    annotations={"io.containerd.image.name": a.ref, "org.opencontainers.image.ref.name": a.ref.rsplit(":", 1)[-1]},
                    platform={"architecture": arch, "os": "linux"},
                )
            ],
        }
        for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", json.dumps(index).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = EPOCH
            out.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    sys.exit(main())
