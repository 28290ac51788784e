"""`modelyard infra up|preview ENV`: on this machine the Pulumi CLI is really missing, so the
message a user sees then is tested for real, through the installed `modelyard` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from modelyard.contracts.environment import ConfigError
from modelyard.infra import automation

MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def _without_pulumi(tmp_path: Path) -> dict[str, str]:
    """This machine's environment with no `pulumi` reachable (PATH and ~/.pulumi/bin)."""
    folders = [p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "pulumi").exists()]
    return {**os.environ, "PATH": os.pathsep.join(folders), "HOME": str(tmp_path)}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["up", "preview"])
def test_missing_cli_is_one_clear_message(tmp_path: Path, command: str) -> None:
    result = subprocess.run(
        [MODELYARD, "infra", command, "local"],
        env=_without_pulumi(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: the Pulumi CLI is not installed")
    assert "get.pulumi.com" in result.stderr and "infra render" in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_unknown_environment_is_reported_before_the_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [MODELYARD, "infra", "up", "nosuch"],
        env=_without_pulumi(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Pulumi.nosuch.yaml: no such environment file" in result.stderr


def test_a_cli_that_does_not_run_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "bin" / "pulumi"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'pulumi: cannot execute' >&2\nexit 126\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(broken.parent))
    with pytest.raises(automation.PulumiCliMissing, match="does not run"):
        automation.pulumi_command()


def test_state_defaults_to_a_local_file_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    backend = automation.state_backend()
    assert backend.startswith("file://") and backend.endswith("/.modelyard/pulumi-state")
    assert Path(backend.removeprefix("file://")).is_dir()
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://team-state/modelyard")
    assert automation.state_backend() == "s3://team-state/modelyard"


def test_local_backend_needs_the_secrets_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    with pytest.raises(ConfigError, match="PULUMI_CONFIG_PASSPHRASE"):
        automation._require_passphrase("file:///tmp/state")
    automation._require_passphrase("https://api.pulumi.com")  # the service keeps its own keys
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "correct horse")
    automation._require_passphrase("file:///tmp/state")
