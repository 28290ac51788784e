"""`modelyard deploy ENV --model NAME` refuses what the environment cannot serve, before anything
starts: one message naming what to change, exit code 2."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import edit_environment, run_cli


def test_a_second_model_on_docker_is_refused_naming_the_platforms_that_serve_it(
    environments: Path, tmp_path: Path
) -> None:
    edit_environment(environments, "local", {"serving.platform": "docker",
                                             "models": {"segment": {"localPort": 8291}}})  # fmt: skip
    state = tmp_path / "state"
    result = run_cli(
        "deploy", "local", "--model", "segment", env={"MODELYARD_STATE_DIR": str(state)}
    )
    assert result.returncode == 2, result.stdout + result.stderr
    [message] = result.stderr.strip().splitlines()
    assert "serves segment beside churn on Kubernetes or as a local process, not yet on Docker" in (
        message
    )
    assert "serving.platform: kubernetes or process" in message
    assert not state.exists()  # nothing was started


def test_a_model_the_environment_does_not_list_is_refused_naming_those_it_does(
    environments: Path,
) -> None:
    result = run_cli("deploy", "staging", "--model", "segment")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "serves churn, not 'segment': add it under modelyard:models" in result.stderr
