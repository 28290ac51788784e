"""The programs the local cluster's nodes run, built by `make cluster-tools` at the pinned
versions (containerd and runc are Debian's, installed on each node by the kubernetes_node role)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from modelyard.contracts.environment import ConfigError
from modelyard.infra.pinned_tools import pinned_versions, tools_dir

KUBERNETES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "kubeadm",
)


class ClusterToolsMissing(ConfigError):
    """A program the cluster needs is not built."""


@dataclass(frozen=True)
class Binaries:
    kubernetes_version: str
    kubernetes: Path  # folder of the KUBERNETES programs
    etcd: Path
    pause: Path
    coredns: Path

    def kube(self, name: str) -> Path:
        return self.kubernetes / name

    @property
    def kubectl(self) -> Path:
        return self.kube("kubectl")

    @classmethod
    def find(cls, kubernetes_version: str | None = None) -> Binaries:
        """Every program, with Kubernetes at `kubernetes_version` (the pinned one unless given:
        `make cluster-tools` also builds the one before it), or one message naming each missing
        one and the command that adds it."""
        versions = pinned_versions()
        cache = tools_dir()
        kube_version = (kubernetes_version or versions["KUBERNETES_VERSION"]).removeprefix("v")
        built = (versions["KUBERNETES_VERSION"], versions["KUBERNETES_PREVIOUS_VERSION"])
        if kube_version not in built:
            raise ClusterToolsMissing(
                f"Kubernetes {kube_version}: `make cluster-tools` builds {' and '.join(built)} "
                "(KUBERNETES_VERSION and KUBERNETES_PREVIOUS_VERSION in tools/versions.env)"
            )
        kubernetes = cache / f"kubernetes-{kube_version}"
        etcd = cache / f"etcd-{versions['ETCD_VERSION']}"
        pause_dir = _pause_dir(cache)
        coredns = cache / f"coredns-{versions['COREDNS_VERSION']}"
        missing: list[str] = []
        if not (kubernetes / ".stamp").is_file():
            missing.append(f"Kubernetes {kube_version} ({kubernetes})")
        if not (etcd / ".stamp").is_file():
            missing.append(f"etcd {versions['ETCD_VERSION']} ({etcd})")
        if not (coredns / ".stamp").is_file():
            missing.append(f"CoreDNS {versions['COREDNS_VERSION']} ({coredns})")
        if pause_dir is None:
            missing.append(f"the pause program ({cache}/pause-*)")
        if missing:
            raise ClusterToolsMissing(
                f"{', '.join(missing)} not built: run `make cluster-tools` (builds them from Go "
                "modules once per machine)"
            )
        assert pause_dir is not None
        return cls(
            kubernetes_version=kube_version,
            kubernetes=kubernetes / "bin",
            etcd=etcd / "bin" / "etcd",
            pause=pause_dir / "bin" / "pause",
            coredns=coredns / "bin" / "coredns",
        )


def _pause_dir(cache: Path) -> Path | None:
    """The pause build for the pause source in this checkout (tools/pause, keyed by its digest
    the way tools/build-cluster.sh keys it)."""
    source = Path(__file__).resolve().parents[2] / "tools" / "pause"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(source.iterdir())))
    folder = cache / f"pause-{digest.hexdigest()[:10]}"
    return folder if (folder / ".stamp").is_file() else None
