"""A version bump, as a platform engineer makes one: the session's nodes were made on the release
before the pinned one (`cluster up --kubernetes-version`); `cluster up` on the pinned release
upgrades them one node at a time with the kubernetes_node role (kubeadm upgrade, drain, new
kubelet, uncordon) while a model serves two replicas under load from outside the cluster (every
node is drained in turn, so a pod inside would be drained too). Runs first: every later test of
this folder runs on the upgraded cluster."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from modelyard.infra.pinned_tools import pinned_versions

from tests.cluster.local_cluster import LocalCluster
from tests.cluster.serving import NAMESPACE, SERVICE, Served, rebalance, until

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.cluster, pytest.mark.timeout(1800)]

PINNED = pinned_versions()["KUBERNETES_VERSION"]
PREVIOUS = pinned_versions()["KUBERNETES_PREVIOUS_VERSION"]


class HostLoad:
    """Scoring requests from this machine to the Service's NodePort on the control plane's
    address (its kube-proxy forwards them to the pods on the workers), counted."""

    def __init__(self, address: str, port: int, rows: list[dict[str, Any]]) -> None:
        self.address, self.port = address, port
        self.bodies = [json.dumps({"dataframe_records": [row]}).encode() for row in rows]
        self.sent, self.failures = 0, Counter[str]()
        self.failed_at: list[str] = []  # when each failure came (seconds from the start), and why
        self.stopping = threading.Event()

    def answers(self) -> bool:
        connection = http.client.HTTPConnection(self.address, self.port, timeout=10)
        try:
            connection.request("POST", "/invocations", self.bodies[0],
                               {"Content-Type": "application/json"})  # fmt: skip
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()

    def run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        started = time.monotonic()
        while not self.stopping.is_set():
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(self.address, self.port, timeout=10)
                connection.request("POST", "/invocations", self.bodies[self.sent % len(self.bodies)],
                                   {"Content-Type": "application/json"})  # fmt: skip
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    self.failures[str(response.status)] += 1
                    self.failed_at.append(f"{time.monotonic() - started:.1f}s {response.status}")
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                self.failures[type(exc).__name__] += 1
                self.failed_at.append(f"{time.monotonic() - started:.1f}s {type(exc).__name__}")
                if connection is not None:
                    connection.close()
                connection = None
            self.sent += 1
            time.sleep(0.02)


@contextmanager
def running(target: Any) -> Iterator[None]:
    thread = threading.Thread(target=target.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        target.stopping.set()
        thread.join(timeout=30)


class Cordons:
    """The nodes marked unschedulable, sampled every second through the API (which restarts
    during the control plane's upgrade: samples then are missing)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.samples: list[frozenset[str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            listed = self.cluster.kubectl("get", "nodes", "-o", "json", check=False)
            try:
                nodes = json.loads(listed)["items"]
            except ValueError:
                nodes = None
            if nodes is not None:
                self.samples.append(frozenset(
                    n["metadata"]["name"] for n in nodes if n["spec"].get("unschedulable")))  # fmt: skip
            time.sleep(1)


def _kubelet_versions(cluster: LocalCluster) -> dict[str, str]:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    return {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes}


def test_a_version_bump_upgrades_the_nodes_one_at_a_time_while_a_model_serves(
    local_cluster: LocalCluster, served: Served
) -> None:
    assert local_cluster.status()["kubernetes_version"] == PREVIOUS
    assert set(_kubelet_versions(local_cluster).values()) == {f"v{PREVIOUS}"}
    exposed = json.loads(local_cluster.kubectl("apply", "-o", "json", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{SERVICE}-outside", "namespace": NAMESPACE},
        "spec": {"type": "NodePort", "selector": {"app.kubernetes.io/name": SERVICE},
                 "ports": [{"port": 80, "targetPort": "http"}]},
    })))  # fmt: skip
    control_plane = local_cluster.status()["nodes"][0]
    load = HostLoad(control_plane["address"], exposed["spec"]["ports"][0]["nodePort"], served.rows)
    until(load.answers, 60, "the new NodePort answering (kube-proxy programs it)")
    cordons = Cordons(local_cluster)
    started = time.monotonic()
    with running(load), running(cordons):
        time.sleep(3)
        upgraded = local_cluster.cli("up", timeout=1500)
        time.sleep(3)
    print(f"upgrade {PREVIOUS} -> {PINNED}: {time.monotonic() - started:.0f}s, "
          f"{load.sent} requests, failed {dict(load.failures)}")  # fmt: skip
    said = upgraded.stdout + upgraded.stderr
    assert upgraded.returncode == 0, said[-6000:]
    assert f"upgrading the nodes from Kubernetes {PREVIOUS} to {PINNED}" in said

    assert load.sent > 100 and not load.failures, load.failed_at
    # Node by node: never two cordoned at once, each drained in turn, none left cordoned.
    assert max(len(sample) for sample in cordons.samples) == 1, cordons.samples
    drained = [next(iter(s)) for s in cordons.samples if s]
    assert list(dict.fromkeys(drained)) == ["cp", "w1", "w2"], drained
    assert cordons.samples[-1] == frozenset()

    assert set(_kubelet_versions(local_cluster).values()) == {f"v{PINNED}"}
    server = json.loads(local_cluster.kubectl("version", "-o", "json"))["serverVersion"]
    assert server["gitVersion"] == f"v{PINNED}"
    proxies = json.loads(local_cluster.kubectl("-n", "kube-system", "get", "daemonset",
                                               "kube-proxy", "-o", "json"))  # fmt: skip
    assert proxies["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":v{PINNED}")
    assert local_cluster.status()["kubernetes_version"] == PINNED

    # Up to date: the next `up` has nothing to upgrade.
    again = local_cluster.cli("up")
    assert again.returncode == 0 and "upgrading" not in again.stdout + again.stderr, again.stderr
    # kubeadm cannot go back: refused before anything changes.
    back = local_cluster.cli("up", "--kubernetes-version", PREVIOUS)
    assert back.returncode == 2
    (message,) = back.stderr.strip().splitlines()
    assert f"runs Kubernetes {PINNED}, newer than {PREVIOUS}" in message
    assert set(_kubelet_versions(local_cluster).values()) == {f"v{PINNED}"}
    unknown = local_cluster.cli("up", "--kubernetes-version", "1.33.0")
    assert unknown.returncode == 2 and f"builds {PINNED} and {PREVIOUS}" in unknown.stderr

    local_cluster.kubectl("-n", NAMESPACE, "delete", "service", f"{SERVICE}-outside")
    rebalance(local_cluster)  # one replica per worker again, as the later tests expect
