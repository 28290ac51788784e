"""The shipped stack files' secrets are real Pulumi ciphertexts: the engine decrypts them with
the documented example passphrase, refuses a wrong one, and `pulumi config set --secret` works
on the files, which the kit's own reader still accepts (it refuses plain-text secrets)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from modelyard.infra import automation
from pulumi import automation as auto

from tests.helpers import REPO, run_cli

pytestmark = [pytest.mark.engine]
EXAMPLE_PASSPHRASE = "modelyard-example"


@pytest.fixture
def project(tmp_path: Path) -> tuple[auto.PulumiCommand, Path]:
    try:
        command = automation.pulumi_command()
    except automation.PulumiCliMissing as exc:
        if os.environ.get("MODELYARD_REQUIRE_PULUMI") == "1":
            pytest.fail(f"MODELYARD_REQUIRE_PULUMI=1 but {exc}")
        pytest.skip(str(exc))
    shutil.copy(REPO / "Pulumi.yaml", tmp_path)
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    (tmp_path / "state").mkdir()
    return command, tmp_path


def _pulumi(
    project: tuple[auto.PulumiCommand, Path], *args: str, passphrase: str = EXAMPLE_PASSPHRASE
) -> auto.CommandResult:
    command, folder = project
    env = {"PULUMI_BACKEND_URL": (folder / "state").as_uri(),
           "PULUMI_CONFIG_PASSPHRASE": passphrase, **automation.OFFLINE}  # fmt: skip
    return command.run(list(args), str(folder), env)


@pytest.mark.parametrize("env", ["staging", "production"])
def test_the_engine_decrypts_the_shipped_secrets_with_the_example_passphrase(
    project: tuple[auto.PulumiCommand, Path], env: str
) -> None:
    before = (project[1] / "environments" / f"Pulumi.{env}.yaml").read_text()
    _pulumi(project, "stack", "init", env, "--secrets-provider", "passphrase")
    key = "modelyard:serving.kubeconfig"
    shown = _pulumi(project, "config", "get", "--stack", env, "--path", key).stdout
    assert shown.startswith("example-serving-kubeconfig")
    # What Jenkins hands the deploy stages is the passphrase these very stacks open with.
    jenkins_key = "modelyard:platform.jenkins.pulumi.passphrase"
    given = _pulumi(project, "config", "get", "--stack", env, "--path", jenkins_key).stdout
    assert given.strip() == EXAMPLE_PASSPHRASE
    with pytest.raises(auto.errors.CommandError, match="incorrect passphrase"):
        _pulumi(project, "config", "get", "--stack", env, "--path", key, passphrase="wrong")
    # Selecting the stack changed nothing in the file (its salt is the example passphrase's).
    assert (project[1] / "environments" / f"Pulumi.{env}.yaml").read_text() == before


def test_config_set_secret_writes_a_ciphertext_the_kit_reads(
    project: tuple[auto.PulumiCommand, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = project[1]
    _pulumi(project, "stack", "init", "production", "--secrets-provider", "passphrase")
    key = "modelyard:notify.email.password"
    _pulumi(
        project,
        "config",
        "set",
        "--secret",
        "--stack",
        "production",
        "--path",
        key,
        "s3nt1nel-value",
    )
    text = (folder / "environments" / "Pulumi.production.yaml").read_text()
    assert "s3nt1nel-value" not in text
    shown = _pulumi(project, "config", "get", "--stack", "production", "--path", key).stdout
    assert shown.strip() == "s3nt1nel-value"
    monkeypatch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(folder / "environments"))
    validated = run_cli("env", "validate", "production")
    assert validated.returncode == 0, validated.stderr
