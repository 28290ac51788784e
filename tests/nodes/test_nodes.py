"""`modelyard cluster up --nodes 3`: three Kubernetes nodes in containers, made by Ansible's
kubernetes_node role as a site's hosts are, driven as a user drives it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from modelyard.infra.components.model_serving import SERVING_UID
from modelyard.infra.local_cluster.settings import LOCAL_STORAGE_CLASS

from tests.cluster.conftest import LocalCluster
from tests.nodes.serving import NAMESPACE, PULL_SECRET, Served

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


def test_a_shared_volume_is_written_on_one_worker_and_read_on_the_other(
    node_cluster: LocalCluster, served: Served
) -> None:
    """The modelyard-local class on the nodes: one folder of this machine every node mounts, so a
    claim is used from two nodes at once (ReadWriteMany), as a training Job's workers use theirs."""
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "shared", "namespace": NAMESPACE},
             "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": LOCAL_STORAGE_CLASS,
                      "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip
    scripts = {
        "w1": "echo written-on-w1 > /shared/note && sleep 600",
        "w2": "until [ -f /shared/note ]; do sleep 1; done; cat /shared/note; sleep 600",
    }
    pods = [
        _shell_pod(f"on-{node}", node, served.image, script) for node, script in scripts.items()
    ]
    node_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [claim, *pods]}))  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        said = ""
        while "written-on-w1" not in said:
            assert time.monotonic() < deadline, node_cluster.kubectl(
                "-n", NAMESPACE, "describe", "pods", "on-w1", "on-w2")  # fmt: skip
            time.sleep(2)
            said = node_cluster.kubectl("-n", NAMESPACE, "logs", "on-w2", check=False)
        placed = json.loads(node_cluster.kubectl("-n", NAMESPACE, "get", "pods", "on-w1", "on-w2",
                                                 "-o", "json"))["items"]  # fmt: skip
        assert sorted(pod["spec"]["nodeName"] for pod in placed) == ["w1", "w2"]
        bound = json.loads(node_cluster.kubectl("-n", NAMESPACE, "get", "pvc", "shared", "-o",
                                                "json"))  # fmt: skip
        assert bound["status"]["phase"] == "Bound"
    finally:
        node_cluster.kubectl("-n", NAMESPACE, "delete", "pod", "on-w1", "on-w2", "--wait=true",
                             "--grace-period=1", check=False)  # fmt: skip
        node_cluster.kubectl("-n", NAMESPACE, "delete", "pvc", "shared", check=False)


def _shell_pod(name: str, node: str, image: str, script: str) -> dict[str, Any]:
    """A pod on `node` running `script` in the served image (its shell), as restricted Pod
    Security allows, with the claim mounted."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": node},
                "securityContext": {"runAsNonRoot": True, "runAsUser": SERVING_UID,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "imagePullSecrets": [{"name": PULL_SECRET}],
                "terminationGracePeriodSeconds": 1,
                "containers": [{
                    "name": "shell", "image": image, "command": ["sh", "-c", script],
                    "securityContext": {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
                }],
                "volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}],
            }}  # fmt: skip
