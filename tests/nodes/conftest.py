"""The multi-node local cluster for this folder's tests: `modelyard cluster up --nodes 3` as a user
types it (one control plane, two workers, made by the kubernetes_node role), removed afterwards.
It runs after tests/cluster has stopped the single-node cluster: one cluster per machine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from modelyard.infra.local_cluster.binaries import Binaries

from tests.cluster.conftest import LocalCluster
from tests.nodes.serving import Served, serve
from tests.registry import running_registry

NODES = 3


@pytest.fixture(scope="package")
def node_cluster(
    cluster_tools: Binaries, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("state") / "nodes")
    started = cluster.cli("up", "--nodes", str(NODES), timeout=1500)
    try:
        assert started.returncode == 0, (started.stdout + started.stderr)[-6000:]
        yield cluster
    finally:
        cluster.cli("down", "--destroy", timeout=300)


@pytest.fixture(scope="package")
def nodes_registry(node_cluster: LocalCluster, registry_image: str) -> Iterator[dict[str, Any]]:
    """A registry as the platform runs it (TLS, a password), published on this machine's address
    on the nodes' network: where the nodes' containerd pulls from."""
    from modelyard.infra.local_cluster.nodes import NodeCluster
    from modelyard.infra.local_cluster.settings import ClusterPaths

    cluster = NodeCluster.load(ClusterPaths(node_cluster.state / "cluster"))
    assert cluster is not None
    with running_registry(registry_image, cluster.host_address) as registry:
        yield registry


@pytest.fixture(scope="package")
def served(
    node_cluster: LocalCluster, nodes_registry: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:  # fmt: skip
    """A model served by two replicas on the workers; KUBECONFIG names the cluster for the load
    pods."""
    served = serve(node_cluster, tmp_path_factory.mktemp("serving-image"), nodes_registry)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", node_cluster.status()["kubeconfig"])
        yield served
