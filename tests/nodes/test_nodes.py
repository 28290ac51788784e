"""`modelyard cluster up --nodes 3`: three Kubernetes nodes in containers, made by Ansible's
kubernetes_node role as a site's hosts are, driven as a user drives it."""

from __future__ import annotations

import json
import time

import pytest

from tests.cluster.conftest import LocalCluster

# The first test waits for the nodes to be made (a few minutes on 2 cores).
pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.cluster, pytest.mark.timeout(1800)]


def test_up_makes_one_control_plane_and_two_workers_and_status_lists_them(
    node_cluster: LocalCluster,
) -> None:
    status = node_cluster.status()
    assert status["state"] == "running"
    assert [(n["name"], n["role"], n["ready"], n["container"]) for n in status["nodes"]] == [
        ("cp", "control_plane", True, "running"),
        ("w1", "worker", True, "running"),
        ("w2", "worker", True, "running"),
    ]
    assert status["server"].startswith("https://127.0.0.1:")  # through loopback only
    nodes = json.loads(node_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {"v1.34.4"}
    shown = node_cluster.cli("status")
    assert "w2     worker" in shown.stdout and "Ready" in shown.stdout, shown.stdout
    again = node_cluster.cli("up", "--nodes", "3")  # already running: nothing to do
    assert again.returncode == 0, again.stderr
    other_size = node_cluster.cli("up", "--nodes", "2")
    assert other_size.returncode != 0
    assert "has 3 nodes, not 2" in other_size.stderr and "down --destroy" in other_size.stderr


def test_down_and_up_keep_what_the_cluster_holds(node_cluster: LocalCluster) -> None:
    node_cluster.kubectl("create", "configmap", "kept", "--from-literal=answer=42")
    stopped = node_cluster.cli("down", "--json")
    assert stopped.returncode == 0, stopped.stderr
    status = json.loads(stopped.stdout)
    assert status["state"] == "stopped"
    assert {n["container"] for n in status["nodes"]} == {"exited"}
    started = time.monotonic()
    up = node_cluster.cli("up", "--json", timeout=600)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["state"] == "running"
    print(f"nodes back and Ready in {time.monotonic() - started:.1f}s")
    kept = json.loads(node_cluster.kubectl("get", "configmap", "kept", "-o", "json"))
    assert kept["data"] == {"answer": "42"}  # etcd's data survived the stop
