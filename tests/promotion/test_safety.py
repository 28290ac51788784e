"""Safety under concurrency, kill -9 and a failing MLflow, for real: separate `modelyard`
processes against a real `mlflow server`, checking the alias, the records and the file agree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow import MlflowClient
from modelyard.contracts.environment import load_environment
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.local_mlflow import free_port
from modelyard.pipelines.promotion import faults, history, promote
from modelyard.pipelines.promotion.records import COMMITTED, PENDING, RecordStore
from modelyard.pipelines.promotion.registry import Registry
from promotion_helpers import Register

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODELYARD = str(Path(sys.executable).with_name("modelyard"))
SETTLE = "8"


def start(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [MODELYARD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def alias(tracking: str, model: str, env: str) -> int | None:
    found = MlflowClient(tracking).get_registered_model(model).aliases
    return int(found[env]) if env in found else None


def file_version(folder: Path, env: str) -> int | None:
    return load_environment(env).serving.desired_version if folder else None


def records(tracking: str, model: str, status: str) -> list[int]:
    store = RecordStore(Registry(tracking))
    return [
        int(run.data.tags["modelyard.promotion.to_version"])
        for run in store.runs(model, "staging", status)
    ]


def test_two_promotions_at_the_same_moment_one_wins(
    model: str, register: Register, environments: Path, tracking: str
) -> None:
    first, second = register(0.90), register(0.91)
    # A long lease settle keeps each critical section open while the other process starts
    # (process start-up time varies by seconds on a loaded machine).
    racers = [
        start(
            "promote",
            model,
            "--to",
            "staging",
            "--version",
            str(v),
            MODELYARD_LEASE_SETTLE_SECONDS=SETTLE,
        )
        for v in (first, second)
    ]
    results = [(p.wait(timeout=180), *p.communicate()) for p in racers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert "another promotion or rollback to staging" in loser and "Traceback" not in loser
    winner = alias(tracking, model, "staging")
    assert winner in (first, second)
    assert file_version(environments, "staging") == winner
    assert [r["to_version"] for r in history(model, "staging")] == [winner]


def test_two_machines_are_serialised_by_the_registry_lease(
    model: str, register: Register, environments: Path, tracking: str, tmp_path: Path
) -> None:
    """Two checkouts with their own files and state (two machines): no shared OS lock."""
    register(0.90)
    other = tmp_path / "machine-b"
    shutil.copytree(environments, other / "environments")
    machines = [
        {
            "MODELYARD_ENVIRONMENTS_DIR": str(environments),
            "MODELYARD_STATE_DIR": str(tmp_path / "a"),
        },
        {
            "MODELYARD_ENVIRONMENTS_DIR": str(other / "environments"),
            "MODELYARD_STATE_DIR": str(other / "s"),
        },
    ]
    racers = [
        start("promote", model, "--to", "staging", MODELYARD_LEASE_SETTLE_SECONDS=SETTLE, **machine)
        for machine in machines
    ]
    results = [(p.wait(timeout=180), *p.communicate()) for p in racers]
    assert sorted(code for code, _, _ in results) == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert "registry lease" in loser and "Traceback" not in loser
    assert alias(tracking, model, "staging") == 1
    assert len(history(model, "staging")) == 1


@pytest.mark.parametrize("step", [s for s in faults.STEPS if s not in faults.GIT_STEPS])
def test_kill_9_at_each_step_is_detected_and_repaired(
    step: str, model: str, register: Register, environments: Path, tracking: str
) -> None:
    v1, v2 = register(0.90), register(0.92)
    assert promote(model, "staging", version=str(v1)).promoted
    killed = start(
        "promote", model, "--to", "staging", "--version", str(v2), MODELYARD_FAULT_AT=step
    )
    assert killed.wait(timeout=180) == -9, killed.communicate()
    staging_file = environments / "Pulumi.staging.yaml"
    # The partial state each step leaves behind.
    moved = step != "after-record"
    assert alias(tracking, model, "staging") == (v2 if moved else v1)
    assert file_version(environments, "staging") == (v2 if step == "after-file" else v1)
    assert records(tracking, model, PENDING) == [v2]
    temps = list(staging_file.parent.glob(".Pulumi.staging.yaml.*.tmp"))
    assert bool(temps) == (step == "during-file-write")

    v3 = register(0.95)
    outcome = promote(model, "staging", version=str(v3))
    assert outcome.promoted
    said = " ".join(outcome.notes)
    assert "took over a stale promotion lease on staging" in said  # the killed one's lease
    if moved:
        assert f"v{v2}" in said and "completed it" in said
    else:
        assert "nothing had taken effect" in said and "aborted" in said
    if temps:
        assert "half-written copy" in said
    assert alias(tracking, model, "staging") == v3 == file_version(environments, "staging")
    assert records(tracking, model, PENDING) == []
    served = [r["to_version"] for r in history(model, "staging")]
    assert served == ([v1, v2, v3] if moved else [v1, v3])
    assert records(tracking, model, COMMITTED) == served
    assert not list(staging_file.parent.glob(".*.tmp"))


class _Proxy(BaseHTTPRequestHandler):
    """Forwards to the real server; fails what `failing` matches with HTTP 500."""

    upstream = ""
    failing = "*"  # "METHOD /path" to fail only that request, "*" to fail every request

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        path = self.path.split("?")[0]
        if self.failing in ("*", f"{self.command} {path}"):
            self._reply(500, b'{"error_code": "INTERNAL_ERROR", "message": "injected"}')
            return
        request = urllib.request.Request(
            self.upstream + self.path, data=body, method=self.command,
            headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                self._reply(reply.status, reply.read(), reply.headers.get("Content-Type"))
        except urllib.error.HTTPError as exc:
            self._reply(exc.code, exc.read(), exc.headers.get("Content-Type"))

    def _reply(self, code: int, body: bytes, kind: str | None = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind or "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(tracking: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Proxy]]:
    handler = type("Handler", (_Proxy,), {"upstream": tracking})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{server.server_port}")
    yield handler
    server.shutdown()
    server.server_close()


def test_mlflow_down_or_failing_changes_nothing(
    model: str,
    register: Register,
    environments: Path,
    tracking: str,
    proxy: type[_Proxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register(0.9)
    before = {p.name: p.read_text() for p in environments.glob("*.yaml")}

    proxy.failing = "*"
    with pytest.raises(PipelineError, match=r"unreachable or failing .*nothing was changed"):
        promote(model, "staging")

    proxy.failing = "POST /api/2.0/mlflow/registered-models/alias"  # fails mid-way
    with pytest.raises(PipelineError, match=r"move alias.*aborted and nothing changed"):
        promote(model, "staging")

    with monkeypatch.context() as patched:
        patched.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody there
        with pytest.raises(PipelineError, match="unreachable"):
            promote(model, "staging")

    assert alias(tracking, model, "staging") is None
    assert {p.name: p.read_text() for p in environments.glob("*.yaml")} == before
    assert history(model) == [] and records(tracking, model, PENDING) == []
    store = RecordStore(Registry(tracking))
    aborted = store.runs(model, "staging", "aborted")
    assert len(aborted) == 1 and "alias could not be moved" in json.dumps(
        dict(aborted[0].data.tags)
    )


def test_losing_the_databases_race_for_the_first_lease_is_told_as_a_lost_lease(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two first writers at the same instant: MLflow's store keeps one row and refuses the
    other with a UNIQUE constraint error. The refused one lost the lease; it must say so."""
    from mlflow.exceptions import MlflowException
    from modelyard.contracts.tags import lease_tag
    from modelyard.pipelines.errors import PipelineError
    from modelyard.pipelines.promotion import locking
    from modelyard.pipelines.promotion.registry import Registry

    other = {"token": "theirs", "host": "other", "pid": 1, "action": "promote", "since": 0.0,
             "expires": 4e9}  # fmt: skip
    tags: dict[str, str] = {}

    class RacingClient:
        def set_registered_model_tag(self, model: str, key: str, value: str) -> None:
            tags[key] = json.dumps(other)  # the other writer's row lands first
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed")

    registry = Registry(f"sqlite:///{tmp_path / 'unused.db'}")
    monkeypatch.setattr(registry, "client", RacingClient())
    monkeypatch.setattr(registry, "require_model", lambda model: tags)
    monkeypatch.setattr(locking, "SETTLE_SECONDS", 0.0)
    lease = locking.registry_lease(registry, "churn", "production", "promote")
    with pytest.raises(PipelineError, match="won the registry lease") as lost, lease:
        pass
    assert "pid 1 on other" in str(lost.value)
    assert lease_tag("production") in tags
