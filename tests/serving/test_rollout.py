"""Following an environment's alias and the rollout strategies, against a real MLflow registry."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import mlflow
import pytest
from modelyard.ml.serving.rollout import Limits
from modelyard.ml.serving.source import COMPLETE

from tests.serving.conftest import Trained
from tests.serving.helpers import Load, call, records, register, score

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_starts_not_ready_without_a_promoted_model_then_follows_the_alias(
    tracking: str, server, model_name: str, model_a: Trained
) -> None:  # type: ignore[no-untyped-def]
    handle = server(f"models:/{model_name}@staging")
    handle.wait(lambda s: "not ready" in s.get("message", "") and s["applied"], what="not ready")
    for path in ("/health", "/ping"):
        status, _, body = call(handle.url, "GET", path)
        assert status == 503
        assert "alias 'staging'" in json.loads(body)["message"]
    status, _, body = call(
        handle.url, "POST", "/invocations", b"{}", {"Content-Type": "application/json"}
    )
    assert status == 503 and "promote" in json.loads(body)["message"]
    assert json.loads(call(handle.url, "GET", "/version")[2])["ready"] is False

    version = register(*model_a, model_name)
    mlflow.MlflowClient().set_registered_model_alias(model_name, "staging", version)
    handle.wait_ready(version)
    status, body, headers = score(handle.url, {"dataframe_records": records(model_a[1].iloc[:3])})
    assert status == 200 and body["model_version"] == headers["x-model-version"] == version


def test_a_starting_server_takes_connections_only_once_its_workers_can_answer(
    tracking: str, server, model_name: str, model_a: Trained
) -> None:  # type: ignore[no-untyped-def]
    """A probe or a client making a new connection per request (curl, a readiness probe) is
    never answered 503 by a worker still loading while the model exists: the workers share the
    port, so a loading worker that listened would take its share of them."""
    version = register(*model_a, model_name)
    mlflow.MlflowClient().set_registered_model_alias(model_name, "production", version)
    handle = server(f"models:/{model_name}@production", workers=2)
    answers: Counter[str] = Counter()
    pids: set[int] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (len(pids) < 2 or sum(answers.values()) < 100):
        try:
            status, _, _ = call(handle.url, "GET", "/health")
            info = json.loads(call(handle.url, "GET", "/version")[2])
        except ConnectionRefusedError:  # no worker listens yet
            assert handle.process.poll() is None, handle.log()
            time.sleep(0.01)
            continue
        answers[f"/health {status}"] += 1
        answers[f"/version ready={info['ready']}"] += 1
        pids.add(info["worker_pid"])
    assert set(answers) == {"/health 200", "/version ready=True"}, (answers, handle.log())
    assert len(pids) == 2, f"both workers answer once loaded: {pids}"


def test_a_first_version_that_cannot_be_loaded_is_answered_503_with_why(
    server, local_model_a: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken-model"
    shutil.copytree(local_model_a, broken)
    (broken / "model.lgb").write_text("not a LightGBM model\n")
    handle = server(str(broken))
    deadline = time.monotonic() + 60
    while True:
        try:
            status, _, body = call(handle.url, "GET", "/health")
            break
        except ConnectionRefusedError:  # the workers listen once they have tried
            assert time.monotonic() < deadline and handle.process.poll() is None, handle.log()
            time.sleep(0.1)
    message = json.loads(body)["message"]
    assert status == 503 and "LightGBM cannot read it" in message and "model.lgb" in message


def test_alias_move_swaps_versions_under_load_without_a_failed_request(
    tracking: str, server, model_name: str, model_a: Trained, model_b: Trained
) -> None:  # type: ignore[no-untyped-def]
    client = mlflow.MlflowClient()
    v1 = register(*model_a, model_name)
    v2 = register(*model_b, model_name)
    client.set_registered_model_alias(model_name, "production", v1)
    handle = server(f"models:/{model_name}@production", strategy="blue-green")
    handle.wait_ready(v1)
    with Load(handle.url, records(model_a[1].iloc[:50]), threads=4) as load:
        time.sleep(2)
        client.set_registered_model_alias(model_name, "production", v2)
        handle.wait_ready(v2)
        time.sleep(2)
        client.set_registered_model_alias(model_name, "production", v1)  # and a rollback
        handle.wait_ready(v1)
        time.sleep(1)
    assert load.failures == []
    assert load.versions[v1] > 0 and load.versions[v2] > 0, load.versions
    events = [e["event"] for e in handle.status()["events"]]
    assert events.count("swap") == 2


def test_canary_that_errors_is_rolled_back_and_a_healthy_one_promoted(
    tracking: str,
    server,
    model_name: str,
    model_a: Trained,
    model_b: Trained,
    model_needs_new_column: Trained,
) -> None:  # type: ignore[no-untyped-def]
    client = mlflow.MlflowClient()
    stable = register(*model_a, model_name)
    broken = register(*model_needs_new_column, model_name)
    healthy = register(*model_b, model_name)
    client.set_registered_model_alias(model_name, "production", stable)
    handle = server(
        f"models:/{model_name}@production", strategy="canary", canary_steps=(50, 100),
        limits=Limits(max_error_rate=0.01, max_latency_p99_ms=1000.0, min_requests=10),
        canary_step_seconds=1.0, environment="production",
    )  # fmt: skip
    handle.wait_ready(stable)
    with Load(handle.url, records(model_a[1].iloc[:50]), threads=3) as load:
        # The new version needs a column clients do not send yet: every request it gets fails.
        client.set_registered_model_alias(model_name, "production", broken)
        status = handle.wait(lambda s: any(e["event"] == "rollback" for e in s["events"]),
                             what="canary rollback")  # fmt: skip
        assert status["candidate"] is None and status["stable"]["version"] == stable
        rollback = next(e for e in status["events"] if e["event"] == "rollback")
        assert rollback["version"] == broken and "maxErrorRate" in rollback["detail"]
        # A healthy candidate climbs the steps and becomes the stable version.
        client.set_registered_model_alias(model_name, "production", healthy)
        handle.wait(lambda s: any(e["event"] == "promote" for e in s["events"]), what="promotion")
        handle.wait_ready(healthy)
        time.sleep(1)
    # Users never saw the broken canary: its failures were answered by the stable version.
    assert load.failures == []
    assert load.versions[broken] == 0 and load.versions[healthy] > 0
    metrics = call(handle.url, "GET", "/metrics")[2].decode()
    assert f'modelyard_requests_total{{model_version="{broken}",status="422"}}' in metrics
    tags = client.get_model_version(model_name, broken).tags
    assert tags["modelyard.rollout.production"].startswith("rolled back: error rate")


def test_ab_split_is_sticky_per_request_key(
    tracking: str, server, model_name: str, model_a: Trained, model_b: Trained
) -> None:  # type: ignore[no-untyped-def]
    client = mlflow.MlflowClient()
    a = register(*model_a, model_name)
    b = register(*model_b, model_name)
    client.set_registered_model_alias(model_name, "staging", a)
    handle = server(f"models:/{model_name}@staging", strategy="ab", ab_split=50)
    handle.wait_ready(a)
    client.set_registered_model_alias(model_name, "staging", b)
    handle.wait(lambda s: (s.get("candidate") or {}).get("version") == b and s["applied"],
                what="A/B split")  # fmt: skip
    payload = {"dataframe_records": records(model_a[1].iloc[:1])}
    assigned = {}
    for key in (f"customer-{i}" for i in range(40)):
        answers = {score(handle.url, payload, {"X-Request-Key": key})[2]["x-model-version"]
                   for _ in range(3)}  # fmt: skip
        assert len(answers) == 1, (key, answers)  # the same key always lands on the same version
        assigned[key] = answers.pop()
    assert set(assigned.values()) == {a, b}


def test_shadow_scores_the_candidate_but_answers_with_the_stable_version(
    tracking: str, server, model_name: str, model_a: Trained, model_b: Trained
) -> None:  # type: ignore[no-untyped-def]
    client = mlflow.MlflowClient()
    stable = register(*model_a, model_name)
    shadow = register(*model_b, model_name)
    client.set_registered_model_alias(model_name, "staging", stable)
    handle = server(f"models:/{model_name}@staging", strategy="shadow")
    handle.wait_ready(stable)
    client.set_registered_model_alias(model_name, "staging", shadow)
    handle.wait(lambda s: s.get("mode") == "shadow" and s["applied"], what="shadow mode")
    payload = {"dataframe_records": records(model_a[1].iloc[:5])}
    for _ in range(20):
        status, body, _ = score(handle.url, payload)
        assert status == 200 and body["model_version"] == stable
    needle = f'modelyard_requests_total{{model_version="{shadow}",status="200"}}'
    deadline = time.monotonic() + 10
    while needle not in call(handle.url, "GET", "/metrics")[2].decode():
        assert time.monotonic() < deadline, "the shadow version's requests never showed up"
        time.sleep(0.2)


def test_a_version_that_cannot_be_loaded_is_rolled_back_and_the_old_one_keeps_serving(
    tracking: str, server, model_name: str, model_a: Trained, model_b: Trained
) -> None:  # type: ignore[no-untyped-def]
    client = mlflow.MlflowClient()
    good = register(*model_a, model_name)
    corrupt = register(*model_b, model_name)
    client.set_registered_model_alias(model_name, "production", good)
    handle = server(f"models:/{model_name}@production", strategy="blue-green")
    handle.wait_ready(good)
    # The artifact of the new version arrives damaged (the server's download cache is where
    # it would land): the workers cannot load it.
    cached = handle.options.state_dir.parent / "models" / model_name / corrupt
    cached.mkdir(parents=True)
    (cached / "MLmodel").write_text("flavors: {lightgbm: {data: model.lgb}}\n")
    (cached / "model.lgb").write_text("not a model\n")
    (cached / COMPLETE).touch()
    with Load(handle.url, records(model_a[1].iloc[:50]), threads=2) as load:
        client.set_registered_model_alias(model_name, "production", corrupt)
        status = handle.wait(lambda s: any(e["event"] == "rollback" for e in s["events"]),
                             what="rollback of the broken version")  # fmt: skip
        handle.wait_ready(good)
        time.sleep(1)
    assert status["stable"]["version"] == good and "could not be loaded" in status["message"]
    assert load.failures == [] and set(load.versions) == {good}


def test_a_canary_pinned_by_the_deployment_splits_by_its_weight_and_never_steps_itself(
    tracking: str, server, model_name: str, model_a: Trained, model_needs_new_column: Trained
) -> None:  # type: ignore[no-untyped-def]
    """What a Kubernetes pod runs during a canary step: both versions, the weight `pulumi up`
    set, per request; stepping and rolling back are the deploy's, which reads /metrics (a pod
    that rolled back on its own left the deploy waiting for a weight it no longer served)."""
    from modelyard.ml.serving.metrics import parse_version_stats
    from modelyard.ml.serving.rollout import window

    stable = register(*model_a, model_name)
    broken = register(*model_needs_new_column, model_name)
    handle = server(
        f"models:/{model_name}/{stable}", candidate_uri=f"models:/{model_name}/{broken}",
        candidate_weight=30, strategy="canary", canary_steps=(30, 100), canary_step_seconds=0.5,
        limits=Limits(max_error_rate=0.01, max_latency_p99_ms=10_000.0, min_requests=10),
    )  # fmt: skip
    handle.wait(lambda s: s.get("ready") and s.get("candidate"), what="both versions loaded")
    with Load(handle.url, records(model_a[1].iloc[:50]), threads=2) as load:
        time.sleep(4)
    status = handle.status()
    # Still at the weight it was given, long after its step time: the server did not step, nor
    # roll back the failing candidate (far above its maxErrorRate): the deploy does that.
    assert status["candidate"]["version"] == broken and status["weight"] == 30
    assert not any(e["event"] in ("promote", "canary", "rollback") for e in status["events"][1:])
    # Every request the candidate failed was answered by the stable version.
    assert load.failures == [] and load.versions[broken] == 0
    counted = parse_version_stats(call(handle.url, "GET", "/metrics")[2].decode())
    tried = window(counted[broken], None)
    assert tried.error_rate == 1.0
    share = tried.requests / window(counted[stable], None).requests
    assert 0.2 < share < 0.45, share  # ~30% of requests went to the candidate first


def test_a_pinned_canary_takes_a_new_weight_from_its_file_without_a_restart(
    tracking: str, server, model_name: str, model_a: Trained, model_b: Trained, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """What a pod does when a canary step rewrites its mounted ConfigMap: the same processes,
    the same two loaded versions, the new share of requests."""
    from modelyard.ml.serving.metrics import parse_version_stats
    from modelyard.ml.serving.rollout import window

    stable, candidate = register(*model_a, model_name), register(*model_b, model_name)
    weight = tmp_path / "candidateWeight"
    weight.write_text("10")
    handle = server(
        f"models:/{model_name}/{stable}", candidate_uri=f"models:/{model_name}/{candidate}",
        candidate_weight_file=str(weight), strategy="canary",
        limits=Limits(max_error_rate=1.0, max_latency_p99_ms=10_000.0, min_requests=10),
    )  # fmt: skip
    handle.wait(lambda s: s.get("ready") and s.get("weight") == 10, what="both loaded at 10%")
    workers = handle.status()["workers"]

    def requests_by_version() -> dict[str, float]:
        counted = parse_version_stats(call(handle.url, "GET", "/metrics")[2].decode())
        return {v: window(counted.get(v, {}), None).requests for v in (stable, candidate)}

    with Load(handle.url, records(model_a[1].iloc[:50]), threads=2) as load:
        time.sleep(3)
        weight.write_text("60\n")
        handle.wait(lambda s: s.get("weight") == 60, timeout=10, what="the new weight applied")
        time.sleep(0.5)  # every worker has the new routing
        before = requests_by_version()
        time.sleep(4)
        after = requests_by_version()
    status = handle.status()
    assert status["workers"] == workers and handle.process.poll() is None  # nothing restarted
    assert status["candidate"]["version"] == candidate
    assert load.failures == []
    to_candidate = after[candidate] - before[candidate]
    share = to_candidate / (to_candidate + after[stable] - before[stable])
    assert 0.45 < share < 0.75, share  # ~60% after the step (it was ~10% before)
    assert json.loads(call(handle.url, "GET", "/version")[2])["candidate_weight"] == 60
    # A file that says no percentage is ignored, with a warning: the weight stays.
    weight.write_text("lots")
    time.sleep(2)
    assert handle.status()["weight"] == 60 and "cannot read the canary weight" in handle.log()
