"""One local Kubernetes for the session, started and stopped through `modelyard cluster` as a user
types it, in a state folder of the session's own."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from modelyard.infra.local_cluster.binaries import Binaries

from tests.helpers import MODELYARD

if TYPE_CHECKING:
    from tests.cluster.project import Project


@dataclass(frozen=True)
class LocalCluster:
    state: Path  # MODELYARD_STATE_DIR of the commands that run it

    def variables(self) -> dict[str, str]:
        return {**os.environ, "MODELYARD_STATE_DIR": str(self.state)}

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MODELYARD, "cluster", *args], env=self.variables(), capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        done = self.cli("status", "--json")
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        status = self.status()
        done = subprocess.run(
            [status["kubectl"], f"--kubeconfig={status['kubeconfig']}", *args], input=stdin,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr


def destroy_demo_platform(stack: str, state: Path, variables: dict[str, str]) -> None:
    """Remove the demo's platform stack (its containers and volumes) that `modelyard demo
    --cluster` made in STATE/demo-cluster; the cluster's namespaces go with the cluster."""
    from modelyard.pipelines.cluster_demo import PASSPHRASE

    folder = state / "demo-cluster"
    subprocess.run(
        [MODELYARD, "infra", "destroy", stack], cwd=folder / "project", capture_output=True,
        check=False, env={**variables, "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
                          "PULUMI_BACKEND_URL": (folder / "pulumi-state").as_uri()},
    )  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The demo's test stops the session's cluster (test_the_demo.py): it runs right after the
    other tests of this folder, whatever their files are named. (The hook sees the whole
    session's items: the others keep their places.)"""
    here = Path(__file__).parent
    demo = [item for item in items if item.path.name == "test_the_demo.py"]
    ours = [i for i, item in enumerate(items) if item.path.parent == here and item not in demo]
    if not demo or not ours:
        return
    rest = [item for item in items if item not in demo]
    last = rest.index(items[ours[-1]])
    items[:] = rest[: last + 1] + demo + rest[last + 1 :]


@pytest.fixture(scope="package")
def local_cluster(
    cluster_tools: Binaries, docker_engine: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    # Where `modelyard demo --cluster` keeps its cluster under a state folder, so the demo's test
    # (tests/cluster/test_the_demo.py) adopts this one: one cluster runs per machine. Stopped
    # after this folder's tests, before the multi-node cluster's (tests/nodes) start.
    cluster = LocalCluster(tmp_path_factory.mktemp("state") / "demo-cluster")
    started = cluster.cli("up")
    assert started.returncode == 0, started.stdout + started.stderr
    yield cluster
    cluster.cli("down")


@pytest.fixture(scope="package")
def project(
    local_cluster: LocalCluster, engine: None, base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Project]:  # fmt: skip
    """The production path's project, provisioned (platform stack up, credentials stored)."""
    from tests.cluster.project import SERVED, Project, provisioned

    created = Project(tmp_path_factory.mktemp("production-path"), local_cluster)
    created.create()
    try:
        yield provisioned(created, local_cluster)
    finally:
        for env in (*SERVED, created.platform):
            created.cli("infra", "destroy", env)


@pytest.fixture(scope="package")
def pipeline_run(project: Project) -> subprocess.CompletedProcess[str]:
    """`modelyard pipeline run` from data to production pods, once."""
    from modelyard.ml.data.sample import generate_churn

    data = project.folder / "churn.csv"
    generate_churn(4000, seed=7).to_csv(data, index=False)
    return project.cli("pipeline", "run", project.platform, "--data", str(data))
