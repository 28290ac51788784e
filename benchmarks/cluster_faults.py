"""Faults on the local cluster (issue #26): a model served by two replicas on two
workers, under load from a pod inside the cluster, while a worker is drained, a worker is killed
(its host stopped hard) and the control plane's host is restarted. Prints requests sent / failed /
seconds to the last failure for each, and the time `cluster up --nodes 3` took. In a state folder
of its own; needs Docker and `make cluster-tools`, and no other cluster running."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from modelyard.infra.components.registry import IMAGE_CONTEXT
from modelyard.infra.local_cluster.binaries import Binaries, ClusterToolsMissing
from modelyard.infra.local_cluster.nodes import NodeCluster
from modelyard.infra.local_cluster.settings import ClusterPaths

from tests.cluster.local_cluster import LocalCluster
from tests.cluster.serving import (
    docker,
    drain_and_roll_out,
    nodes_serving,
    rebalance,
    serve,
    under_load,
)
from tests.docker_helpers import build_image
from tests.registry import running_registry

NODE_MONITOR_GRACE = 50.0  # kube-controller-manager's default node-monitor-grace-period


def main() -> None:
    try:
        Binaries.find()
    except ClusterToolsMissing as exc:
        print(f"skipped: {exc}")
        return
    stack = ExitStack()  # the registry, stopped before the nodes are removed
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-faults-") as tmp:
        cluster = LocalCluster(Path(tmp) / "state")
        started = time.perf_counter()
        up = cluster.cli("up", "--nodes", "3", timeout=1500)
        made = time.perf_counter() - started
        if up.returncode != 0:
            print(f"cluster up --nodes 3 failed:\n{(up.stdout + up.stderr)[-3000:]}")
            cluster.cli("down", "--destroy")
            return
        registry_image = "modelyard-bench/registry:faults"
        try:
            build_image(registry_image, IMAGE_CONTEXT)
            nodes = NodeCluster.load(ClusterPaths(cluster.state / "cluster"))
            assert nodes is not None
            registry = stack.enter_context(running_registry(registry_image, nodes.host_address))
            served = serve(cluster, Path(tmp), registry)
            os.environ["KUBECONFIG"] = cluster.status()["kubeconfig"]
            print(f"cluster up --nodes 3 (made by Ansible): {made:.1f}s; serving on "
                  f"{', '.join(nodes_serving(cluster))}")  # fmt: skip
            print("fault (under load from inside the cluster)   goal: 0 failed; a killed worker "
                  f"recovers within the {NODE_MONITOR_GRACE:.0f}s node-monitor grace period")  # fmt: skip
            print(
                under_load(
                    cluster,
                    served.image,
                    served.rows,
                    "drain w1, then a rollout",
                    lambda: drain_and_roll_out(cluster, "w1"),
                    10,
                    "cp",
                ).line()
            )
            cluster.kubectl("uncordon", "w1")
            rebalance(cluster)
            kill = under_load(cluster, served.image, served.rows, "kill w2 (docker kill)",
                              lambda: docker("kill", "modelyard-node-w2"),
                              NODE_MONITOR_GRACE + 40, "cp")  # fmt: skip
            print(kill.line())
            docker("start", "modelyard-node-w2")

            def restart() -> None:
                docker("restart", "modelyard-node-cp")
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline and cluster.status()["state"] != "running":
                    time.sleep(1)

            print(
                under_load(
                    cluster, served.image, served.rows, "restart cp", restart, 5, "w1"
                ).line()
            )
        finally:
            stack.close()
            cluster.cli("down", "--destroy")
            subprocess.run(["docker", "rmi", "-f", registry_image], capture_output=True,
                           check=False)  # fmt: skip
