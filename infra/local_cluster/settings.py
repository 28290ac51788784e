"""Where the local cluster keeps its files, and the addresses it uses: defined once here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelyard.contracts.state import cluster_dir

# What `cluster up` makes when no size is given: what fits a 2-core machine and still shows what
# several nodes change (one control plane and two workers, so serving spreads its replicas and
# survives the loss of one).
DEFAULT_NODES = 3
# The StorageClass of the local volumes `cluster up` makes (storage.py): what an environment's
# training.kubernetes.storageClass names on this cluster.
LOCAL_STORAGE_CLASS = "modelyard-local"
# The API server's port on 127.0.0.1 (kubeconfigs and tests use loopback only).
API_PORT = int(os.environ.get("MODELYARD_CLUSTER_API_PORT", "6443"))
# Which cluster runs on this machine (one per machine, like Docker's): outside any project, so
# every checkout finds it.
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
    def kubeconfigs(self) -> Path:
        return self.root / "kubeconfigs"

    @property
    def admin_kubeconfig(self) -> Path:
        """What users and the deploy stages use (`KUBECONFIG`)."""
        return self.kubeconfigs / "admin.conf"

    @property
    def volumes(self) -> Path:
        """The local PersistentVolumes' folders (storage.py)."""
        return self.root / "volumes"

    @property
    def owner_file(self) -> Path:
        """Which cluster folder the running cluster belongs to (one per machine)."""
        return self.run / OWNER_FILE
