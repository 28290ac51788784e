"""`modelyard cluster up|down|status`: the cluster's life cycle on this machine."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from modelyard.contracts.environment import ConfigError
from modelyard.infra.local_cluster import nodes
from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.settings import API_PORT, DEFAULT_NODES, ClusterPaths

Say = Callable[[str], None]


@dataclass(frozen=True)
class Status:
    state: str  # running, stopped or degraded
    kubeconfig: str
    kubectl: str
    server: str
    kubernetes_version: str
    # Each node: name, role, address, container state, ready.
    nodes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def node_ip() -> str:
    """The machine's address on its default route: where pods reach what the platform publishes
    on this machine (the nodes route to it through their network's gateway). Finding it sends
    nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("203.0.113.1", 9))  # TEST-NET-3: only selects the outgoing interface
        return str(probe.getsockname()[0])


def current_paths() -> ClusterPaths:
    """This machine's cluster (one per machine): the last one started while any of its nodes
    runs, else this project's own. One that stopped without `cluster down` (a killed run, its
    node containers removed by hand) no longer claims the machine."""
    started = ClusterPaths.last_started()
    if started is not None and nodes.any_running(started):
        return started
    return ClusterPaths.own()


def status(paths: ClusterPaths | None = None) -> Status:
    """running (every node's container up and the node Ready), stopped (none runs) or
    degraded."""
    paths = paths or current_paths()
    binaries = Binaries.find()
    found = nodes.node_status(paths, binaries)
    made = nodes.NodeCluster.load(paths)
    running = [n for n in found if n["container"] == "running"]
    ready = bool(found) and all(n["ready"] for n in found) and len(running) == len(found)
    return Status(
        state="running" if ready else ("degraded" if running else "stopped"),
        kubeconfig=str(paths.admin_kubeconfig),
        kubectl=str(binaries.kubectl),
        server=f"https://127.0.0.1:{API_PORT}",
        kubernetes_version=(made and made.kubernetes_version) or binaries.kubernetes_version,
        nodes=found,
    )


def up(
    say: Say, paths: ClusterPaths | None = None, node_count: int | None = None,
    kubernetes_version: str | None = None,
) -> Status:  # fmt: skip
    """The cluster of `node_count` nodes (DEFAULT_NODES when first made; afterwards the size it
    was made with), each a host configured by the kubernetes_node role, on `kubernetes_version`
    (the pinned one unless given): nodes on an earlier one are upgraded one at a time."""
    paths = paths or current_paths()
    binaries = Binaries.find(kubernetes_version)  # names every missing program before any work
    count = node_count if node_count is not None else (nodes.node_count(paths) or DEFAULT_NODES)
    if count < 1:
        raise ConfigError(f"--nodes {count}: a cluster needs at least one node")
    nodes.up(count, say, paths, binaries)
    return status(paths)


def down(say: Say, paths: ClusterPaths | None = None, destroy: bool = False) -> Status:
    """Stops every node and its pods, keeping etcd's data and the images for the next `up`;
    `destroy` removes the nodes with everything they hold."""
    paths = paths or current_paths()
    nodes.down(say, paths, destroy=destroy)
    return status(paths)
