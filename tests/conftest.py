"""Fixtures every test folder shares: a real `mlflow server`, the Docker engine and registry."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelyard.infra.local_cluster.binaries import Binaries, ClusterToolsMissing
from modelyard.pipelines.docker_cli import engine_problem
from modelyard.pipelines.local_mlflow import MlflowServer, start_mlflow_server
from modelyard.pipelines.notification_sink import NotificationSink

from tests.helpers import without_auth, without_git

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# `make test` runs two pytest-xdist workers with `--dist loadgroup`. Each folder is a unit (its
# session fixtures set up once) that one worker runs in order: tests/cluster, which shares the one
# local cluster per machine, on one worker while the other takes the rest. The cluster tests
# mostly wait on Kubernetes, so the two overlap well.


def _unit(item: pytest.Item) -> str:
    return item.path.resolve().relative_to(TESTS).parts[0]  # a project may link tests/ in


def pytest_itemcollected(item: pytest.Item) -> None:
    """Each test's xdist unit, named as it is collected (before xdist reads it into its id)."""
    item.add_marker(pytest.mark.xdist_group(_unit(item)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cluster unit first: it is the longest."""
    items.sort(key=lambda item: _unit(item) != "cluster")


SLOWEST_FILES = 30
_SECONDS_PER_FILE: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _SECONDS_PER_FILE[report.nodeid.split("::", 1)[0]] += report.duration


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Time per test file (setup, call and teardown), so a file's growth shows in every run."""
    slowest = sorted(_SECONDS_PER_FILE.items(), key=lambda entry: -entry[1])[:SLOWEST_FILES]
    if slowest:
        terminalreporter.section(f"seconds per test file (the {len(slowest)} slowest)")
    for path, seconds in slowest:
        terminalreporter.write_line(f"{seconds:8.1f}s  {path}")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real `mlflow server` process on SQLite for the whole run."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


@pytest.fixture
def tracking(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point MLflow (and the kit, which follows MLFLOW_TRACKING_URI) at the test server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", mlflow_server.url)
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    mlflow.set_registry_uri(mlflow_server.url)
    return mlflow_server.url


@pytest.fixture
def environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of environments/ the test may edit (the kit reads MODELYARD_ENVIRONMENTS_DIR)."""
    folder = tmp_path / "environments"
    shutil.copytree(REPO / "environments", folder)
    without_git(folder)  # no repository around the copy: tests/promotion/test_git_release.py
    without_auth(folder)  # open servers, as the embedded default's: tests/serving/test_auth.py
    monkeypatch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Docker-backed tests skip with a reason on a machine without Docker, and fail in CI."""
    problem = engine_problem()
    if problem is None:
        return
    if os.environ.get("MODELYARD_REQUIRE_DOCKER") == "1":
        pytest.fail(f"MODELYARD_REQUIRE_DOCKER=1 but {problem}")
    pytest.skip(f"Docker-backed test: {problem}")


@pytest.fixture(scope="session")
def engine() -> None:
    """Tests of the real Pulumi engine skip with the reason without the built CLI, and fail in CI."""
    from modelyard.infra import automation

    try:
        automation.pulumi_command()
    except automation.PulumiCliMissing as exc:
        if os.environ.get("MODELYARD_REQUIRE_PULUMI") == "1":
            pytest.fail(f"MODELYARD_REQUIRE_PULUMI=1 but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def cluster_tools() -> Binaries:
    """The built cluster programs: tests skip with the reason without them, and fail in CI."""
    try:
        return Binaries.find()
    except ClusterToolsMissing as exc:
        if os.environ.get("MODELYARD_REQUIRE_CLUSTER") == "1":
            pytest.fail(f"MODELYARD_REQUIRE_CLUSTER=1 but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def base_image(docker_engine: None) -> str:
    """debian:bookworm-slim, built from Debian's packages once (no registry can be pulled)."""
    subprocess.run([str(REPO / "infra/images/base/build-base-image.sh")], check=True)
    return "debian:bookworm-slim"


@pytest.fixture(scope="session")
def registry_image(base_image: str) -> Iterator[str]:
    """The platform's registry image (infra/images/registry), built once per run."""
    from modelyard.infra.components.registry import IMAGE_CONTEXT

    from tests.docker_helpers import RUN_ID, build_image, docker

    tag = f"modelyard-test/registry:{RUN_ID}"
    build_image(tag, IMAGE_CONTEXT)
    yield tag
    docker("rmi", "-f", tag, check=False)


@pytest.fixture(scope="session")
def running_registry(registry_image: str) -> Iterator[dict[str, Any]]:
    """One registry per run, with auth and TLS as the Registry component sets them up."""
    from tests.registry import running_registry as start

    with start(registry_image) as handle:
        yield handle


@pytest.fixture
def webhook() -> Iterator[NotificationSink]:
    """A real local HTTP endpoint recording the notifications posted to it."""
    receiver = NotificationSink()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def prometheus_tools() -> dict[str, str]:
    """Debian's Prometheus, promtool and node-exporter: skip with the reason, fail in CI."""
    from tests.monitoring.prometheus_stack import require_tools

    return require_tools()
