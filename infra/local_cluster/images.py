"""Images in the cluster's containerd: the pod sandbox image, made here from the pause program
(registry.k8s.io cannot be reached), and images loaded from Docker for pods that do not pull."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.settings import PAUSE_IMAGE, ClusterPaths

NAMESPACE = "k8s.io"  # containerd's namespace the CRI plugin (so the kubelet) uses


def ctr(paths: ClusterPaths, binaries: Binaries, *args: str, stdin: bytes | None = None) -> str:
    command = [str(binaries.debian["ctr"]), "--address", str(paths.containerd_socket),
               "--namespace", NAMESPACE, *args]  # fmt: skip
    done = subprocess.run(command, input=stdin, capture_output=True, check=True)
    return done.stdout.decode()


def image_names(paths: ClusterPaths, binaries: Binaries) -> set[str]:
    return set(ctr(paths, binaries, "images", "list", "--quiet").split())


def ensure_pause_image(paths: ClusterPaths, binaries: Binaries) -> str:
    name = PAUSE_IMAGE.format(key=binaries.pause_key)
    if name not in image_names(paths, binaries):
        archive = oci_archive({"pause": binaries.pause}, ["/pause"], name, user="65535:65535")
        ctr(paths, binaries, "images", "import", "-", stdin=archive)
    return name


def load_from_docker(paths: ClusterPaths, binaries: Binaries, reference: str) -> None:
    """An image the local Docker engine has, made available to pods (imagePullPolicy: Never)."""
    saved = subprocess.run(["docker", "save", reference], capture_output=True, check=True).stdout
    ctr(paths, binaries, "images", "import", "-", stdin=saved)


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
