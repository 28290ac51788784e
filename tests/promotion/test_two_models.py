"""Two models in one environment (`modelyard:models`), against a real `mlflow server`: each is
promoted and rolled back on its own, and never moves the other's alias, file keys or history."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from modelyard.contracts.environment import load_environment
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.promotion import history, promote, rollback
from promotion_helpers import Register, set_keys
from ruamel.yaml import YAML

from tests.helpers import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IMAGE = "registry.staging.example.internal/modelyard-serving:{}@sha256:" + "c" * 64


@pytest.fixture
def second(environments: Path, tracking: str, model: str) -> str:
    """A second registered model that staging serves beside `model`, on its own port."""
    name = f"segment-{uuid.uuid4().hex[:8]}"
    MlflowClient(tracking).create_registered_model(name)
    path = environments / "Pulumi.staging.yaml"
    round_trip = YAML()
    document = round_trip.load(path.read_text(encoding="utf-8"))
    document["config"]["modelyard:models"] = {name: {"localPort": 8191}}
    with path.open("w", encoding="utf-8") as handle:
        round_trip.dump(document, handle)
    return name


def _file(environments: Path) -> dict[str, object]:
    config = yaml.safe_load((environments / "Pulumi.staging.yaml").read_text())["config"]
    return {"serving": config["modelyard:serving"], "models": config["modelyard:models"]}


def _alias(tracking: str, name: str) -> int | None:
    found = MlflowClient(tracking).get_registered_model(name).aliases
    return int(found["staging"]) if "staging" in found else None


def test_each_model_is_promoted_and_rolled_back_without_touching_the_other(
    model: str, second: str, register: Register, environments: Path, tracking: str
) -> None:
    first_v1 = register(0.91)
    assert promote(model, "staging", image=IMAGE.format("churn-1")).promoted
    other_v1 = register(0.9, name=second)
    other_v2 = register(0.92, name=second)
    assert promote(second, "staging", version=str(other_v1), image=IMAGE.format("seg-1")).promoted
    assert promote(second, "staging", version=str(other_v2), image=IMAGE.format("seg-2")).promoted

    written = _file(environments)
    assert written["serving"]["desiredVersion"] == first_v1  # type: ignore[index]
    assert written["serving"]["image"] == IMAGE.format("churn-1")  # type: ignore[index]
    assert written["models"][second]["desiredVersion"] == other_v2  # type: ignore[index]
    assert written["models"][second]["localPort"] == 8191  # type: ignore[index]
    staging = load_environment("staging")
    assert staging.release(second).desired_version == other_v2
    assert staging.release(model).desired_version == first_v1

    churn_before = (_alias(tracking, model), written["serving"], len(history(model, "staging")))
    back = rollback(second, "staging", None, "the new segment model misroutes enterprise")
    assert back.version == other_v1 and _alias(tracking, second) == other_v1
    after = _file(environments)
    assert after["models"][second]["desiredVersion"] == other_v1  # type: ignore[index]
    assert (_alias(tracking, model), after["serving"], len(history(model, "staging"))) == (
        churn_before
    )
    assert [r["to_version"] for r in history(second, "staging")] == [other_v1, other_v2, other_v1]

    # And the other way round: a rollback of the first model leaves the second where it is.
    rollback(model, "staging", None, "back to nothing")
    assert _alias(tracking, second) == other_v1
    assert _file(environments)["models"] == after["models"]


def test_a_models_own_freeze_and_gates_hold_that_model_only(
    model: str, second: str, register: Register, environments: Path, tracking: str
) -> None:
    """`modelyard:models.NAME.promotion`: one model frozen and held to a higher bar while the
    environment's rules go on applying to the other."""
    own = {"freeze": {"enabled": True, "reason": "segment review"}, "gates": ["roc_auc >= 0.95"]}
    set_keys(environments, "staging", "models", {second: {"localPort": 8191, "promotion": own}})
    other = register(0.93, name=second)
    frozen = promote(second, "staging", version=str(other), image=IMAGE.format("seg-1"))
    assert not frozen.promoted and _alias(tracking, second) is None
    failed = {g.name: g.evidence for g in frozen.gates if not g.passed}
    assert (
        set(failed) == {"no freeze", "roc_auc >= 0.95"} and "segment review" in failed["no freeze"]
    )

    first = register(0.93)  # the same metrics pass the environment's own rules
    assert promote(model, "staging", image=IMAGE.format("churn-1")).promoted
    assert _alias(tracking, model) == first and _alias(tracking, second) is None

    set_keys(environments, "staging", "models", {second: {"localPort": 8191,
                                                          "promotion": {"gates": []}}})  # fmt: skip
    assert promote(second, "staging", version=str(other), image=IMAGE.format("seg-1")).promoted
    assert _file(environments)["models"][second]["promotion"] == {"gates": []}  # type: ignore[index]


def test_a_rule_every_model_shares_is_refused_under_one_model(
    model: str, second: str, environments: Path
) -> None:
    own = {"rollout": {"strategy": "canary"}, "soakMinutes": 5}
    set_keys(environments, "staging", "models", {second: {"localPort": 8191, "promotion": own}})
    result = run_cli("env", "validate", "staging")
    assert result.returncode == 2
    assert f"modelyard:models.{second}.promotion: rollout is the environment's" in result.stderr
    assert "set it under modelyard:promotion" in result.stderr


def test_a_model_the_environment_does_not_serve_is_refused_with_the_ones_it_does(
    model: str, second: str, register: Register
) -> None:
    with pytest.raises(PipelineError, match=rf"serves {model}, {second} .* not 'elsewhere'"):
        promote("elsewhere", "staging")


def test_two_models_on_one_port_are_refused_naming_the_key(
    model: str, second: str, environments: Path
) -> None:
    path = environments / "Pulumi.staging.yaml"
    path.write_text(path.read_text().replace("localPort: 8191", "localPort: 8181"))
    result = run_cli("env", "validate", "staging")
    assert result.returncode == 2
    assert f"modelyard:models.{second}.localPort" in result.stderr
    assert "8181 is serving.localPort's too" in result.stderr
