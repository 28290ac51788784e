"""`modelyard cluster up|down|status`: a real single-node Kubernetes (upstream 1.34 built by
`make cluster-tools`, Debian's containerd), as a user drives it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from modelyard.infra.local_cluster.settings import BRIDGE, RUN_DIR

from tests.cluster.conftest import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.cluster]

LOCKED_DOWN = """
apiVersion: v1
kind: Namespace
metadata:
  name: probe
  labels: {pod-security.kubernetes.io/enforce: restricted}
---
apiVersion: v1
kind: Pod
metadata: {name: locked-down, namespace: probe}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 10001, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: main
    image: docker.io/library/debian:bookworm-slim
    imagePullPolicy: Never
    command: ["sh", "-c", "id -u; touch /probe 2>&1; sleep 3600"]
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
"""
AS_ROOT = """
apiVersion: v1
kind: Pod
metadata: {name: as-root, namespace: probe}
spec:
  containers:
  - {name: main, image: docker.io/library/debian:bookworm-slim, imagePullPolicy: Never,
     command: ["sleep", "3600"]}
"""


def _wait_for(check: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(1)


def test_status_reports_a_running_cluster_its_kubeconfig_and_kubectl(
    local_cluster: LocalCluster,
) -> None:
    status = local_cluster.status()
    assert status["state"] == "running" and status["node_ready"]
    assert all(c["healthy"] for c in status["components"].values())
    assert Path(status["kubeconfig"]).is_file() and status["server"].startswith(
        "https://127.0.0.1:"
    )
    node = json.loads(local_cluster.kubectl("get", "node", "modelyard", "-o", "json"))
    assert node["status"]["nodeInfo"]["kubeletVersion"] == f"v{status['kubernetes_version']}"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")


def test_pod_security_restricted_is_enforced_and_a_locked_down_pod_runs(
    local_cluster: LocalCluster, base_image: str
) -> None:
    """The real API server refuses a pod that would run as root in a `restricted` namespace; a
    compliant pod runs as its user on a read-only root filesystem."""
    from modelyard.infra.local_cluster import images
    from modelyard.infra.local_cluster.binaries import Binaries
    from modelyard.infra.local_cluster.settings import ClusterPaths

    images.load_from_docker(
        ClusterPaths(local_cluster.state / "cluster"), Binaries.find(), base_image
    )
    local_cluster.kubectl("apply", "-f", "-", stdin=LOCKED_DOWN)
    refused = local_cluster.kubectl("apply", "-f", "-", stdin=AS_ROOT, check=False)
    assert 'violates PodSecurity "restricted:latest"' in refused

    def logged() -> bool:
        return "Read-only file system" in local_cluster.kubectl(
            "logs", "-n", "probe", "locked-down", check=False
        )

    _wait_for(logged)
    assert local_cluster.kubectl("logs", "-n", "probe", "locked-down").splitlines()[0] == "10001"


def test_down_leaves_nothing_running_and_up_brings_the_workloads_back(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    pids = [c["pid"] for c in local_cluster.status()["components"].values()]
    # One cluster per machine: from another project's folder (a checkout beside the demo's),
    # status reports it, with a kubeconfig that exists, and down stops it.
    elsewhere = LocalCluster(tmp_path / "another-checkout")
    seen = elsewhere.status()
    assert seen["state"] == "running" and Path(seen["kubeconfig"]).is_file()
    assert seen["kubeconfig"] == local_cluster.status()["kubeconfig"]
    stopped = elsewhere.cli("down", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["state"] == "stopped"
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z"
    shims = subprocess.run(["pgrep", "-f", f"containerd-shim.*{RUN_DIR}"], capture_output=True)
    assert shims.stdout == b"", "a pod's container outlived the cluster"
    assert subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert "KUBE-" not in rules and "CNI-" not in rules and BRIDGE not in rules
    mounts = Path("/proc/self/mounts").read_text()
    assert str(local_cluster.state.resolve()) not in mounts and str(RUN_DIR) not in mounts

    restarted = local_cluster.cli("up", "--json")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert json.loads(restarted.stdout)["state"] == "running"
    # etcd kept what was deployed: the kubelet starts the pod again.
    _wait_for(
        lambda: "Running" in local_cluster.kubectl("get", "pod", "-n", "probe", "locked-down")
    )
