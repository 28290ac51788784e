"""A one-layer OCI image archive made from programs, as containerd imports it: how the images
kubeadm runs are made here (kube_images.py; registry.k8s.io cannot be reached)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any


def oci_archive(
    files: dict[str, Path], entrypoint: list[str], name: str, user: str | None = None
) -> bytes:
    """A one-layer OCI image archive named `name`: each program in `files` at its path (relative
    to /), started by `entrypoint`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        folders: set[str] = set()
        for path, program in sorted(files.items()):
            parents = Path(path).parents
            for folder in reversed([str(p) for p in parents if str(p) != "."]):
                if folder not in folders:
                    folders.add(folder)
                    entry = tarfile.TarInfo(folder)
                    entry.type, entry.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(entry)
            info = tarfile.TarInfo(path)
            data = program.read_bytes()
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    config = _json({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                   **({"User": user} if user else {})},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer_bytes)]},
    })  # fmt: skip
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar", layer_bytes)],
    })  # fmt: skip
    index = _json({
        "schemaVersion": 2,
        "manifests": [{
            **_descriptor("application/vnd.oci.image.manifest.v1+json", manifest),
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rpartition(":")[2]},
        }],
    })  # fmt: skip
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        entries = {"oci-layout": _json({"imageLayoutVersion": "1.0.0"}), "index.json": index}
        for blob in (layer_bytes, config, manifest):
            entries[f"blobs/sha256/{_digest(blob).removeprefix('sha256:')}"] = blob
        for path, content in entries.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return archive.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _digest(blob: bytes) -> str:
    return f"sha256:{hashlib.sha256(blob).hexdigest()}"


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(blob), "size": len(blob)}
