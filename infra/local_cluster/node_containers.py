"""Kubernetes nodes as systemd containers: the image, how they are run, and the
kubernetes_node role's settings that differ from a real host's. The local cluster
and the Ansible tests start them; the role makes them Kubernetes nodes as it would real hosts."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from modelyard.contracts.digests import file_digest
from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.kube_images import (
    ETCD_IMAGE_TAG,
    IMAGE_REPOSITORY,
    kubeadm_images,
)

NODE_IMAGE_DIR = Path(__file__).parent / "node"
# `--privileged` is refused here (root lacks CAP_SYS_RESOURCE), so every other capability, no
# seccomp/AppArmor filter, every device (privileged pods such as kube-proxy), a private cgroup
# namespace whose hierarchies the entrypoint makes writable, /dev/kmsg for the kubelet. Without
# CAP_SYS_TIME a node's chrony cannot step the machine's clock.
NODE_RUN_FLAGS = [
    "--cgroupns=private", "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--cap-drop", "SYS_TIME", "--cap-drop", "SYS_MODULE", "--device-cgroup-rule", "a *:* rwm",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--device", "/dev/kmsg", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
]  # fmt: skip
# containerd's overlay snapshots need a real filesystem under them, not the container's overlay.
CONTAINERD_VOLUME_PATH = "/var/lib/containerd"
# Where every node mounts the cluster folder's volumes (storage.py): one folder of this machine,
# shared by the nodes as a site's nodes share an NFS export.
SHARED_VOLUMES_PATH = "/var/lib/modelyard-volumes"


def build_node_image() -> str:
    """The node image (needs the local debian:bookworm-slim), tagged by its files' content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in NODE_IMAGE_DIR.iterdir() if p.is_file()):
        digest.update(path.name.encode() + path.read_bytes())
    tag = f"modelyard-node:{digest.hexdigest()[:12]}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(NODE_IMAGE_DIR)], check=True,
                   capture_output=True, timeout=900)  # fmt: skip
    return tag


def container_node_settings(binaries: Binaries) -> dict[str, Any]:
    """`modelyard:hosts.kubernetes` for nodes in containers: the programs and images built here
    (checked by sha256 like any air-gapped site's), cgroups under /kubelet, no image garbage
    collection or disk eviction (nothing can be pulled again), kube-proxy leaving the
    machine-wide conntrack sysctls alone (read-only in a container), and the cluster DNS
    forwarding to this machine's name servers (a node's own is Docker's, on its loopback).
    Pods are synced every 10 s (upstream: 1 min), so an updated ConfigMap or Secret (a canary's
    weight, rotated serving tokens) reaches the mounted files within seconds."""
    programs = ("kubeadm", "kubelet", "kubectl")
    return {
        "version": f"v{binaries.kubernetes_version}",
        "artifacts": str(binaries.kubernetes),
        "sha256": {p: file_digest(binaries.kube(p)) for p in programs},
        "imageArchives": [
            {
                "path": a.path,
                "sha256": a.sha256,
                "images": a.images,
                "controlPlaneOnly": a.control_plane_only,
            }
            for a in kubeadm_images(binaries)
        ],
        "imageRepository": IMAGE_REPOSITORY,
        "etcdImageTag": ETCD_IMAGE_TAG,
        "cgroupDriver": "cgroupfs",
        "upstreamDns": upstream_name_servers(),
        "kubeletConfig": {
            "cgroupRoot": "/kubelet",
            "failSwapOn": False,
            "syncFrequency": "10s",
            "imageGCHighThresholdPercent": 100,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "0%",
                "nodefs.inodesFree": "0%",
                "imagefs.available": "0%",
            },
        },
        "kubeProxyConfig": {
            "conntrack": {
                "maxPerCore": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        },
    }


def upstream_name_servers() -> list[str]:
    """This machine's name servers that a container can reach (no loopback addresses; behind
    systemd-resolved, the ones it forwards to)."""
    for path in (Path("/run/systemd/resolve/resolv.conf"), Path("/etc/resolv.conf")):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        servers = [line.split()[1] for line in lines
                   if line.startswith("nameserver") and len(line.split()) > 1]  # fmt: skip
        reachable = [s for s in servers if not s.startswith("127.") and s != "::1"]
        if reachable:
            return reachable
    return []
