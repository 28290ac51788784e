"""Where the local cluster keeps its files, and the addresses it uses: defined once here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelyard.contracts.state import cluster_dir

NODE_NAME = "modelyard"
CLUSTER_NAME = "modelyard"
# Address ranges of the cluster's own pods and Services; chosen away from Docker's 172.16/12 pools.
POD_SUBNET = "10.244.0.0/24"
SERVICE_SUBNET = "10.96.0.0/16"
# The StorageClass of the local volumes `cluster up` makes (storage.py): what an environment's
# training.kubernetes.storageClass names on this cluster.
LOCAL_STORAGE_CLASS = "modelyard-local"
BRIDGE = "modelyard0"  # the CNI bridge the pods hang off (and the firewall rules name)
PAUSE_IMAGE = "modelyard.invalid/pause:{key}"
# The API server's port on 127.0.0.1 (kubeconfigs and tests use loopback only).
API_PORT = int(os.environ.get("MODELYARD_CLUSTER_API_PORT", "6443"))
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
# Runtime files (sockets, pid files): their paths must stay short (a unix socket path is at most
# 107 bytes), and there is one cluster per machine, like Docker's.
RUN_DIR = Path(os.environ.get("MODELYARD_CLUSTER_RUN_DIR", "/run/modelyard-cluster"))
OWNER_FILE = "owner"  # in RUN_DIR: the folder of the cluster that was started (up until down)


@dataclass(frozen=True)
class ClusterPaths:
    """The cluster's folder (contracts/state.py `cluster`) and the runtime folder."""

    root: Path
    run: Path = RUN_DIR

    @classmethod
    def own(cls) -> ClusterPaths:
        """This project's cluster (its state folder's)."""
        return cls(cluster_dir())

    @classmethod
    def last_started(cls) -> ClusterPaths | None:
        """The folder of the cluster last started on this machine and not stopped by `cluster
        down` (whoever started it: a checkout, `make demo-cluster`, a test run)."""
        try:
            owner = (RUN_DIR / OWNER_FILE).read_text().strip()
        except OSError:
            return None
        return cls(Path(owner)) if owner else None

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def kubeconfigs(self) -> Path:
        return self.root / "kubeconfigs"

    @property
    def admin_kubeconfig(self) -> Path:
        """What users and the deploy stages use (`KUBECONFIG`)."""
        return self.kubeconfigs / "admin.conf"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def cni_config(self) -> Path:
        return self.config / "cni"

    @property
    def registry_hosts(self) -> Path:
        """containerd's per-registry settings (certs.d layout): which CA each registry has."""
        return self.config / "certs.d"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def volumes(self) -> Path:
        """The local PersistentVolumes' folders (storage.py)."""
        return self.root / "volumes"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def owner_file(self) -> Path:
        """Which cluster folder the running cluster belongs to (one per machine)."""
        return self.run / OWNER_FILE

    def pid_file(self, component: str) -> Path:
        return self.run / f"{component}.pid"
