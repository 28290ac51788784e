"""One local Kubernetes for the session, made, stopped and removed through `modelyard cluster` as a
user types it (three nodes made by the kubernetes_node role), in a state folder of the session's
own: every test of this folder runs on it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from modelyard.infra.local_cluster.binaries import Binaries

from tests.cluster.local_cluster import LocalCluster
from tests.cluster.serving import Served, serve
from tests.registry import running_registry

if TYPE_CHECKING:
    from tests.cluster.project import Project


# The cluster is made on the release before the pinned one and upgraded by the first test; the
# tests that stop it, kill its nodes or end with it stopped run after the others, in this order,
# whatever their files are named: the last one, the demo, stops it.
FIRST = "test_upgrade.py"
LAST = ("test_nodes.py", "test_faults.py", "test_the_demo.py")


def _place(item: pytest.Item) -> int:
    if item.path.name == FIRST:
        return -1
    return LAST.index(item.path.name) + 1 if item.path.name in LAST else 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """This folder's tests in that order (the hook sees the whole session's items: the other
    folders' keep their places)."""
    here = Path(__file__).parent
    ours = [i for i, item in enumerate(items) if item.path.parent == here]
    ordered = sorted((items[i] for i in ours), key=_place)  # stable: the rest keep their order
    for index, item in zip(ours, ordered, strict=True):
        items[index] = item


@pytest.fixture(scope="package")
def local_cluster(
    cluster_tools: Binaries, docker_engine: None, base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalCluster]:  # fmt: skip
    # Where `modelyard demo --cluster` keeps its cluster under a state folder, so the demo's test
    # (tests/cluster/test_the_demo.py) adopts this one: one cluster runs per machine.
    from modelyard.infra.pinned_tools import pinned_versions

    cluster = LocalCluster(tmp_path_factory.mktemp("state") / "demo-cluster")
    previous = pinned_versions()["KUBERNETES_PREVIOUS_VERSION"]
    started = cluster.cli("up", "--kubernetes-version", previous, timeout=1500)
    try:
        assert started.returncode == 0, (started.stdout + started.stderr)[-6000:]
        yield cluster
    finally:
        cluster.cli("down", "--destroy", timeout=300)


@pytest.fixture(scope="package")
def nodes_registry(local_cluster: LocalCluster, registry_image: str) -> Iterator[dict[str, Any]]:
    """A registry as the platform runs it (TLS, a password), published on this machine's address
    on the nodes' network: where the nodes' containerd pulls from."""
    from modelyard.infra.local_cluster.nodes import NodeCluster
    from modelyard.infra.local_cluster.settings import ClusterPaths

    cluster = NodeCluster.load(ClusterPaths(local_cluster.state / "cluster"))
    assert cluster is not None
    with running_registry(registry_image, cluster.host_address) as registry:
        yield registry


@pytest.fixture(scope="package")
def served(
    local_cluster: LocalCluster, nodes_registry: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:  # fmt: skip
    """A model served by two replicas on the workers; KUBECONFIG names the cluster for the load
    pods."""
    served = serve(local_cluster, tmp_path_factory.mktemp("serving-image"), nodes_registry)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", local_cluster.status()["kubeconfig"])
        yield served


@pytest.fixture(scope="package")
def project(
    local_cluster: LocalCluster, engine: None, base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Project]:  # fmt: skip
    """The production path's project, provisioned (platform stack up, credentials stored)."""
    from tests.cluster.project import SERVED, Project, provisioned

    created = Project(tmp_path_factory.mktemp("production-path"), local_cluster)
    created.create()
    try:
        yield provisioned(created, local_cluster)
    finally:
        for env in (*SERVED, created.platform):
            created.cli("infra", "destroy", env)


@pytest.fixture(scope="package")
def pipeline_run(project: Project) -> subprocess.CompletedProcess[str]:
    """`modelyard pipeline run` from data to production pods, once."""
    from modelyard.ml.data.sample import generate_churn

    data = project.folder / "churn.csv"
    generate_churn(4000, seed=7).to_csv(data, index=False)
    return project.cli("pipeline", "run", project.platform, "--data", str(data))
