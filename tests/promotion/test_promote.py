"""Promote, roll back and read history against a real `mlflow server`."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient
from modelyard.contracts.environment import load_environment
from modelyard.pipelines.commands.promote import print_history
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.promotion import history, promote, rollback, served_at
from modelyard.pipelines.promotion.records import EXPERIMENT
from promotion_helpers import Register, live_traffic, set_keys, training_profile
from rich.console import Console

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STAGING_IMAGE = "registry.staging.example.internal/modelyard-serving:1.0@sha256:" + "b" * 64
MODELYARD = str(Path(os.sys.executable).with_name("modelyard"))


def served(env: str) -> tuple[int | None, str | None]:
    settings = load_environment(env).serving
    return settings.desired_version, settings.image


def alias(tracking: str, model: str, env: str) -> int | None:
    found = MlflowClient(tracking).get_registered_model(model).aliases
    return int(found[env]) if env in found else None


def outside_freeze(start: datetime) -> datetime:
    """A time the production file's Friday-evening freeze does not cover."""
    while start.weekday() == 4 and start.hour >= 16:
        start += timedelta(hours=8)
    return start


def test_staging_then_production_under_every_rule(
    model: str, register: Register, environments: Path, state: Path, tracking: str
) -> None:
    v1 = register(0.91, profile=training_profile())
    staged = promote(model, "staging", image=STAGING_IMAGE)
    assert staged.promoted and staged.version == v1 and staged.from_version is None
    assert alias(tracking, model, "staging") == v1
    assert served("staging") == (v1, STAGING_IMAGE)
    production_file = (environments / "Pulumi.production.yaml").read_text()

    # Right after staging: no soak, no approvals, no live traffic -> refused, nothing changed.
    early = promote(model, "production")
    failed = {g.name for g in early.gates if not g.passed}
    assert not early.promoted
    assert failed == {"soak >= 60 min in staging", "2 approval(s) from ml-leads", "drift <= 0.2"}
    drift_gate = next(g for g in early.gates if g.name == "drift <= 0.2")
    assert "no evidence" in drift_gate.evidence and "live rows" in drift_gate.evidence
    assert alias(tracking, model, "production") is None
    assert (environments / "Pulumi.production.yaml").read_text() == production_file

    # Two hours later, with staging traffic like the training data, and a stranger approving.
    later = outside_freeze(datetime.now(UTC) + timedelta(hours=2))
    live_traffic(state, "staging", rows=600, drift=0.0, seed=7)
    stranger = promote(model, "production", approvers=["alice", "mallory"], now=later)
    assert not stranger.promoted
    verdicts = {g.name: g for g in stranger.gates}
    assert verdicts["drift <= 0.2"].passed, verdicts["drift <= 0.2"].evidence
    assert verdicts["soak >= 60 min in staging"].passed
    assert "mallory" in verdicts["2 approval(s) from ml-leads"].evidence

    done = promote(model, "production", approvers=["alice", "bob"], now=later)
    assert done.promoted and all(g.passed for g in done.gates)
    assert alias(tracking, model, "production") == v1
    image = "registry.example.internal/modelyard-serving:1.0@sha256:" + "b" * 64
    assert served("production") == (v1, image)  # staging's image, from production's registry

    records = history(model)
    assert [(r["env"], r["to_version"]) for r in records] == [("staging", v1), ("production", v1)]
    last = records[-1]
    assert last["approvers"] == ["alice", "bob"] and last["id"] == done.record_id
    assert last["dataset_digest"] and last["metrics"]["roc_auc"] == pytest.approx(0.91)
    assert last["env_file_change"]["changes"][0] == {
        "key": "modelyard:serving.desiredVersion",
        "from": None,
        "to": v1,
    }
    # Drifted staging traffic would have stopped it.
    live_traffic(state, "staging", rows=600, drift=1.0, seed=8)
    v2 = register(0.95, profile=training_profile())
    assert promote(model, "staging").promoted
    drifted = promote(
        model, "production", approvers=["alice", "bob"], now=later + timedelta(hours=2)
    )
    gate = next(g for g in drifted.gates if g.name == "drift <= 0.2")
    assert not drifted.promoted and not gate.passed and ">" in gate.evidence
    assert alias(tracking, model, "production") == v1 and v2 != v1


