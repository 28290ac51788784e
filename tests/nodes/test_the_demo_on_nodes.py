"""`modelyard demo --cluster` (`make demo-cluster`) as a user runs it, on the three nodes the
kubernetes_node role made: the platform in Docker, its registry trusted by every node's containerd
through the role, staging and production deployed by `pulumi up`, production's replicas spread over
the workers. The cluster is this folder's, another project's to the demo: it is used and left
running."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.cluster.conftest import LocalCluster, destroy_demo_platform
from tests.docker_helpers import RUN_ID
from tests.helpers import MODELYARD

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine, pytest.mark.cluster,
              pytest.mark.timeout(1800)]  # fmt: skip


def test_the_cluster_demo_runs_on_the_nodes(
    node_cluster: LocalCluster, engine: None, base_image: str, tmp_path: Path
) -> None:
    stack = f"demo-nodes-{RUN_ID}"
    state = tmp_path / "state"
    variables = {**os.environ, "MODELYARD_STATE_DIR": str(state), "MODELYARD_DEMO_STACK": stack}
    variables.pop("PULUMI_BACKEND_URL", None)
    try:
        run = subprocess.run([MODELYARD, "demo", "--cluster"], env=variables, capture_output=True,
                             text=True, timeout=1800, check=False)  # fmt: skip
        said = run.stdout + run.stderr
        assert run.returncode == 0, said[-5000:]
        assert "3 node(s) ready" in said
        assert "production: pulumi up" in said and "DRIFT caught" in said

        pods = json.loads(node_cluster.kubectl(
            "get", "pods", "-n", "modelyard-production", "-o", "json"))["items"]  # fmt: skip
        assert [p["status"]["phase"] for p in pods] == ["Running", "Running"]
        assert sorted(p["spec"]["nodeName"] for p in pods) == ["w1", "w2"]  # one per worker
        for pod in pods:  # pulled by digest from the platform's registry, as the stack pins it
            image = pod["spec"]["containers"][0]["image"]
            digest = image.rsplit("@", 1)[1]
            assert digest.startswith("sha256:") and not image.startswith("127.0.0.1")
            assert pod["status"]["containerStatuses"][0]["imageID"].endswith(digest)
        assert node_cluster.status()["state"] == "running", "the demo stopped another's cluster"
    finally:
        destroy_demo_platform(stack, state, variables)
