"""Small helpers the tests share: run the real `modelyard` command, edit environment files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it, in the current process environment."""
    return subprocess.run(
        [MODELYARD, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


DELETE = object()  # as a value in edit_environment: remove the key


def edit_environment(folder: Path, name: str, changes: dict[str, Any]) -> Path:
    """Set `modelyard:<key>` entries (dotted paths) in folder/Pulumi.<name>.yaml."""
    path = folder / f"Pulumi.{name}.yaml"
    document = yaml.safe_load(path.read_text()) if path.exists() else {"config": {}}
    config = document["config"]
    for dotted, value in changes.items():
        section, *rest = dotted.split(".")
        key = f"modelyard:{section}"
        if not rest:
            if value is DELETE:
                config.pop(key, None)
            else:
                config[key] = value
            continue
        node = config.setdefault(key, {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(rest[-1], None)
        else:
            node[rest[-1]] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    push_edit(path)
    return path


def edit_local_training(folder: Path, experiment: str, **training: object) -> None:
    """The `local` environment's MLflow experiment and `training.<key>` settings."""
    changes = {f"training.{k}": v for k, v in training.items()}
    edit_environment(folder, "local", {"mlflow.experiment": experiment, **changes})


GIT_IDENTITY = {"GIT_AUTHOR_NAME": "platform-engineer", "GIT_AUTHOR_EMAIL": "pe@example.invalid",
                "GIT_COMMITTER_NAME": "platform-engineer",
                "GIT_COMMITTER_EMAIL": "pe@example.invalid"}  # fmt: skip


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          env={**os.environ, **GIT_IDENTITY}, check=check)  # fmt: skip


def push_edit(path: Path) -> None:
    """In a project with an `origin` (promotions commit there), an edit is committed and pushed,
    as a platform engineer lands a change: a file edited and left uncommitted is refused."""
    root = path.parent.parent
    if (
        not (root / ".git").exists()
        or git(root, "remote", "get-url", "origin", check=False).returncode
    ):
        return
    git(root, "add", str(path))
    if git(root, "diff", "--cached", "--quiet", check=False).returncode:
        git(root, "commit", "-q", "-m", f"edit {path.name}")
        git(root, "push", "-q", "origin", "HEAD:refs/heads/main")


SHIPPED_REMOTE = "ssh://git@git.example.internal/ml/modelyard.git"  # staging's and production's


def with_origin(root: Path, remote: Path) -> None:
    """Commit everything in `root` (a new repository) and push it to a bare `remote` as main:
    the project's repository, as the environments' `modelyard:promotion.git` expects it."""
    git(remote.parent, "init", "-q", "--bare", "-b", "main", str(remote))
    for path in root.glob("environments/Pulumi.*.yaml"):  # push where this project lives
        path.write_text(path.read_text(encoding="utf-8").replace(SHIPPED_REMOTE, "origin"))
    if not (root / ".git").exists():
        git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", "the project")
    git(root, "remote", "add", "origin", str(remote))
    git(root, "push", "-q", "-u", "origin", "HEAD:refs/heads/main")


def without_auth(folder: Path) -> None:
    """The model servers of this copy of environments/ are open, like the embedded default's;
    the tests about tokens set their own (tests/serving/test_auth*.py, the cluster project)."""
    block = re.compile(
        r"\n    # Bearer tokens the model server asks for[^\n]*\n(?:    #[^\n]*\n)*    auth:\n"
        r"(?:      [^\n]*\n)+"
    )
    for path in folder.glob("Pulumi.*.yaml"):
        path.write_text(block.sub("\n", path.read_text(encoding="utf-8")))


def without_git(folder: Path) -> None:
    """Promotions in this copy of environments/ write the file alone (no repository around it);
    the tests about git give theirs a real remote (with_origin)."""
    for path in folder.glob("Pulumi.*.yaml"):
        text = path.read_text(encoding="utf-8")
        path.write_text(
            text.replace("    git:\n      enabled: true\n", "    git:\n      enabled: false\n")
        )
