"""`modelyard pipeline run --changed-since REV`: a run for each model the change touches and staging
serves, each on its own data, in a project folder of the test's own (its own git history)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from modelyard.ml.data.sample import generate_churn, generate_segment
from modelyard.pipelines.pipeline.changes import touched_models

from tests.helpers import MODELYARD, edit_environment, git

KNOWN = ["churn", "demand", "segment"]


@pytest.mark.parametrize(
    ("paths", "touched"),
    [
        (["ml/models/segment/model.yaml"], ["segment"]),
        (["ml/models/segment/model.yaml", "ml/models/churn/notes.md"], ["churn", "segment"]),
        (["ml/training/run.py"], KNOWN),  # what trains every model
        (["infra/images/serving/Dockerfile", "README.md"], KNOWN),
        (["README.md", "tests/config/test_x.py", "infra/program.py"], []),
        (["ml/models/retired/model.yaml"], []),  # a model no longer in the repository
    ],
)
def test_which_models_a_change_touches(paths: list[str], touched: list[str]) -> None:
    assert touched_models(paths, KNOWN) == touched


def _run(project: Path, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELYARD, "pipeline", "run", "local", "--data", str(data), "--changed-since", "HEAD",
         "--until", "validate-data", "--run-id", "change", *args],
        cwd=project, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "MODELYARD_STATE_DIR": str(project / "state")},
    )  # fmt: skip


def test_a_change_to_one_model_runs_that_model_on_its_own_data(
    project: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    generate_segment(1200, seed=3).to_csv(data / "segment.csv", index=False)
    (project / "ml" / "models" / "segment").mkdir(parents=True)
    (project / "ml" / "models" / "segment" / "notes.md").write_text("a new feature\n")
    done = _run(project, data, "--json")
    assert done.returncode == 0, done.stderr[-4000:]
    [run] = json.loads(done.stdout)
    assert (run["model"], run["run_id"], run["data"]) == (
        "segment", "change-segment", str(data / "segment.csv"))  # fmt: skip
    assert [name for name, s in run["stages"].items() if s["status"] == "passed"] == [
        "checkout", "unit-tests", "validate-data"]  # fmt: skip
    assert "changed since HEAD: segment" in done.stderr
    assert "--changed-since HEAD --run-id change" in done.stderr  # how to continue


def test_a_change_to_shared_code_runs_every_model_staging_serves(
    project: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    generate_churn(1200, seed=3).to_parquet(data / "churn.parquet", index=False)
    (project / "ml" / "training").mkdir(parents=True)
    (project / "ml" / "training" / "run.py").write_text("# a change every model trains with\n")
    missing = _run(project, data)
    assert missing.returncode == 2
    assert f"--data {data} holds no segment.parquet or segment.csv" in missing.stderr
    assert not (project / "state" / "pipeline").exists()  # nothing ran before every file was found

    generate_segment(1200, seed=3).to_csv(data / "segment.csv", index=False)
    done = _run(project, data, "--json")
    assert done.returncode == 0, done.stderr[-4000:]
    assert [(r["model"], r["run_id"]) for r in json.loads(done.stdout)] == [
        ("churn", "change-churn"), ("segment", "change-segment")]  # fmt: skip
    assert "demand changed, but staging does not serve it" in done.stderr


def test_a_change_that_touches_no_model_trains_nothing(project: Path, tmp_path: Path) -> None:
    (project / "README.md").write_text("docs only\n")
    done = _run(project, tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert "no model staging serves changed since HEAD: nothing to train" in done.stderr


def test_an_unknown_revision_is_refused_naming_the_option(project: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [MODELYARD, "pipeline", "run", "local", "--data", str(tmp_path), "--changed-since", "nope"],
        cwd=project, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--changed-since 'nope' is not a commit of" in done.stderr


def _changed(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MODELYARD, "pipeline", "changed", "local", "--since", "HEAD", *args],
                          cwd=project, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_pipeline_changed_lists_what_a_run_would_train_with_each_data_file(
    project: Path, tmp_path: Path
) -> None:
    """What the Jenkinsfile reads to start a build per model: names only on stdout."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "churn.parquet").touch()
    (data / "segment.csv").touch()
    (project / "ml" / "training").mkdir(parents=True)
    (project / "ml" / "training" / "run.py").write_text("# a change every model trains with\n")
    listed = _changed(project)
    assert (listed.returncode, listed.stdout) == (0, "churn\nsegment\n"), listed.stderr
    assert "demand changed, but staging does not serve it" in listed.stderr
    with_data = _changed(project, "--data", str(data))
    assert with_data.stdout == f"churn {data / 'churn.parquet'}\nsegment {data / 'segment.csv'}\n"
    # --others: what a build of local's own model (churn) leaves to builds of their own
    others = _changed(project, "--data", str(data), "--others")
    assert others.stdout == f"segment {data / 'segment.csv'}\n"
    a_file = _changed(project, "--data", str(data / "churn.parquet"), "--others")
    assert (a_file.returncode, a_file.stdout) == (2, "")
    assert f"--data {data / 'churn.parquet'} is not a folder" in a_file.stderr
    (data / "segment.csv").unlink()
    missing = _changed(project, "--data", str(data), "--others")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert f"--data {data} holds no segment.parquet or segment.csv" in missing.stderr


def _kind(project: Path, since: str) -> str:
    done = subprocess.run(
        [MODELYARD, "pipeline", "changed", "staging", "--since", since, "--kind"],
        cwd=project, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_what_a_push_asks_jenkins_for_release_commits_settings_or_code(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jenkins' BUILD_KIND: the commits a promotion pushed build nothing (the promotion deployed
    them), a person's change of settings deploys without training, anything else trains."""
    from modelyard.contracts.environment import load_environment
    from modelyard.pipelines.promotion.release_git import ReleaseChange, write_release

    base = git(project, "rev-parse", "HEAD").stdout.strip()
    monkeypatch.setenv("MODELYARD_ENVIRONMENTS_DIR", str(project / "environments"))
    staging = load_environment("staging")
    change = ReleaseChange("churn", "staging", "promote", None, 4, "jenkins", "", "run-abc")
    written = write_release(staging, "modelyard:serving", {"desiredVersion": 4}, change)
    assert written.commit is not None and written.changes
    assert git(project, "rev-parse", "HEAD").stdout.strip() == written.commit  # fast-forwarded
    assert _kind(project, base) == "releases"
    edit_environment(project / "environments", "staging", {"serving.replicas": 2})  # pushed
    assert _kind(project, base) == "deploy"
    (project / "checks" / "test_more.py").write_text("def test_more() -> None:\n    pass\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "a new check")
    assert _kind(project, base) == "train"
    assert _kind(project, "HEAD") == "train"  # a rebuild of the same commit
