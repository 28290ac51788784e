"""Diff: what a change does to an environment, resource by resource and field by field.

The base side is rendered from GITREV's own program and environment file (extracted with
`git archive` into a temporary folder, so the work tree and index are never touched); the new
side is the work tree as it is now. Both come from the mock-runtime render, so secrets are
already `[secret]` before any comparison happens.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from modelyard.contracts import variables
from modelyard.contracts.environment import project_root
from modelyard.contracts.labels import MODEL_LABEL, VERSION_LABEL
from modelyard.infra.render import RenderedState, render

# What a past revision needs to render itself.
# What the program imports (contracts/ since the namespace; ml/ for the serving image).
_PROGRAM_PATHS = ("contracts", "infra", "ml", "Pulumi.yaml")


class DiffError(Exception):
    """The base revision cannot be rendered (unknown revision, broken program or file)."""


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class ResourceChange:
    action: str  # "add", "delete" or "update"
    type: str
    name: str
    fields: list[FieldChange] = field(default_factory=list)


@dataclass
class StateDiff:
    environment: str
    base: str
    changes: list[ResourceChange]
    unchanged: int
    versions_before: list[str]
    versions_after: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        counts = {"add": 0, "update": 0, "delete": 0}
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "base": self.base,
            "servingVersion": {"before": self.versions_before, "after": self.versions_after},
            "summary": {**self.counts(), "unchanged": self.unchanged},
            "changes": [
                {
                    "action": c.action,
                    "type": c.type,
                    "name": c.name,
                    "fields": [
                        {"path": f.path, "before": f.before, "after": f.after} for f in c.fields
                    ],
                }
                for c in self.changes
            ],
        }

    def to_text(self) -> str:
        marks = {"add": "+", "delete": "-", "update": "~"}
        lines = [f"Environment {self.environment}: changes against {self.base}"]
        if self.versions_before != self.versions_after:
            before = ", ".join(self.versions_before) or "nothing"
            after = ", ".join(self.versions_after) or "nothing"
            lines.append(f"  serving version: {before} -> {after}")
        for change in self.changes:
            lines.append(f"{marks[change.action]} {change.type} {change.name}")
            for f in change.fields:
                if change.action == "add":
                    lines.append(f"    + {f.path}: {_show(f.after)}")
                elif change.action == "delete":
                    lines.append(f"    - {f.path}: {_show(f.before)}")
                elif f.before is None:
                    lines.append(f"    + {f.path}: {_show(f.after)}")
                elif f.after is None:
                    lines.append(f"    - {f.path}: {_show(f.before)}")
                else:
                    lines.append(f"    ~ {f.path}: {_show(f.before)} => {_show(f.after)}")
        counts = self.counts()
        lines.append(
            f"{counts['add']} to add, {counts['update']} to change, {counts['delete']} to delete, "
            f"{self.unchanged} unchanged"
        )
        return "\n".join(lines)


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def diff_environment(environment: str, base: str, repo: Path | None = None) -> StateDiff:
    """Render `environment` at git revision `base` and now, and compare the two."""
    repo = repo or project_root()
    before = render_at_revision(environment, base, repo)
    after = render(environment)
    return compare(before, after, base)


def compare(before: RenderedState, after: RenderedState, base: str = "base") -> StateDiff:
    old = {(r.type, r.name): r for r in before.resources}
    new = {(r.type, r.name): r for r in after.resources}
    changes: list[ResourceChange] = []
    unchanged = 0
    for key in sorted(old.keys() | new.keys()):
        if key not in old:
            fields = [FieldChange(p, None, v) for p, v in flatten(new[key].inputs).items()]
            changes.append(ResourceChange("add", *key, fields))
        elif key not in new:
            fields = [FieldChange(p, v, None) for p, v in flatten(old[key].inputs).items()]
            changes.append(ResourceChange("delete", *key, fields))
        else:
            was, now = flatten(old[key].inputs), flatten(new[key].inputs)
            fields = [
                FieldChange(p, was.get(p), now.get(p))
                for p in sorted(was.keys() | now.keys())
                if was.get(p) != now.get(p)
            ]
            if fields:
                changes.append(ResourceChange("update", *key, fields))
            else:
                unchanged += 1
    return StateDiff(
        environment=after.environment,
        base=base,
        changes=changes,
        unchanged=unchanged,
        versions_before=serving_versions(before),
        versions_after=serving_versions(after),
    )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaves; list items that carry a `name` are addressed by it, not by index,
    so adding an env var or container does not shift every later entry."""
    if isinstance(value, dict):
        if not value:
            return {prefix: {}} if prefix else {}
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        if not value:
            return {prefix: []}
        out = {}
        for i, item in enumerate(value):
            named = item.get("name") if isinstance(item, dict) else None
            out.update(flatten(item, f"{prefix}[{named if isinstance(named, str) else i}]"))
        return out
    return {prefix: value}


def serving_versions(state: RenderedState) -> list[str]:
    """The model versions the environment's serving Deployments/containers run, each named with
    its model when the environment serves more than one (`segment v4`)."""
    found: set[tuple[str, str]] = set()
    for r in state.resources:
        pods = r.inputs.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
        container = r.inputs.get("labels") if "docker:Container" in r.type else None
        for labels in (pods, container or {}):
            if VERSION_LABEL in labels:
                found.add((str(labels.get(MODEL_LABEL, "")), str(labels[VERSION_LABEL])))
    several = len({model for model, _ in found}) > 1
    return sorted(f"{model} {version}" if several else version for model, version in found)


def render_at_revision(environment: str, revision: str, repo: Path) -> RenderedState:
    """The environment's desired state as the program and file at `revision` describe it."""
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if commit is None:
        raise DiffError(f"{revision!r} is not a commit in {repo}: pass a branch, tag or sha")
    return _render_commit(environment, commit, revision, repo.resolve())


# A commit never changes, so neither does its rendering: CI diffing several environments or a
# reviewer re-running the diff pays for each base render once per process.
@functools.lru_cache(maxsize=32)
def _render_commit(environment: str, commit: str, revision: str, repo: Path) -> RenderedState:
    env_file = f"environments/Pulumi.{environment}.yaml"
    if _git(repo, "cat-file", "-e", f"{commit}:{env_file}") is None:
        return RenderedState(environment)  # the environment is new: everything is added
    if _git(repo, "cat-file", "-e", f"{commit}:infra/render.py") is None:
        raise DiffError(f"{revision} predates `infra render`: diff against a later revision")
    present = [
        p for p in _PROGRAM_PATHS if _git(repo, "cat-file", "-e", f"{commit}:{p}") is not None
    ]
    with tempfile.TemporaryDirectory(prefix="modelyard-diff-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", commit, *present, env_file],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise DiffError(f"git archive {revision} failed: {archive.stderr.decode().strip()}")
        with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        env = {k: v for k, v in os.environ.items() if k != variables.ENVIRONMENTS_DIR}
        # The base's own code as the `modelyard` namespace, found before the installed one.
        namespace = Path(tmp, ".namespace")
        namespace.mkdir()
        (namespace / "modelyard").symlink_to(tmp)
        env["PYTHONPATH"] = str(namespace)
        result = subprocess.run(
            [sys.executable, "-m", "modelyard.infra.render", environment],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        problem = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no output"
        raise DiffError(f"rendering {environment} at {revision} failed: {problem}")
    return RenderedState.from_dict(json.loads(result.stdout))


def _git(repo: Path, *args: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None
