#!/usr/bin/env python3
"""Writes an OCI image archive (an OCI layout in a tar, as `ctr images import`
and `skopeo copy oci-archive:` take it) from files on this machine, without a
container engine. One layer; every entry owned by root, dated 0 and sorted,
so the same inputs give the same digest.

  oci-image.py --name docker.io/library/aws-secrets-csi:0.1.0 --out image.tar \\
      --entrypoint '["/usr/local/bin/aws-secrets-csi"]' --cmd '["serve"]' \\
      --file target/release/aws-secrets-csi:/usr/local/bin/aws-secrets-csi:0755 \\
      --libs-of target/release/aws-secrets-csi \\
      --link /bin/sh=busybox

--libs-of copies the shared libraries a dynamic executable loads (as ldd
lists them, the loader included) to the same paths in the image.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile


def shared_libraries(executable):
    """Paths of the libraries `executable` loads, the dynamic loader included."""
    out = subprocess.run(["ldd", executable], capture_output=True, text=True)
    if out.returncode != 0:
        if "not a dynamic executable" in out.stdout + out.stderr:
            return []
        sys.exit(f"ldd {executable}: {out.stderr.strip()}")
    paths = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                paths.append(target)
        elif parts and parts[0].startswith("/"):
            paths.append(parts[0])
    return paths


def layer(files, links):
    """An uncompressed tar of `files` ({dest: (src, mode)}) and `links`
    ({dest: target}), with every parent directory."""
    entries = {}
    for dest in list(files) + list(links):
        parent = os.path.dirname(dest.rstrip("/"))
        while parent not in ("", "/"):
            entries.setdefault(parent, ("dir", None, 0o755))
            parent = os.path.dirname(parent)
    for dest, (src, mode) in files.items():
        entries[dest] = ("file", src, mode)
    for dest, target in links.items():
        entries[dest] = ("link", target, 0o777)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dest in sorted(entries):
            kind, what, mode = entries[dest]
            info = tarfile.TarInfo(dest.lstrip("/"))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = what
                tar.addfile(info)
            else:
                with open(what, "rb") as f:
                    data = f.read()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def blob(tar, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":")[1])
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="full reference, e.g. docker.io/library/x:1")
    p.add_argument("--out", required=True)
    p.add_argument("--entrypoint", default="[]")
    p.add_argument("--cmd", default="[]")
    p.add_argument("--user", default="0")
    p.add_argument("--file", action="append", default=[], help="SRC:DEST[:MODE]")
    p.add_argument("--libs-of", action="append", default=[], help="a dynamic executable")
    p.add_argument("--link", action="append", default=[], help="DEST=TARGET")
    a = p.parse_args()

    files = {}
    for spec in a.file:
        src, dest, *mode = spec.split(":")
        files[dest] = (src, int(mode[0], 8) if mode else 0o644)
    for exe in a.libs_of:
        for lib in shared_libraries(exe):
            files[lib] = (os.path.realpath(lib), 0o755)
    links = dict(spec.split("=", 1) for spec in a.link)

    raw = layer(files, links)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    compressed = gzip.compress(raw, compresslevel=9, mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": json.loads(a.entrypoint) or None,
            "Cmd": json.loads(a.cmd) or None,
            "User": a.user,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "scripts/oci-image.py"}],
    }
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    with tarfile.open(a.out, "w") as tar:
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 0
            tar.addfile(info)
        layer_desc = blob(tar, compressed, "application/vnd.oci.image.layer.v1.tar+gzip")
        config_desc = blob(
            tar, json.dumps(config, sort_keys=True).encode(), "application/vnd.oci.image.config.v1+json"
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_desc,
            "layers": [layer_desc],
        }
        manifest_desc = blob(
            tar, json.dumps(manifest, sort_keys=True).encode(), "application/vnd.oci.image.manifest.v1+json"
        )
        manifest_desc["annotations"] = {
            "io.containerd.image.name": a.name,
            "org.opencontainers.image.ref.name": tag,
        }
        for name, data in [
            ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
            ("index.json", json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}).encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    print(
        f"{a.name}: {manifest_desc['digest']}, layer {len(raw)} bytes "
        f"({len(compressed)} compressed), {len(files) + len(links)} files"
    )


if __name__ == "__main__":
    main()
