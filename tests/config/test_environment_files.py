"""The environment files are the one source of truth: every mistake in them is one clear message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from modelyard.contracts.environment import ConfigError, load_environment
from modelyard.ml.tracking import tracking_uri

from tests.helpers import DELETE, edit_environment, run_cli


def test_every_shipped_environment_validates() -> None:
    result = run_cli("env", "validate")
    assert result.returncode == 0, result.stderr
    for name in ("local", "staging", "production"):
        assert f"ok {name}" in result.stdout


def _refused(environments: Path, name: str) -> str:
    result = run_cli("env", "validate", name)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert str(environments / f"Pulumi.{name}.yaml") in result.stderr
    return result.stderr


def test_yaml_syntax_error_names_file_and_line(environments: Path) -> None:
    path = environments / "Pulumi.local.yaml"
    lines = path.read_text().splitlines()
    lines[5] = "  modelyard:mlflow: [unclosed"
    path.write_text("\n".join(lines) + "\n")
    message = _refused(environments, "local")
    assert "not valid YAML" in message and "line " in message


def test_unknown_key_is_named_with_the_allowed_ones(environments: Path) -> None:
    edit_environment(environments, "local", {"training.numBoostRounds": 100})
    message = _refused(environments, "local")
    assert "modelyard:training.numBoostRounds: unknown key" in message
    assert "numBoostRound" in message.split("Allowed here:")[1]


def test_wrong_type_and_out_of_range_values_are_named(environments: Path) -> None:
    edit_environment(
        environments, "local", {"training.budget.trials": 0, "serving.localPort": "eighty"}
    )
    message = _refused(environments, "local")
    assert "modelyard:training.budget.trials" in message and "greater than or equal to 1" in message
    assert "modelyard:serving.localPort" in message and "'eighty'" in message


def test_missing_required_setting_says_add_it(environments: Path) -> None:
    edit_environment(environments, "staging", {"training": DELETE})
    message = _refused(environments, "staging")
    assert "modelyard:training: required but missing: add it." in message


def test_bad_gate_rule_explains_the_syntax(environments: Path) -> None:
    edit_environment(environments, "local", {"training.gate": "auc is high"})
    assert "write it as `metric >= number`" in _refused(environments, "local")


def test_plain_text_secret_is_refused(environments: Path) -> None:
    edit_environment(environments, "production", {"notify.email.password": "hunter2"})
    message = _refused(environments, "production")
    assert "modelyard:notify.email.password" in message
    assert "pulumi config set --secret" in message
    assert "hunter2" not in message


def test_unknown_environment_lists_the_known_ones(environments: Path) -> None:
    result = run_cli("env", "show", "qa")
    assert result.returncode == 2
    assert "Known environments: local, production, staging" in result.stderr


def test_show_fills_defaults_and_masks_secrets(environments: Path) -> None:
    result = run_cli("env", "show", "production")
    assert result.returncode == 0, result.stderr
    assert "earlyStoppingRounds: 30" in result.stdout  # a default, filled in
    assert "[secret]" in result.stdout
    text = (environments / "Pulumi.production.yaml").read_text()
    ciphertexts = re.findall(r"secure: (v1:\S+)", text)
    assert ciphertexts
    assert not [c for c in ciphertexts if c in result.stdout]


def test_mlflow_tracking_uri_variable_wins_over_the_file(
    environments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_environment("local").mlflow
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(settings) == "http://127.0.0.1:5500"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:6111")
    assert tracking_uri(settings) == "http://127.0.0.1:6111"


def test_library_raises_config_error_for_other_namespaces_without_colon(environments: Path) -> None:
    path = environments / "Pulumi.local.yaml"
    path.write_text(path.read_text().replace("config:\n", "config:\n  region: eu-west-1\n", 1))
    with pytest.raises(ConfigError, match="has no namespace"):
        load_environment("local")
