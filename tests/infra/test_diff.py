"""`infra diff ENV --base GITREV`: a change to an environment, resource by resource."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from modelyard.infra.diff import DiffError, diff_environment
from modelyard.infra.render import render
from modelyard.pipelines.cli import app
from modelyard.pipelines.errors import PipelineError
from test_render_support import commit_all, edit_environment, git, make_repo, pinned
from typer.testing import CliRunner

MODELYARD = str(Path(sys.executable).parent / "modelyard")


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository for the tests that only edit the work tree: its HEAD renders once."""
    return make_repo(tmp_path_factory.mktemp("shared") / "repo")


@pytest.fixture
def repo(shared_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared repository with a clean work tree, which the test may edit (not commit)."""
    git(shared_repo, "checkout", "-q", "--", ".")
    git(shared_repo, "clean", "-fdq")
    monkeypatch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(shared_repo / "environments"))
    return shared_repo


@pytest.fixture
def own_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository of the test's own, for tests that commit."""
    folder = make_repo(tmp_path / "repo")
    monkeypatch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(folder / "environments"))
    return folder


def _cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MODELYARD_ENVIRONMENTS_DIR"}
    return subprocess.run(
        [MODELYARD, "infra", "diff", *args], cwd=repo, env=env, capture_output=True, text=True
    )


def test_nothing_changed_means_an_empty_diff(repo: Path) -> None:
    result = diff_environment("staging", "HEAD", repo)
    assert not result.changed
    total = len(render("staging").resources)
    assert result.unchanged == total
    assert result.to_text().endswith(f"0 to add, 0 to change, 0 to delete, {total} unchanged")


def test_a_promotion_on_docker_shows_the_container_changing_version(repo: Path) -> None:
    """The `local` environment serves from a Docker container: its version label moves."""
    edit_environment(repo / "environments", "local", serving={"desiredVersion": 4})
    result = diff_environment("local", "HEAD", repo)
    assert (result.versions_before, result.versions_after) == (["none"], ["v4"])
    assert [c.name for c in result.changes] == ["local-serving-server"]


def test_a_promotion_shows_as_the_serving_version_changing(repo: Path) -> None:
    image = pinned("staging", "v3")
    edit_environment(
        repo / "environments", "staging", serving={"desiredVersion": 3, "image": image}
    )
    result = diff_environment("staging", "HEAD", repo)
    assert (result.versions_before, result.versions_after) == (["none"], ["v3"])
    (change,) = result.changes
    assert (change.action, change.name) == ("update", "staging-serving-server")
    fields = {f.path: (f.before, f.after) for f in change.fields}
    assert fields["spec.template.spec.containers[server].image"][1] == image
    assert fields["spec.template.spec.containers[server].env[MODELYARD_MODEL_URI].value"] == (
        "",
        "models:/churn/3",
    )
    text = result.to_text()
    assert "serving version: none -> v3" in text
    assert (
        '~ spec.template.spec.containers[server].env[MODELYARD_MODEL_URI].value: "" => "models:/churn/3"'
        in text
    )
    assert text.endswith(f"0 to add, 1 to change, 0 to delete, {result.unchanged} unchanged")
    assert result.unchanged == len(render("staging").resources) - 1


def test_a_promotion_of_one_of_two_models_changes_that_models_deployment_only(
    own_repo: Path,
) -> None:
    environments = own_repo / "environments"
    edit_environment(environments, "staging", models={"segment": {"localPort": 8191}})
    commit_all(own_repo, "staging serves segment beside churn")
    image = pinned("staging", "segment-v4")
    edit_environment(environments, "staging",
                     models={"segment": {"localPort": 8191, "desiredVersion": 4, "image": image}})  # fmt: skip
    result = diff_environment("staging", "HEAD", own_repo)
    assert (result.versions_before, result.versions_after) == (
        ["churn none", "segment none"], ["churn none", "segment v4"])  # fmt: skip
    (change,) = result.changes
    assert (change.action, change.name) == ("update", "staging-serving-segment-server")
    assert "serving version: churn none, segment none -> churn none, segment v4" in result.to_text()


@pytest.mark.slow  # a fresh `modelyard` process (or two renders)
def test_base_is_rendered_with_its_own_revision_of_the_file(own_repo: Path) -> None:
    repo = own_repo
    edit_environment(repo / "environments", "staging", serving={"replicas": 2})
    second = commit_all(repo, "two replicas")
    edit_environment(repo / "environments", "staging", serving={"replicas": 3})
    against_first = diff_environment("staging", "HEAD~1", repo)
    against_second = diff_environment("staging", second, repo)
    replicas = "spec.replicas"
    first_change = next(c for c in against_first.changes if c.name == "staging-serving-server")
    second_change = next(c for c in against_second.changes if c.name == "staging-serving-server")
    assert {f.path: (f.before, f.after) for f in first_change.fields}[replicas] == (1, 3)
    assert {f.path: (f.before, f.after) for f in second_change.fields}[replicas] == (2, 3)


def test_a_strategy_change_replaces_deployments(repo: Path) -> None:
    edit_environment(
        repo / "environments",
        "staging",
        promotion={"rollout": {"strategy": "blue-green"}},
        serving={"desiredVersion": 4, "image": pinned("staging", "v4")},
    )
    result = diff_environment("staging", "HEAD", repo)
    actions = {(c.action, c.name) for c in result.changes}
    assert ("delete", "staging-serving-server") in actions
    assert ("add", "staging-serving-v4") in actions
    assert ("update", "staging-serving-service") in actions


def test_a_new_environment_is_all_additions(repo: Path) -> None:
    (repo / "environments" / "Pulumi.qa.yaml").write_text(
        (repo / "environments" / "Pulumi.staging.yaml").read_text()
    )
    result = diff_environment("qa", "HEAD", repo)
    total = len(render("qa").resources)
    assert total > 0
    assert result.counts() == {"add": total, "update": 0, "delete": 0}


def test_an_unknown_revision_is_a_clear_error(repo: Path) -> None:
    with pytest.raises(DiffError, match="'no-such-rev' is not a commit"):
        diff_environment("staging", "no-such-rev", repo)


def test_a_revision_before_render_existed_is_named(own_repo: Path) -> None:
    repo = own_repo
    git(repo, "rm", "-q", "infra/render.py")
    commit_all(repo, "an older program")
    with pytest.raises(DiffError, match="predates `infra render`"):
        diff_environment("staging", "HEAD", repo)


@pytest.mark.slow  # a fresh `modelyard` process (or two renders)
def test_cli_diff_for_ci_json_and_exit_code(repo: Path) -> None:
    edit_environment(
        repo / "environments",
        "staging",
        serving={"desiredVersion": 3, "image": pinned("staging", "v3")},
    )
    changed = _cli(repo, "staging", "--base", "HEAD", "--exit-code", "--format", "json")
    assert changed.returncode == 1, changed.stderr
    report = json.loads(changed.stdout)
    assert report["servingVersion"] == {"before": ["none"], "after": ["v3"]}
    assert report["summary"]["add"] == report["summary"]["delete"] == 0
    assert report["summary"]["update"] == 1


def test_cli_diff_turns_a_bad_base_into_a_user_error(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(app, ["infra", "diff", "staging", "--base", "nope"])
    # `modelyard` prints a PipelineError as one line and exits 2 (pipelines/cli.py).
    assert isinstance(result.exception, PipelineError)
    assert str(result.exception).startswith("'nope' is not a commit")
