"""`modelyard demo --cluster` as a user runs it, twice: the first run goes from data to production
pods spread over the workers and leaves everything running (--keep-serving); the second trains
again, says what production does with the new version, and stops the cluster and the platform.
Runs last among the cluster tests (it adopts the session's cluster, and stops it)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.cluster.local_cluster import LocalCluster, destroy_demo_platform
from tests.docker_helpers import RUN_ID
from tests.helpers import MODELYARD

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine, pytest.mark.cluster]


def test_the_cluster_demo_twice(local_cluster: LocalCluster, engine: None, base_image: str) -> None:
    stack = f"demo-{RUN_ID}"
    # The demo keeps its cluster in STATE/demo-cluster/cluster: the session's cluster is there.
    state = local_cluster.state.parent
    assert local_cluster.state == state / "demo-cluster"
    variables = {**os.environ, "MODELYARD_STATE_DIR": str(state), "MODELYARD_DEMO_STACK": stack}
    variables.pop("PULUMI_BACKEND_URL", None)

    def demo(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MODELYARD, "demo", "--cluster", *flags], env=variables,
                              capture_output=True, text=True, timeout=1800, check=False)  # fmt: skip

    try:
        first = demo("--keep-serving")
        said = first.stdout + first.stderr
        assert first.returncode == 0, said[-5000:]
        assert "3 node(s) ready" in said
        assert "production: pulumi up" in said and "DRIFT caught" in said
        pods = json.loads(local_cluster.kubectl(
            "get", "pods", "-n", "modelyard-production", "-o", "json"))["items"]  # fmt: skip
        assert [p["status"]["phase"] for p in pods] == ["Running", "Running"]
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["w1", "w2"]  # one per worker
        for pod in pods:  # pulled by digest from the platform's registry, as the stack pins it
            image = pod["spec"]["containers"][0]["image"]
            digest = image.rsplit("@", 1)[1]
            assert digest.startswith("sha256:") and not image.startswith("127.0.0.1")
            assert pod["status"]["containerStatuses"][0]["imageID"].endswith(digest)

        second = demo()
        said = second.stdout + second.stderr
        assert second.returncode == 0, said[-5000:]
        # The same data again: production keeps its champion, or takes a better one.
        assert "production keeps its current version" in said or "production: pulumi up" in said
        assert local_cluster.status()["state"] == "stopped"
        running = subprocess.run(["docker", "ps", "--quiet", "--filter", f"name=^modelyard-{stack}-"],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert running == "", "the platform's containers still run after the demo"
    finally:
        destroy_demo_platform(stack, state, variables)
