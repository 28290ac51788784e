"""The programs the local cluster runs: built by `make cluster-tools` at the pinned versions, or
Debian's (containerd, runc, the CNI plugins, conntrack, iptables)."""

from __future__ import annotations

import hashlib
import shutil
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
DEBIAN_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "conntrack": "conntrack",
    "iptables": "iptables",
    "ctr": "containerd",
}
CNI_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")


class ClusterToolsMissing(ConfigError):
    """A program the cluster needs is not built or not installed."""


@dataclass(frozen=True)
class Binaries:
    kubernetes_version: str
    kubernetes: Path  # folder of the KUBERNETES programs
    etcd: Path
    pause: Path
    pause_key: str  # names the pause image: changes when its program does
    coredns: Path
    cni: Path  # folder of the CNI plugins
    debian: dict[str, Path]

    def kube(self, name: str) -> Path:
        return self.kubernetes / name

    @property
    def kubectl(self) -> Path:
        return self.kube("kubectl")

    @classmethod
    def find(cls) -> Binaries:
        """Every program, or one message naming each missing one and the command that adds it."""
        versions = pinned_versions()
        cache = tools_dir()
        kube_version = versions["KUBERNETES_VERSION"]
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
        build_hint = "run `make cluster-tools` (builds them from Go modules once per machine)"
        problems = [f"{', '.join(missing)} not built: {build_hint}"] if missing else []
        debian: dict[str, Path] = {}
        absent_packages = set()
        for program, package in DEBIAN_PACKAGES.items():
            found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
            if found:
                debian[program] = Path(found)
            else:
                absent_packages.add(package)
        cni = next((d for d in CNI_DIRS if all((d / p).is_file() for p in CNI_PLUGINS)), None)
        if cni is None:
            absent_packages.add("containernetworking-plugins")
        if absent_packages:
            packages = " ".join(sorted(absent_packages))
            problems.append(f"Debian packages missing: `apt-get install -y {packages}`")
        if problems:
            raise ClusterToolsMissing("; ".join(problems))
        assert pause_dir is not None and cni is not None
        return cls(
            kubernetes_version=kube_version,
            kubernetes=kubernetes / "bin",
            etcd=etcd / "bin" / "etcd",
            pause=pause_dir / "bin" / "pause",
            pause_key=pause_dir.name.removeprefix("pause-"),
            coredns=coredns / "bin" / "coredns",
            cni=cni,
            debian=debian,
        )


def _pause_dir(cache: Path) -> Path | None:
    """The pause build for the pause source in this checkout (tools/pause, keyed by its digest
    the way tools/build-cluster.sh keys it)."""
    source = Path(__file__).resolve().parents[2] / "tools" / "pause"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(source.iterdir())))
    folder = cache / f"pause-{digest.hexdigest()[:10]}"
    return folder if (folder / ".stamp").is_file() else None
