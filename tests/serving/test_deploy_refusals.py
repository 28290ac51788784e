"""`modelyard deploy ENV --model NAME` refuses a model the environment does not serve, before
anything starts: one message naming what to change, exit code 2."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_cli


def test_a_model_the_environment_does_not_list_is_refused_naming_those_it_does(
    environments: Path,
) -> None:
    result = run_cli("deploy", "staging", "--model", "segment")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "serves churn, not 'segment': add it under modelyard:models" in result.stderr
