"""`modelyard infra preview|up|refresh|destroy ENV`: the Pulumi Automation API over the real
Pulumi CLI, the one `make tools` builds (tools/versions.env pins it).

The program is the project's own (`Pulumi.yaml` -> infra/__main__.py), its stack config the
environment file (stackConfigDir: environments), its state a file backend in the state folder
unless PULUMI_BACKEND_URL names another one, its secrets the passphrase provider. Nothing
reaches for the internet: no update check, no plugin downloads.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelyard.contracts import variables
from modelyard.contracts.environment import (
    ConfigError,
    check_cross_section,
    environment_path,
    environments_dir,
    load_environment,
    project_root,
)
from modelyard.contracts.state import pulumi_state_dir
from modelyard.infra.pinned_tools import pinned_versions, tools_dir
from modelyard.pipelines.processes import is_alive
from pulumi import automation as auto

Operation = Literal["preview", "up", "refresh", "destroy"]
POLICY_PACK = Path(__file__).resolve().parent / "policy"
OFFLINE = {
    "PULUMI_SKIP_UPDATE_CHECK": "true",
    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
}


class PulumiCliMissing(ConfigError):
    """The Pulumi CLI the Automation API drives is not built or does not run."""


@dataclass(frozen=True)
class Result:
    env: str
    operation: Operation
    outcome: str  # succeeded, failed, or "preview"
    # The engine's own summary: created/updated/replaced/deleted/unchanged -> count.
    changes: dict[str, int]
    outputs: dict[str, Any] = field(default_factory=dict)  # secrets masked unless asked
    # created/updated/replaced/deleted -> the resources' names, from the engine's own events.
    resources: dict[str, list[str]] = field(default_factory=dict)
    # What the program told the engine (pulumi.warn, pulumi.error), in the order it said it.
    diagnostics: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        counts = ", ".join(f"{n} {op}" for op, n in sorted(self.changes.items()) if n)
        return f"{self.env}: {self.operation} {self.outcome}: {counts or 'no changes'}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.env,
            "operation": self.operation,
            "outcome": self.outcome,
            "changes": self.changes,
            "outputs": self.outputs,
            "resources": self.resources,
            "diagnostics": self.diagnostics,
        }


def pulumi_command() -> auto.PulumiCommand:
    """The pinned CLI: built by `make tools`, or a `pulumi` on PATH at that version."""
    version = pinned_versions()["PULUMI_VERSION"]
    built = tools_dir() / f"pulumi-{version}" / "bin" / "pulumi"
    on_path = shutil.which("pulumi")
    candidates = [str(built)] if built.is_file() else []
    candidates += [on_path] if on_path else []
    for found in candidates:
        try:
            command = auto.PulumiCommand(
                root=str(Path(found).resolve().parent.parent), skip_version_check=True
            )
        except (OSError, subprocess.CalledProcessError, auto.errors.CommandError):
            continue
        # Another version would ask for plugins other than the ones built for the SDKs.
        if command.version is not None and str(command.version) == version:
            return command
    raise PulumiCliMissing(
        f"no Pulumi CLI {version} here (looked in {built.parent} and on PATH): run `make tools`, "
        "which builds it from Go modules once per machine (tools/README.md). Without it, "
        "`modelyard infra render ENV` and `infra diff` show the program's desired state offline."
    )


def state_backend() -> str:
    """PULUMI_BACKEND_URL when set, else a file backend in the state folder (contracts/state.py)."""
    configured = os.environ.get("PULUMI_BACKEND_URL")
    if configured:
        if configured.startswith("file://"):  # the engine wants the folder to exist
            Path(configured.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        return configured
    folder = pulumi_state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve().as_uri()


def _require_passphrase() -> None:
    # Stack secrets are encrypted with the stack's passphrase, whatever the backend; without it
    # the CLI would stop at an interactive prompt the Automation API cannot answer.
    if not (
        os.environ.get("PULUMI_CONFIG_PASSPHRASE")
        or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    ):
        raise ConfigError(
            "PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) is not set: the stack's "
            "secrets are encrypted with it (the shipped examples use `modelyard-example`, "
            "README). Export it and re-run."
        )


def release_stale_locks(backend: str, stack: str, say: Callable[[str], None]) -> None:
    """An `up` killed on this machine leaves its lock in a file backend, and every later
    operation refuses to start. Pulumi's documented fix is to delete the lock file once its
    process is gone: done here for locks whose process, on this host, no longer runs."""
    if not backend.startswith("file://"):
        return
    folder = Path(backend.removeprefix("file://")) / ".pulumi/locks/organization/modelyard" / stack
    for lock in folder.glob("*.json"):
        try:
            holder = json.loads(lock.read_text())
        except (OSError, ValueError):
            continue
        if holder.get("hostname") != socket.gethostname() or is_alive(int(holder.get("pid", 0))):
            continue
        lock.unlink(missing_ok=True)
        lock.with_name(lock.name + ".attrs").unlink(missing_ok=True)
        say(f"removed the lock of {stack} left by process {holder.get('pid')}, which is gone")
        _drop_truncated_attributes(Path(backend.removeprefix("file://")), stack, say)


def _drop_truncated_attributes(root: Path, stack: str, say: Callable[[str], None]) -> None:
    """The file backend keeps each checkpoint's metadata in a `.attrs` file beside it, written
    in place: a process killed while writing it leaves it empty, and every later operation fails
    with "failed to load checkpoint: EOF" although the checkpoint itself is whole. Without the
    file the backend reads the checkpoint as it is, so a truncated one is removed."""
    for attrs in (root / ".pulumi/stacks/modelyard").glob(f"{stack}.json*.attrs"):
        try:
            json.loads(attrs.read_text() or "!")
        except ValueError:
            attrs.unlink(missing_ok=True)
            say(f"removed {attrs.name}, truncated by the process that was killed")
        except OSError:
            continue


def select_stack(env: str, say: Callable[[str], None] = print) -> auto.Stack:
    """The stack named after the environment, created on first use, running the project program."""
    root = project_root()
    # The engine reads the stack's config (and decrypts its secrets) from the project's own
    # environments/ (Pulumi.yaml: stackConfigDir); the kit must read the same file.
    if environment_path(env).resolve() != (root / "environments" / f"Pulumi.{env}.yaml").resolve():
        raise ConfigError(
            f"{variables.ENVIRONMENTS_DIR} points at {environments_dir()}, but the engine reads "
            f"stack files from {root / 'environments'} (Pulumi.yaml stackConfigDir): run from a "
            "project folder whose environments/ holds the files, or unset the variable"
        )
    check_cross_section(load_environment(env))  # every mistake in the file first, one message
    command = pulumi_command()
    backend = state_backend()
    _require_passphrase()
    # Pending operations of a killed `up` are then the engine's to settle, as it documents.
    release_stale_locks(backend, env, say)
    options = auto.LocalWorkspaceOptions(
        work_dir=str(root),
        pulumi_command=command,
        env_vars={"PULUMI_BACKEND_URL": backend, **OFFLINE},
        secrets_provider="passphrase",
    )
    return auto.create_or_select_stack(stack_name=env, work_dir=str(root), opts=options)


class EngineFailed(ConfigError):
    """The engine refused or failed the operation; its own words are in the message."""


def run(
    env: str,
    operation: Operation,
    on_output: Callable[[str], None] = print,
    show_secrets: bool = False,
) -> Result:
    try:
        return _run(env, operation, on_output, show_secrets)
    except auto.errors.CommandError as exc:
        lines = [line.strip().removeprefix("stderr:").strip() for line in str(exc).splitlines()]
        errors = [line for line in lines if line.startswith("error")]
        said = _policy_violations(lines) + errors[-4:]
        raise EngineFailed(
            f"pulumi {operation} of {env} failed: " + " / ".join(said or ["no output"])
        ) from None


def _policy_violations(lines: list[str]) -> list[str]:
    """The policy pack's findings: the lines under a failed pack's ❌, up to the next blank."""
    found: list[str] = []
    inside = False
    for line in lines:
        if "❌" in line:
            inside = True
        elif inside and not line:
            inside = False
        elif inside:
            found.append(line.lstrip("- ").strip())
    return [" ".join(found)] if found else []


def _run(
    env: str, operation: Operation, on_output: Callable[[str], None], show_secrets: bool
) -> Result:
    stack = select_stack(env, on_output)
    steps = _Steps()
    # The kit's policy pack runs inside the engine on every preview and up: a mandatory
    # violation stops the operation before anything changes.
    if operation == "preview":
        preview = stack.preview(
            diff=True, on_output=on_output, on_event=steps, policy_packs=[str(POLICY_PACK)]
        )
        for said in steps.diagnostics:  # the diff display leaves the program's warnings out
            on_output(said)
        changes = _counts(preview.change_summary)
        return Result(env, operation, "preview", changes, {}, steps.names, steps.diagnostics)
    if operation == "up":
        done: Any = stack.up(on_output=on_output, on_event=steps, policy_packs=[str(POLICY_PACK)])
    elif operation == "refresh":
        done = stack.refresh(on_output=on_output, on_event=steps)
    else:
        done = stack.destroy(on_output=on_output, on_event=steps)
    outputs = _outputs(stack.outputs(), show_secrets) if operation != "destroy" else {}
    changes = _counts(done.summary.resource_changes or {})
    return Result(
        env, operation, str(done.summary.result), changes, outputs, steps.names, steps.diagnostics
    )


_WORDS = {"create": "created", "update": "updated", "replace": "replaced",
          "delete": "deleted", "same": "unchanged"}  # fmt: skip


class _Steps:
    """Collects which resource each of the engine's steps changes, as the engine's summary counts
    them (a replacement's own create/delete halves are part of its `replace`), and the program's
    own warnings and errors."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {}
        self.diagnostics: list[str] = []

    def __call__(self, event: auto.EngineEvent) -> None:
        said = event.diagnostic_event
        if said is not None and said.severity in ("warning", "error") and not said.ephemeral:
            self.diagnostics.append(f"{said.severity}: {said.message.strip()}")
        pre = event.resource_pre_event
        if pre is None:
            return
        op = str(getattr(pre.metadata.op, "value", pre.metadata.op))
        # Provider resources (the default ones included) are not in the engine's own summary.
        if pre.metadata.type.startswith("pulumi:providers:"):
            return
        if op in _WORDS and op != "same":
            name = pre.metadata.urn.rpartition("::")[2]
            self.names.setdefault(_WORDS[op], []).append(name)


def _counts(changes: Mapping[Any, int]) -> dict[str, int]:
    """The engine's operation names, as people read them: create -> created, same -> unchanged."""
    counts = dict.fromkeys(_WORDS.values(), 0)
    for op, n in changes.items():
        name = str(getattr(op, "value", op))
        counts[_WORDS.get(name, name)] = counts.get(_WORDS.get(name, name), 0) + int(n)
    return counts


def _outputs(outputs: Mapping[str, auto.OutputValue], show_secrets: bool) -> dict[str, Any]:
    return {
        key: value.value if show_secrets or not value.secret else "[secret]"
        for key, value in sorted(outputs.items())
    }
