"""`modelyard pipeline run` refuses what it can't do before anything runs."""

from __future__ import annotations

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
