"""`modelyard cluster up|down|status`: three Kubernetes nodes in containers, made by Ansible's
kubernetes_node role as a site's hosts are, driven as a user drives them. Runs after the tests
that deploy to the cluster: one of these stops it and starts it again."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from modelyard.infra.components.model_serving import SERVING_UID
from modelyard.infra.local_cluster.nodes import CONTAINER_PREFIX
from modelyard.infra.local_cluster.settings import LOCAL_STORAGE_CLASS

from tests.cluster.local_cluster import LocalCluster
from tests.cluster.serving import NAMESPACE, PULL_SECRET, SERVICE, Served, nodes_serving, until

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.cluster, pytest.mark.timeout(1800)]

AS_ROOT = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "as-root", "namespace": NAMESPACE},
           "spec": {"containers": [{"name": "main", "image": "modelyard.invalid/any:1"}]}}  # fmt: skip


def test_up_makes_one_control_plane_and_two_workers_and_status_lists_them(
    local_cluster: LocalCluster,
) -> None:
    status = local_cluster.status()
    assert status["state"] == "running"
    assert [(n["name"], n["role"], n["ready"], n["container"]) for n in status["nodes"]] == [
        ("cp", "control_plane", True, "running"),
        ("w1", "worker", True, "running"),
        ("w2", "worker", True, "running"),
    ]
    assert Path(status["kubeconfig"]).is_file()
    assert status["server"].startswith("https://127.0.0.1:")  # through loopback only
    nodes = json.loads(local_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {
        f"v{status['kubernetes_version']}"
    }
    assert all(n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
               for n in nodes)  # fmt: skip
    shown = local_cluster.cli("status")
    assert "w2     worker" in shown.stdout and "Ready" in shown.stdout, shown.stdout
    again = local_cluster.cli("up")  # already running: nothing to do, the size remembered
    assert again.returncode == 0, again.stderr
    other_size = local_cluster.cli("up", "--nodes", "2")
    assert other_size.returncode != 0
    assert "has 3 nodes, not 2" in other_size.stderr and "down --destroy" in other_size.stderr


def test_pod_security_restricted_refuses_a_root_pod_and_runs_the_served_ones(
    local_cluster: LocalCluster, served: Served
) -> None:
    """The real API server refuses a pod that would run as root in a `restricted` namespace; the
    served replicas (non-root, read-only root filesystem, no capabilities) run there."""
    refused = local_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(AS_ROOT), check=False)
    assert 'violates PodSecurity "restricted:latest"' in refused
    assert nodes_serving(local_cluster) == ["w1", "w2"]


def test_down_stops_every_node_and_up_brings_back_what_was_deployed(
    local_cluster: LocalCluster, served: Served, tmp_path: Path
) -> None:
    local_cluster.kubectl("create", "configmap", "kept", "--from-literal=answer=42")
    # One cluster per machine: from another project's folder (a checkout beside the session's),
    # status reports it, with a kubeconfig that exists, and down stops it.
    elsewhere = LocalCluster(tmp_path / "another-checkout")
    seen = elsewhere.status()
    assert seen["state"] == "running" and seen["kubeconfig"] == local_cluster.status()["kubeconfig"]
    stopped = elsewhere.cli("down", "--json")
    assert stopped.returncode == 0, stopped.stderr
    status = json.loads(stopped.stdout)
    assert status["state"] == "stopped"
    assert {n["container"] for n in status["nodes"]} == {"exited"}
    running = subprocess.run(["docker", "ps", "-q", "--filter", f"name=^{CONTAINER_PREFIX}"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert running == "", "a node still runs after `cluster down`"

    started, since = time.monotonic(), datetime.now(UTC).replace(microsecond=0)
    up = local_cluster.cli("up", "--json", timeout=600)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["state"] == "running"
    print(f"nodes back and Ready in {time.monotonic() - started:.1f}s")
    # Ready as each kubelet said it after the start, not as etcd kept it from before the stop.
    for node in json.loads(local_cluster.kubectl("get", "nodes", "-o", "json"))["items"]:
        (ready,) = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready["status"] == "True", node["metadata"]["name"]
        assert datetime.fromisoformat(ready["lastHeartbeatTime"]) >= since, ready
    kept = json.loads(local_cluster.kubectl("get", "configmap", "kept", "-o", "json"))
    assert kept["data"] == {"answer": "42"}  # etcd's data survived the stop
    # The kubelets start what was deployed again, from the images the nodes kept.
    local_cluster.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{SERVICE}",
                          "--timeout=300s")  # fmt: skip
    until(lambda: len(nodes_serving(local_cluster)) == 2, 180, "both served pods back")


def test_a_shared_volume_is_written_on_one_worker_and_read_on_the_other(
    local_cluster: LocalCluster, served: Served
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
    local_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [claim, *pods]}))  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        said = ""
        while "written-on-w1" not in said:
            assert time.monotonic() < deadline, local_cluster.kubectl(
                "-n", NAMESPACE, "describe", "pods", "on-w1", "on-w2")  # fmt: skip
            time.sleep(2)
            said = local_cluster.kubectl("-n", NAMESPACE, "logs", "on-w2", check=False)
        placed = json.loads(local_cluster.kubectl("-n", NAMESPACE, "get", "pods", "on-w1", "on-w2",
                                                 "-o", "json"))["items"]  # fmt: skip
        assert sorted(pod["spec"]["nodeName"] for pod in placed) == ["w1", "w2"]
        bound = json.loads(local_cluster.kubectl("-n", NAMESPACE, "get", "pvc", "shared", "-o",
                                                "json"))  # fmt: skip
        assert bound["status"]["phase"] == "Bound"
    finally:
        local_cluster.kubectl("-n", NAMESPACE, "delete", "pod", "on-w1", "on-w2", "--wait=true",
                             "--grace-period=1", check=False)  # fmt: skip
        local_cluster.kubectl("-n", NAMESPACE, "delete", "pvc", "shared", check=False)


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
