"""Faults while a model serves on three nodes, under load from a pod inside the cluster: a worker
drained, a worker killed, the control plane's host restarted. Each prints its figures (requests
sent / failed / seconds to the last failure); `make bench` prints them too."""

from __future__ import annotations

import pytest
from modelyard.infra.components.model_serving import NODE_LOSS_TOLERATION_SECONDS

from tests.cluster.local_cluster import LocalCluster
from tests.cluster.serving import (
    Served,
    docker,
    drain_and_roll_out,
    nodes_serving,
    rebalance,
    under_load,
    until,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.cluster, pytest.mark.timeout(1800)]
# How long a node may stop reporting before Kubernetes takes its pods out of Services
# (kube-controller-manager's node-monitor-grace-period, 1.34's default).
NODE_MONITOR_GRACE = 50.0


def test_a_drained_worker_and_a_rollout_during_the_drain_lose_no_request(
    local_cluster: LocalCluster, served: Served
) -> None:
    assert nodes_serving(local_cluster) == ["w1", "w2"]  # spread: one replica per worker

    try:
        fault = under_load(local_cluster, served.image, served.rows, "drain w1, then a rollout",
                           lambda: drain_and_roll_out(local_cluster, "w1"), settle=10,
                           load_node="cp")  # fmt: skip
    finally:
        local_cluster.kubectl("uncordon", "w1")
    print(fault.line())
    assert fault.sent > 100
    assert fault.failed == 0, fault.failures
    assert nodes_serving(local_cluster) == ["w2", "w2"]  # both replicas moved off w1


def test_a_killed_worker_stops_failing_requests_within_the_grace_period(
    local_cluster: LocalCluster, served: Served
) -> None:
    rebalance(local_cluster)
    victim = "w2"

    def kill() -> None:
        docker("kill", f"modelyard-node-{victim}")

    try:
        fault = under_load(local_cluster, served.image, served.rows, f"kill {victim}", kill,
                           settle=NODE_MONITOR_GRACE + 40, load_node="cp")  # fmt: skip
        # The lost pod is replaced on the worker left once its toleration of the lost node ends.
        until(lambda: nodes_serving(local_cluster) == ["w1", "w1"],
              NODE_LOSS_TOLERATION_SECONDS + 90, "the lost replica replaced on w1")  # fmt: skip
    finally:
        docker("start", f"modelyard-node-{victim}")
    print(fault.line())
    assert fault.sent > 100
    # Requests routed to the dead pod fail until the node is declared NotReady; none after.
    assert fault.recovered_after <= NODE_MONITOR_GRACE + 20, fault
    until(lambda: local_cluster.status()["state"] == "running", 180, f"{victim} back and Ready")


def test_a_restarted_control_plane_leaves_serving_untouched(
    local_cluster: LocalCluster, served: Served
) -> None:
    def restart() -> None:
        docker("restart", "modelyard-node-cp")
        until(lambda: local_cluster.cli("status", "--json").returncode == 0
               and local_cluster.status()["nodes"][0]["ready"], 300, "the API back")  # fmt: skip

    fault = under_load(local_cluster, served.image, served.rows, "restart cp", restart, settle=5,
                       load_node="w1")  # fmt: skip
    print(fault.line())
    assert fault.sent > 100
    assert fault.failed == 0, fault.failures
