"""Which models a change touches: what `modelyard pipeline run --changed-since REV` trains.

A change under `ml/models/NAME/` touches NAME; a change to what trains or serves every model (the
rest of `ml/`, the training and serving images, the project's dependencies) touches them all;
anything else (docs, tests, infrastructure) touches none."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from modelyard.pipelines.errors import PipelineError

MODELS_FOLDER = "ml/models/"
SHARED = ("ml/", "infra/images/train/", "infra/images/serving/", "pyproject.toml")


def changed_paths(root: Path, since: str) -> list[str]:
    """Paths changed from commit `since` to the work tree (committed or not, new files included),
    relative to the repository root."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=False)  # fmt: skip

    if git("rev-parse", "--verify", "--quiet", f"{since}^{{commit}}").returncode != 0:
        raise PipelineError(
            f"--changed-since {since!r} is not a commit of {root}: pass a commit, tag or branch "
            "(Jenkins: GIT_PREVIOUS_SUCCESSFUL_COMMIT)"
        )
    diff = git("diff", "--name-only", since, "--")
    untracked = git("ls-files", "--others", "--exclude-standard")
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
