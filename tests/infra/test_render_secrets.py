"""A sentinel secret planted in the environments' secret config never comes out anywhere:
not in a render, its manifests, a diff, the policy report, a log line or an error message."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from modelyard.contracts.environment import ConfigError
from modelyard.infra.diff import DiffError, diff_environment
from modelyard.infra.render import render
from modelyard.pipelines.cli import app
from test_render_support import commit_all, edit_environment, make_repo, pinned
from typer.testing import CliRunner

SENTINEL = "SENTINEL-6f1c0de5-never-print-me"
MODELYARD = str(Path(sys.executable).parent / "modelyard")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository whose committed environments hold the sentinel in every secret slot."""
    folder = make_repo(tmp_path / "repo")
    envs = folder / "environments"
    secret = {"secure": SENTINEL}
    for env in ("staging", "production"):
        edit_environment(
            envs, env, serving={"kubeconfig": secret}, notify={"webhooks": [{"url": secret}]},
            platform={"jenkins": {"pulumi": {"backendUrl": "s3://state", "passphrase": secret}}},
        )  # fmt: skip
    commit_all(folder, "plant the sentinel")
    monkeypatch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(envs))
    monkeypatch.chdir(folder)
    return folder


def _clean(*texts: str) -> None:
    for text in texts:
        assert SENTINEL not in text


def test_render_manifests_and_logs_never_hold_the_secret(
    repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for env in ("staging", "production"):
        state = render(env)
        (provider,) = state.of_type("pulumi:providers:kubernetes")
        assert provider.inputs["kubeconfig"] == "[secret]"  # it did reach the program, masked
        _clean(state.to_text("json"), state.to_text("yaml"), repr(state))
        for path in state.write_manifests(tmp_path / env):
            _clean(path.read_text())
    _clean(caplog.text)


@pytest.mark.slow  # a fresh `modelyard` process (or two renders)
def test_cli_render_output_and_files_never_hold_the_secret(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    env = {**os.environ, "MODELYARD_ENVIRONMENTS_DIR": str(repo / "environments")}
    done = subprocess.run(
        [MODELYARD, "infra", "render", "production", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "[secret]" in done.stdout
    _clean(done.stdout, done.stderr, *(p.read_text() for p in out.iterdir()))


def test_diff_and_policy_reports_never_hold_the_secret(repo: Path) -> None:
    edit_environment(
        repo / "environments",
        "staging",
        serving={"desiredVersion": 2, "image": pinned("staging", "v2")},
    )
    # A changed secret: the diff can only ever say that a masked value is there.
    edit_environment(
        repo / "environments", "staging", serving={"kubeconfig": {"secure": SENTINEL + "x"}}
    )
    runner = CliRunner()
    for fmt in ("text", "json"):
        result = runner.invoke(app, ["infra", "diff", "staging", "--base", "HEAD", "--format", fmt])
        assert result.exit_code == 0, result.output
        assert "v2" in result.output
        _clean(result.output)
    policy = runner.invoke(app, ["infra", "policy", "production"])
    assert policy.exit_code == 0
    _clean(policy.output)


def test_error_messages_never_hold_the_secret(repo: Path) -> None:
    envs = repo / "environments"
    edit_environment(
        envs,
        "production",
        serving={"canaryWeight": 30, "stableVersion": 1, "stableImage": pinned("production", "v1")},
    )
    with pytest.raises(ConfigError) as program_error:
        render("production")
    edit_environment(envs, "production", serving={"replicas": 0})
    with pytest.raises(ConfigError) as model_error:
        render("production")
    _clean(str(program_error.value), str(model_error.value))
    # A base revision that cannot render: its error travels back through the diff.
    commit_all(repo, "a broken production file")
    edit_environment(envs, "production", serving={"replicas": 3})
    with pytest.raises(DiffError) as diff_error:
        diff_environment("production", "HEAD", repo)
    assert "modelyard:serving.replicas" in str(diff_error.value)
    _clean(str(diff_error.value))
