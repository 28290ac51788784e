"""`modelyard pipeline run` refuses what it can't do before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import run_cli


def test_an_unknown_until_stage_is_refused_naming_the_stages(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = run_cli("pipeline", "run", "local", "--data", str(tmp_path / "churn.csv"),
                     "--until", "deploy-stagign", env={"MODELYARD_STATE_DIR": str(state)})  # fmt: skip
    assert result.returncode == 2
    assert "no stage named 'deploy-stagign'" in result.stderr
    assert "deploy-staging" in result.stderr.split("stages:")[1]
    assert not (state / "pipeline").exists()  # no run was started


def test_a_stage_run_on_its_own_uses_the_environments_model(tmp_path: Path) -> None:
    """Jenkins or a person may run one stage before any checkout stage has named the model."""
    from modelyard.ml.data.sample import generate_churn

    state, data = tmp_path / "state", tmp_path / "churn.csv"
    generate_churn(1200, seed=3).to_csv(data, index=False)
    result = run_cli("pipeline", "stage", "validate-data", "local", "--data", str(data),
                     "--run-id", "alone", env={"MODELYARD_STATE_DIR": str(state)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1200 rows" in result.stdout + result.stderr
    context = json.loads((state / "pipeline" / "alone" / "context.json").read_text())
    assert context["model"] == "churn"
