"""A model served on the cluster's workers under load from inside the cluster, and the faults a
platform engineer fears, each measured as requests sent / failed / seconds until the last failure.

The Deployment is shaped as the kit's ModelServing renders it (probes, preStop, spread across
nodes, short tolerations of a lost node, a PodDisruptionBudget, the image pulled by digest from
a registry with TLS and a password, through an image pull secret), applied with kubectl: the
faults are about the nodes, and the production path's tests deploy the real stacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.contracts.serving_options import SERVING_PORT
from modelyard.infra.components.model_serving import (
    NODE_LOSS_TAINTS,
    NODE_LOSS_TOLERATION_SECONDS,
    PRE_STOP_SECONDS,
    SERVING_UID,
)
from modelyard.pipelines.cluster_load import LoadPod, start_load

from tests.cluster.local_cluster import LocalCluster

NAMESPACE = "faults"
NAMESPACE_MANIFEST = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
    "name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}  # fmt: skip
SERVICE = "churn"
PULL_SECRET = "registry-pull"


@dataclass(frozen=True)
class Fault:
    name: str
    sent: int
    failed: int
    recovered_after: float  # seconds from the fault to the last failed request (0: none failed)
    failures: list[str]

    def line(self) -> str:
        return (f"{self.name:<36} sent {self.sent:>6}  failed {self.failed:>4}  "
                f"last failure {self.recovered_after:>5.1f}s after the fault")  # fmt: skip


def manifests(image: str, replicas: int) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": SERVICE}
    security = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": SERVING_UID,
                                "runAsGroup": SERVING_UID,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": labels},
            }],
            "containers": [{
                "name": "server", "image": image, "imagePullPolicy": "Always",
                "ports": [{"name": "http", "containerPort": SERVING_PORT}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": "http"},
                                   "periodSeconds": 5, "failureThreshold": 3},
                "startupProbe": {"httpGet": {"path": "/version", "port": "http"},
                                 "periodSeconds": 2, "failureThreshold": 150},
                "livenessProbe": {"httpGet": {"path": "/version", "port": "http"},
                                  "periodSeconds": 10},
                "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
                "securityContext": security,
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "imagePullSecrets": [{"name": PULL_SECRET}],
            "tolerations": [
                {"key": key, "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": NODE_LOSS_TOLERATION_SECONDS}
                for key in NODE_LOSS_TAINTS
            ],
        },
    }  # fmt: skip
    return [
        NAMESPACE_MANIFEST,
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": SERVICE, "namespace": NAMESPACE},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": pod,
                  "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": SERVICE, "namespace": NAMESPACE},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": {"name": SERVICE, "namespace": NAMESPACE},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}},
    ]  # fmt: skip


@dataclass(frozen=True)
class Served:
    image: str
    rows: list[dict[str, Any]]  # what the load pods send


def serve(cluster: LocalCluster, work: Path, registry: dict[str, Any], replicas: int = 2) -> Served:
    """The serving image with a model baked in (as the package stage bakes it), pushed to
    `registry` (tests/registry.py, published where the nodes reach it), which every node's
    containerd is made to trust by the kubernetes_node role, and served by `replicas` pods that
    pull it by digest."""
    from modelyard.infra.local_cluster.registry_trust import trust_registry
    from modelyard.infra.local_cluster.settings import ClusterPaths
    from modelyard.ml.data.sample import generate_churn
    from modelyard.ml.serving.image import build_context

    from tests.serving.helpers import save_local, train_booster

    address = registry["address"]
    ca_pem = registry["files"][1]
    trust_registry(address, ca_pem, ClusterPaths(cluster.state / "cluster"), say=lambda _: None)
    tag = f"{address}/modelyard-test/serving-on-nodes:1"
    model = save_local(*train_booster(rounds=30, seed=0), work / "model")
    context = build_context(work / "context", model,
                            {"name": "churn", "version": "7", "run_id": "run-of-v7"})  # fmt: skip
    subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True,
                   capture_output=True)  # fmt: skip
    image = f"{tag.rsplit(':', 1)[0]}@{_push(tag, registry, work / 'docker-config')}"
    subprocess.run(["docker", "rmi", tag], check=True, capture_output=True)  # pods must pull it
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(NAMESPACE_MANIFEST))
    cluster.kubectl("-n", NAMESPACE, "create", "secret", "docker-registry", PULL_SECRET,
                    f"--docker-server={address}", f"--docker-username={registry['username']}",
                    f"--docker-password={registry['password']}")  # fmt: skip
    deploy(cluster, image, replicas)
    rows = generate_churn(20, seed=3).drop(columns=["churned"]).to_json(orient="records")
    return Served(image, json.loads(rows))


def _push(tag: str, registry: dict[str, Any], client: Path) -> str:
    """Push with a login of its own (never ~/.docker); the digest the registry answered."""
    client.mkdir(mode=0o700)
    env = {**os.environ, "DOCKER_CONFIG": str(client)}
    subprocess.run(["docker", "login", registry["address"], "--username", registry["username"],
                    "--password-stdin"], input=registry["password"].encode(), env=env,
                   check=True, capture_output=True)  # fmt: skip
    pushed = subprocess.run(["docker", "push", tag], env=env, check=True, capture_output=True,
                            text=True).stdout  # fmt: skip
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
    assert digest, pushed
    return digest[1]


def deploy(cluster: LocalCluster, image: str, replicas: int = 2) -> None:
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests(image, replicas)}),
    )
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{SERVICE}",
                    "--timeout=300s")  # fmt: skip


def nodes_serving(cluster: LocalCluster) -> list[str]:
    pods = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "pods", "-o", "json",
                                      "-l", f"app.kubernetes.io/name={SERVICE}"))["items"]  # fmt: skip
    return sorted(p["spec"].get("nodeName", "") for p in pods
                  if p["status"].get("phase") == "Running"
                  and "deletionTimestamp" not in p["metadata"])  # fmt: skip


def under_load(
    cluster: LocalCluster, image: str, rows: list[dict[str, Any]], name: str,
    fault: Any, settle: float, load_node: str,
) -> Fault:  # fmt: skip
    """Start the load, apply `fault` (a callable), keep the load `settle` seconds after it returns,
    and count; the time of the last failure is read from the pod's per-second summaries.
    The load pod runs on `load_node`, which the fault leaves alone. KUBECONFIG names the cluster
    (the load pod is started with kubectl)."""
    load: LoadPod = start_load(NAMESPACE, SERVICE, image, rows, node=load_node)
    try:
        time.sleep(3)
        before = load.summary()
        started = time.monotonic()
        fault()
        deadline = time.monotonic() + settle
        failed, last_failure = before.get("failed", 0), 0.0
        while time.monotonic() < deadline:
            seen = load.summary().get("failed", 0)
            if seen > failed:
                failed, last_failure = seen, time.monotonic() - started
            time.sleep(1)
    finally:
        after = load.stop()
    return Fault(name, after["sent"] - before.get("sent", 0),
                 after["failed"] - before.get("failed", 0), last_failure,
                 after.get("failures", []))  # fmt: skip


def drain_and_roll_out(cluster: LocalCluster, node: str) -> None:
    """Drain `node`, then roll out a new version while it is still cordoned: it completes on the
    nodes left."""
    cluster.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                    "--timeout=300s")  # fmt: skip
    cluster.kubectl("-n", NAMESPACE, "rollout", "restart", f"deployment/{SERVICE}")
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{SERVICE}",
                    "--timeout=300s")  # fmt: skip


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True, timeout=300)


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(1)


def rebalance(cluster: LocalCluster) -> None:
    """One replica per worker again. Kubernetes spreads pods only when it places them: after a
    drain both stay on the other worker, so a pod of the crowded one is deleted and its
    replacement is placed where the spread constraint prefers."""
    for _attempt in range(4):
        serving = nodes_serving(cluster)
        if serving == ["w1", "w2"]:
            return
        crowded = max(set(serving), key=serving.count)
        pods = json.loads(cluster.kubectl("-n", "faults", "get", "pods", "-o", "json",
                                          "--field-selector", f"spec.nodeName={crowded}"))  # fmt: skip
        cluster.kubectl("-n", "faults", "delete", "pod", pods["items"][0]["metadata"]["name"])
        cluster.kubectl("-n", "faults", "rollout", "status", "deployment/churn", "--timeout=300s")
        until(lambda: len(nodes_serving(cluster)) == 2, 120, "two replicas running")
    raise AssertionError(f"replicas not spread over both workers: {nodes_serving(cluster)}")
