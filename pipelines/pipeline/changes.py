"""Which models a change touches: what `modelyard pipeline run --changed-since REV` trains, and
what a Jenkins push build is for (build_kind).

A change under `ml/models/NAME/` touches NAME; a change to what trains or serves every model (the
rest of `ml/`, the training and serving images, the project's dependencies) touches them all;
anything else (docs, tests, infrastructure) touches none."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from modelyard.contracts import git_trailers
from modelyard.pipelines.errors import PipelineError

MODELS_FOLDER = "ml/models/"
ENVIRONMENTS = "environments/"
SHARED = ("ml/", "infra/images/train/", "infra/images/serving/", "pyproject.toml")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def _require_commit(root: Path, since: str, option: str) -> None:
    if _git(root, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}").returncode != 0:
        raise PipelineError(
            f"{option} {since!r} is not a commit of {root}: pass a commit, tag or branch "
            "(Jenkins: GIT_PREVIOUS_SUCCESSFUL_COMMIT)"
        )


RELEASES, DEPLOY, TRAIN = "releases", "deploy", "train"


def build_kind(root: Path, since: str) -> str:
    """What the commits from `since` to HEAD ask a build for: RELEASES when every one is a
    release commit modelyard pushed (its record trailer, environment files alone), which the
    command that pushed it has deployed already; DEPLOY when they change environment files alone
    (a person's change of settings: deploy it, train nothing); TRAIN otherwise."""
    _require_commit(root, since, "--since")
    commits = _git(root, "rev-list", f"{since}..HEAD").stdout.split()
    if not commits:
        return TRAIN  # a rebuild of the same commit: as asked
    releases = True
    for commit in commits:
        paths = _git(root, "diff-tree", "--no-commit-id", "--name-only", "-r", commit).stdout
        if not all(path.startswith(ENVIRONMENTS) for path in paths.split()):
            return TRAIN
        message = _git(root, "show", "-s", "--format=%B", commit).stdout.splitlines()
        releases = releases and any(line.startswith(f"{git_trailers.RECORD}:") for line in message)
    return RELEASES if releases else DEPLOY


def changed_paths(root: Path, since: str) -> list[str]:
    """Paths changed from commit `since` to the work tree (committed or not, new files included),
    relative to the repository root."""
    _require_commit(root, since, "--changed-since")
    diff = _git(root, "diff", "--name-only", since, "--")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard")
    return sorted({*diff.stdout.split(), *untracked.stdout.split()})


def touched_models(paths: Iterable[str], known: Sequence[str]) -> list[str]:
    """The models of `known` the changed `paths` touch, in `known`'s order."""
    touched: set[str] = set()
    for path in paths:
        if path.startswith(MODELS_FOLDER):
            touched.add(path.removeprefix(MODELS_FOLDER).partition("/")[0])
        elif path.startswith(SHARED):
            return list(known)
    return [name for name in known if name in touched]
