"""Trusting a registry's certificate authority on this machine, the way each client expects:
Docker (pushes) reads /etc/docker/certs.d/HOST:PORT/ca.crt, each node's containerd (pulls) its
certs.d/HOST:PORT/hosts.toml, written by the kubernetes_node role. Both are read at each push or
pull: no restart."""

from __future__ import annotations

from pathlib import Path

from modelyard.contracts.atomic_file import write_atomic
from modelyard.infra.local_cluster import nodes, runtime
from modelyard.infra.local_cluster.nodes import Say
from modelyard.infra.local_cluster.settings import ClusterPaths

DOCKER_CERTS = Path("/etc/docker/certs.d")


def trust_registry(
    address: str, ca_pem: str, paths: ClusterPaths | None = None, say: Say = print
) -> None:
    """`address` is HOST:PORT as image references name the registry."""
    paths = paths or runtime.current_paths()
    docker = DOCKER_CERTS / address
    docker.mkdir(parents=True, exist_ok=True)
    write_atomic(docker / "ca.crt", ca_pem)
    nodes.trust_registry(paths, address, ca_pem, say)
