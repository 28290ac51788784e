"""The images kubeadm runs, made here from the programs `make cluster-tools` builds
(registry.k8s.io cannot be reached): one archive per image, imported into each node's containerd
by the kubernetes_node role. Named under IMAGE_REPOSITORY, so an accidental pull fails at once."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from modelyard.contracts.digests import file_digest
from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.oci_archive import oci_archive
from modelyard.infra.pinned_tools import pinned_versions, tools_dir

IMAGE_REPOSITORY = "modelyard.invalid"
ETCD_IMAGE_TAG = f"{pinned_versions()['ETCD_VERSION']}-0"
PAUSE_TAG = "3.10.1"  # kubeadm 1.34's pause tag (`kubeadm config images list`)
COREDNS_TAG = f"v{pinned_versions()['COREDNS_VERSION']}"
KUBE_PROXY_DOCKERFILE = Path(__file__).parent / "node" / "kube-proxy" / "Dockerfile"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class ImageArchive:
    """One archive, as `modelyard:hosts.kubernetes.imageArchives` lists it."""

    path: str
    sha256: str
    images: list[str]
    control_plane_only: bool


def kubeadm_images(binaries: Binaries) -> list[ImageArchive]:
    """The archives for this build of the programs, made once per machine (cached by content)."""
    version = f"v{binaries.kubernetes_version}"
    programs = [binaries.kube(c) for c in (*CONTROL_PLANE, "kube-proxy")]
    programs += [binaries.etcd, binaries.pause, binaries.coredns]
    key = hashlib.sha256(KUBE_PROXY_DOCKERFILE.read_bytes())
    for program in programs:
        key.update(file_digest(program).encode())
    folder = tools_dir() / f"kube-images-{key.hexdigest()[:12]}"
    index = folder / "archives.json"
    if index.is_file():
        return [ImageArchive(**entry) for entry in json.loads(index.read_text(encoding="utf-8"))]
    work = Path(tempfile.mkdtemp(prefix="kube-images-", dir=tools_dir()))
    try:
        archives = [
            _one_layer(work, binaries.kube(c), f"{IMAGE_REPOSITORY}/{c}:{version}", True)
            for c in CONTROL_PLANE
        ]
        archives.append(_one_layer(
            work, binaries.etcd, f"{IMAGE_REPOSITORY}/etcd:{ETCD_IMAGE_TAG}", True))  # fmt: skip
        archives.append(_one_layer(
            work, binaries.pause, f"{IMAGE_REPOSITORY}/pause:{PAUSE_TAG}", False,
            path="pause", user="65535:65535"))  # fmt: skip
        archives.append(_one_layer(
            work, binaries.coredns, f"{IMAGE_REPOSITORY}/coredns:{COREDNS_TAG}", False,
            path="coredns"))  # fmt: skip
        archives.append(_kube_proxy(work, binaries, f"{IMAGE_REPOSITORY}/kube-proxy:{version}"))
        final = [ImageArchive(**{**asdict(a), "path": str(folder / Path(a.path).name)})
                 for a in archives]  # fmt: skip
        (work / "archives.json").write_text(json.dumps([asdict(a) for a in final], indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        work.rename(folder)  # whole or not at all
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _one_layer(
    work: Path, program: Path, name: str, control_plane: bool, *, path: str = "",
    user: str | None = None,
) -> ImageArchive:  # fmt: skip
    inside = path or f"usr/local/bin/{program.name}"
    archive = work / f"{name.rsplit('/', 1)[1].split(':')[0]}.tar"
    archive.write_bytes(oci_archive({inside: program}, [f"/{inside}"], name, user=user))
    return ImageArchive(str(archive), file_digest(archive), [name], control_plane)


def _kube_proxy(work: Path, binaries: Binaries, name: str) -> ImageArchive:
    context = work / "kube-proxy-context"
    context.mkdir()
    shutil.copy(KUBE_PROXY_DOCKERFILE, context / "Dockerfile")
    shutil.copy(binaries.kube("kube-proxy"), context / "kube-proxy")
    subprocess.run(["docker", "build", "-q", "-t", name, str(context)], check=True,
                   capture_output=True, timeout=900)  # fmt: skip
    archive = work / "kube-proxy.tar"
    with archive.open("wb") as out:
        subprocess.run(["docker", "save", name], stdout=out, check=True, timeout=300)
    shutil.rmtree(context)
    return ImageArchive(str(archive), file_digest(archive), [name], False)