def test_production_decides_on_one_reading_of_what_staging_serves(
    model: str, register: Register, environments: Path, state: Path, tracking: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Staging promoted by another agent while production's promotion runs: production takes the
    version staging served when it decided, and its source gate judges that same moment (two
    readings refused the version just chosen: "staging serves v2, not v1")."""
    from modelyard.pipelines.promotion.registry import Registry

    v1 = register(0.91, profile=training_profile())
    assert promote(model, "staging", image=STAGING_IMAGE).promoted
    v2 = register(0.93, profile=training_profile())
    later = outside_freeze(datetime.now(UTC) + timedelta(hours=2))
    live_traffic(state, "staging", rows=600, drift=0.0, seed=7)
    read = Registry.alias

    def staging_moves_right_after_it_is_read(self: Registry, name: str, env: str) -> int | None:
        found = read(self, name, env)
        if env == "staging" and found == v1:  # the other agent's staging promotion lands now
            MlflowClient(tracking).set_registered_model_alias(name, "staging", str(v2))
        return found

    monkeypatch.setattr(Registry, "alias", staging_moves_right_after_it_is_read)
    done = promote(model, "production", approvers=["alice", "bob"], now=later)
    assert done.promoted and done.version == v1, [(g.name, g.evidence) for g in done.gates]
    assert alias(tracking, model, "production") == v1


def test_champion_freeze_and_rollback(
    model: str, register: Register, environments: Path, tracking: str
) -> None:
    v1 = register(0.90)
    assert promote(model, "staging").promoted
    v2 = register(0.89)
    worse = promote(model, "staging", version=str(v2))
    assert not worse.promoted
    champion = next(g for g in worse.gates if g.name.startswith("beats champion"))
    assert not champion.passed and f"champion v{v1}" in champion.evidence
    assert alias(tracking, model, "staging") == v1 and served("staging")[0] == v1
    v3 = register(0.95)
    assert promote(model, "staging", version=str(v3)).promoted

    set_keys(environments, "staging", "promotion", {"freeze": {"enabled": True, "reason": "audit"}})
    v4 = register(0.97)
    frozen = promote(model, "staging", version=str(v4))
    assert not frozen.promoted
    assert [g.name for g in frozen.gates if not g.passed] == ["no freeze"]

    back = rollback(model, "staging", reason="v3 answers slowly")
    assert back.promoted and back.version == v1 and back.from_version == v3
    assert not next(g for g in back.gates if g.name == "no freeze").passed  # reported only
    assert alias(tracking, model, "staging") == v1 and served("staging")[0] == v1
    with pytest.raises(PipelineError, match=f"never served {model} v{v2}"):
        rollback(model, "staging", to_version=str(v2), reason="try")
    records = history(model, "staging")
    assert [(r["action"], r["from_version"], r["to_version"]) for r in records] == [
        ("promote", None, v1),
        ("promote", v1, v3),
        ("rollback", v3, v1),
    ]
    assert records[-1]["reason"] == "v3 answers slowly"
    # "What served in staging at time X, and why" has an answer for every X.
    first = datetime.fromisoformat(records[0]["at"])
    assert served_at(model, "staging", first - timedelta(seconds=1)) is None
    assert served_at(model, "staging", first)["to_version"] == v1  # type: ignore[index]
    latest = served_at(model, "staging", datetime.now(UTC) + timedelta(minutes=1))
    assert latest is not None and latest["id"] == records[-1]["id"]


def test_clear_refusals_change_nothing(
    model: str, register: Register, environments: Path, tracking: str
) -> None:
    before = {p.name: p.read_text() for p in environments.glob("*.yaml")}
    failed_gate = register(0.7, passed=False)
    for_production = register(0.9, env="production")
    cases = [
        (lambda: promote("no-such-model", "staging"), "serves churn-.*not .no-such-model."),
        (lambda: promote(model, "staging", version="99"), "has no version 99"),
        (lambda: promote(model, "staging", version=str(failed_gate)), "never passed"),
        (lambda: promote(model, "staging", version="models:/other/1"), "belongs to model 'other'"),
        (lambda: promote(model, "staging", version=str(for_production)), "not downstream"),
        (lambda: promote(model, "production"), "staging serves no version"),
        (lambda: rollback(model, "staging", reason="x"), "nothing to roll back"),
    ]
    for call, message in cases:
        with pytest.raises(PipelineError, match=message):
            call()
    set_keys(environments, "staging", "training", {"model": "unregistered"})
    with pytest.raises(PipelineError, match="not registered in MLflow"):
        promote("unregistered", "staging")
    assert alias(tracking, model, "staging") is None
    assert {p.name: p.read_text() for p in environments.glob("*.yaml")} != {} and all(
        before[name] == text
        for name, text in ((p.name, p.read_text()) for p in environments.glob("*.yaml"))
        if name != "Pulumi.staging.yaml"
    )
    assert history(model) == []


def test_cli_json_exit_codes_and_no_secret_in_records(
    model: str,
    register: Register,
    environments: Path,
    tracking: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2-very-secret")
    # Credentials in the URI reach the server but never the record or the output.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.replace("http://", "http://ci:s3cr3t-pw@"))
    register(0.9)
    ok = subprocess.run(
        [MODELYARD, "promote", model, "--to", "staging", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body["promoted"] is True and body["env"] == "staging" and body["version"] == 1
    assert {"name", "passed", "evidence"} <= set(body["gates"][0]) and body["record_id"]

    register(0.5)
    refused = subprocess.run(
        [MODELYARD, "promote", model, "--to", "staging", "--version", "2", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["promoted"] is False

    unknown = subprocess.run(
        [MODELYARD, "promote", model, "--to", "staging", "--version", "42"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "has no version 42" in unknown.stderr

    listed = subprocess.run(
        [MODELYARD, "history", model, "--json"], capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert [r["to_version"] for r in records] == [1]
    everything = json.dumps(records) + ok.stdout + ok.stderr
    for secret in ("hunter2-very-secret", "s3cr3t-pw", *_ciphertexts(environments)):
        assert secret not in everything
    # An 80-column terminal shows every field whole (no header or word broken mid-way).
    console = Console(record=True, width=80)
    print_history(history(model, "staging"), console)
    shown = console.export_text()
    lines = shown.splitlines()
    assert all(len(line) <= 80 for line in lines), shown
    assert "staging  promote nothing -> v1  commit" in lines[1], shown
    assert "approved by nobody" in shown and "gates 4/4 passed" in shown


def _ciphertexts(environments: Path) -> list[str]:
    return [
        line.split("secure:", 1)[1].strip()
        for path in environments.glob("*.yaml")
        for line in path.read_text().splitlines()
        if "secure:" in line
    ]


def test_records_live_in_their_own_mlflow_experiment(
    model: str, register: Register, tracking: str
) -> None:
    register(0.9)
    outcome = promote(model, "staging")
    run = MlflowClient(tracking).get_run(outcome.record_id or "")
    experiment = MlflowClient(tracking).get_experiment(run.info.experiment_id)
    assert experiment.name == EXPERIMENT
    assert run.data.tags["modelyard.promotion.status"] == "committed"
    assert run.data.tags["modelyard.promotion.env"] == "staging"
    MlflowClient(tracking).delete_run(run.info.run_id)  # someone tidies the experiment up
    kept = history(model)
    assert [r["id"] for r in kept] == [run.info.run_id] and kept[0]["deleted_in_mlflow"]


def test_trained_for_declares_which_registrations_an_environment_takes(
    model: str, register: Register, environments: Path
) -> None:
    trained_locally = register(0.9, env="local")
    with pytest.raises(PipelineError, match="not downstream"):
        promote(model, "staging", version=str(trained_locally))
    set_keys(environments, "staging", "promotion", {"trainedFor": ["local"]})
    outcome = promote(model, "staging")  # found as the default candidate too
    assert outcome.promoted and outcome.version == trained_locally


def test_a_failed_first_deploy_rolls_back_to_serving_nothing(
    model: str, register: Register, environments: Path, tracking: str
) -> None:
    before = (environments / "Pulumi.staging.yaml").read_text()
    v1 = register(0.9)
    assert promote(model, "staging").promoted
    back = rollback(model, "staging", reason="first deploy failed its health check")
    assert back.promoted and back.version is None and back.from_version == v1
    assert alias(tracking, model, "staging") is None
    assert (environments / "Pulumi.staging.yaml").read_text() == before
    records = history(model, "staging")
    assert [(r["action"], r["to_version"]) for r in records] == [
        ("promote", v1),
        ("rollback", None),
    ]
    assert promote(model, "staging").promoted  # and it can be promoted again


@pytest.mark.parametrize("strategy", ["canary", "blue-green", "ab", "rolling"])
def test_a_promotion_keeps_what_served_beside_the_candidate_where_the_strategy_needs_it(
    model: str, register: Register, environments: Path, strategy: str
) -> None:
    set_keys(environments, "staging", "promotion",
             {"rollout": {"strategy": strategy, "canarySteps": [25, 100]}})  # fmt: skip
    set_keys(environments, "staging", "serving", {"platform": "kubernetes"})
    first, second = (STAGING_IMAGE.replace("b" * 64, digit * 64) for digit in "12")
    v1 = register(0.91)
    assert promote(model, "staging", image=first).promoted
    assert load_environment("staging").serving.stable_version is None  # nothing served before
    v2 = register(0.93)
    done = promote(model, "staging", image=second)
    serving = load_environment("staging").serving
    assert (serving.desired_version, serving.image) == (v2, second)
    kept = (serving.stable_version, serving.stable_image, serving.canary_weight)
    if strategy == "rolling":
        assert kept == (None, None, 100)  # one version at a time
    else:
        # The outgoing version stays loaded: blue/green's warm standby, the canary's stable
        # share (starting at the first step), A/B's other arm.
        assert kept == (v1, first, 25 if strategy == "canary" else 100)
    assert history(model, "staging")[-1]["serving"]["stableVersion"] == kept[0]
    assert done.record_id == history(model, "staging")[-1]["id"]

    rollback(model, "staging", reason="the candidate misbehaves")
    serving = load_environment("staging").serving
    assert (serving.desired_version, serving.image) == (v1, first)
    assert (serving.stable_version, serving.stable_image, serving.canary_weight) == (
        None,
        None,
        100,
    )


def test_a_regression_version_is_judged_by_staging_s_regression_rules(
    model: str, register: Register, tracking: str
) -> None:
    """The shipped staging file states gates and a champion rule per task: a regression version
    is held to `r2 >= 0.8` and must beat the champion's rmse downwards."""
    regression = {"modelyard.task": "regression"}
    first = register(extra_metrics={"rmse": 3.4, "r2": 0.86}, tags=regression)
    staged = promote(model, "staging", image=STAGING_IMAGE)
    assert staged.promoted, [(g.name, g.evidence) for g in staged.gates]
    assert {g.name for g in staged.gates} >= {"r2 >= 0.8"}
    assert "roc_auc >= 0.8" not in {g.name for g in staged.gates}

    worse = register(extra_metrics={"rmse": 3.9, "r2": 0.84}, tags=regression)
    refused = promote(model, "staging", version=str(worse), image=STAGING_IMAGE)
    champion = next(g for g in refused.gates if g.name.startswith("beats champion"))
    assert not refused.promoted and not champion.passed
    assert "lower is better" in champion.name and f"champion v{first}" in champion.evidence
    better = register(extra_metrics={"rmse": 3.1, "r2": 0.9}, tags=regression)
    assert promote(model, "staging", version=str(better), image=STAGING_IMAGE).promoted
    assert alias(tracking, model, "staging") == better
