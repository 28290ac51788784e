"""`modelyard infra up|preview|refresh|destroy ENV` without the pinned Pulumi CLI: the message a
user sees then, through the installed `modelyard` command (tests/infra/test_engine.py drives the
real engine)."""

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
    """This machine's environment with no `pulumi` reachable: none on PATH, no tools built."""
    folders = [p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "pulumi").exists()]
    return {**os.environ, "PATH": os.pathsep.join(folders), "HOME": str(tmp_path),
            "MODELYARD_TOOLS_DIR": str(tmp_path / "no-tools")}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("command", ["up", "preview", "refresh", "destroy"])
def test_missing_cli_is_one_clear_message(tmp_path: Path, command: str) -> None:
    result = subprocess.run(
        [MODELYARD, "infra", command, "local"],
        env=_without_pulumi(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: no Pulumi CLI 3.259.0 here")
    assert "run `make tools`" in result.stderr and "infra render" in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_unknown_environment_is_reported_before_the_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [MODELYARD, "infra", "up", "nosuch"],
        env=_without_pulumi(tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Pulumi.nosuch.yaml: no such environment file" in result.stderr


@pytest.mark.parametrize(
    "script",
    ["echo 'pulumi: cannot execute' >&2; exit 126", "echo v3.200.0"],
    ids=["does not run", "another version"],
)
def test_only_a_running_cli_at_the_pinned_version_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    other = tmp_path / "bin" / "pulumi"
    other.parent.mkdir()
    other.write_text(f"#!/bin/sh\n{script}\n")
    other.chmod(0o755)
    monkeypatch.setenv("PATH", str(other.parent))
    monkeypatch.setenv("MODELYARD_TOOLS_DIR", str(tmp_path / "no-tools"))
    with pytest.raises(automation.PulumiCliMissing, match="run `make tools`"):
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


def test_every_backend_needs_the_secrets_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stacks' secrets provider is the passphrase on a file, object-store or service backend
    alike (the shipped files carry its salt)."""
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    with pytest.raises(ConfigError, match="PULUMI_CONFIG_PASSPHRASE"):
        automation._require_passphrase()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "correct horse")
    automation._require_passphrase()


def test_an_environment_file_the_engine_would_not_read_is_refused(
    environments: Path,
) -> None:
    """MODELYARD_ENVIRONMENTS_DIR elsewhere: the kit would read one file and the engine another
    (Pulumi.yaml's stackConfigDir), so `up` would apply what nobody reviewed."""
    with pytest.raises(ConfigError, match="stackConfigDir") as refused:
        automation.select_stack("local")
    assert str(environments) in str(refused.value)


def test_a_killed_ups_lock_and_the_metadata_it_truncated_are_cleared(tmp_path: Path) -> None:
    """What `kill -9` of an `up` can leave in a file backend: its lock, and the checkpoint's
    `.attrs` file emptied mid-write (the engine then fails with "failed to load checkpoint:
    EOF"). The next operation clears both; a whole checkpoint and valid metadata stay."""
    import json
    import socket

    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    locks = tmp_path / ".pulumi/locks/organization/modelyard/prod"
    locks.mkdir(parents=True)
    (locks / "one.json").write_text(json.dumps({"pid": dead.pid, "hostname": socket.gethostname()}))
    stacks = tmp_path / ".pulumi/stacks/modelyard"
    stacks.mkdir(parents=True)
    (stacks / "prod.json").write_text('{"version": 3}')
    (stacks / "prod.json.attrs").write_text("")
    (stacks / "prod.json.bak.attrs").write_text('{"user.content_type": "application/json"}')
    said: list[str] = []
    automation.release_stale_locks(tmp_path.as_uri(), "prod", said.append)
    assert not (locks / "one.json").exists()
    assert sorted(p.name for p in stacks.iterdir()) == ["prod.json", "prod.json.bak.attrs"]
    assert said == [
        f"removed the lock of prod left by process {dead.pid}, which is gone",
        "removed prod.json.attrs, truncated by the process that was killed",
    ]
