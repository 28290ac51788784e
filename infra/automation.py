"""`modelyard infra up|preview ENV`: the Pulumi Automation API over the real Pulumi CLI.

The program is the project's own (`Pulumi.yaml` -> infra/__main__.py), its stack config the
environment file (stackConfigDir: environments), its state a local file backend unless
PULUMI_BACKEND_URL names another one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelyard.contracts.environment import ConfigError, load_environment, project_root
from modelyard.contracts.state import pulumi_state_dir
from pulumi import automation as auto

INSTALL_HINT = (
    "install it (https://www.pulumi.com/docs/iac/download-install/, e.g. "
    "`curl -fsSL https://get.pulumi.com | sh`) and put it on PATH"
)


class PulumiCliMissing(ConfigError):
    """The Pulumi CLI the Automation API drives is not installed or does not run."""


@dataclass(frozen=True)
class Result:
    summary: str
    outputs: dict[str, str]  # secrets shown as [secret]


def state_backend() -> str:
    """PULUMI_BACKEND_URL when set, else a file backend in the state folder (contracts/state.py)."""
    configured = os.environ.get("PULUMI_BACKEND_URL")
    if configured:
        return configured
    folder = pulumi_state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve().as_uri()


def pulumi_command() -> auto.PulumiCommand:
    found = shutil.which("pulumi")
    home_install = Path.home() / ".pulumi" / "bin" / "pulumi"
    if found is None and home_install.is_file():
        found = str(home_install)
    if found is None:
        raise PulumiCliMissing(
            f"the Pulumi CLI is not installed (no `pulumi` on PATH or in {home_install.parent}): "
            f"{INSTALL_HINT}. Without it, `modelyard infra render ENV` and `infra diff` show the "
            "same program's desired state offline."
        )
    try:
        return auto.PulumiCommand(root=str(Path(found).resolve().parent.parent))
    except (OSError, subprocess.CalledProcessError, auto.errors.CommandError) as exc:
        raise PulumiCliMissing(
            f"the Pulumi CLI at {found} does not run ({exc}): {INSTALL_HINT}"
        ) from None
    except auto.errors.InvalidVersionError as exc:
        raise PulumiCliMissing(
            f"the Pulumi CLI at {found} is too old ({exc}): {INSTALL_HINT}"
        ) from None


def _require_passphrase(backend: str) -> None:
    # The environment files' `secure:` values are decrypted with the stack's passphrase; without it
    # the CLI would stop at an interactive prompt the Automation API cannot answer.
    if backend.startswith("file://") and not (
        os.environ.get("PULUMI_CONFIG_PASSPHRASE")
        or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    ):
        raise ConfigError(
            "PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) is not set: the local "
            "state backend encrypts stack secrets with it. Export it and re-run."
        )


def select_stack(env: str) -> auto.Stack:
    """The stack named after the environment, created on first use, running the project program."""
    load_environment(env)  # every mistake in the file first, as one message
    command = pulumi_command()
    backend = state_backend()
    _require_passphrase(backend)
    root = project_root()
    options = auto.LocalWorkspaceOptions(
        work_dir=str(root), pulumi_command=command, env_vars={"PULUMI_BACKEND_URL": backend}
    )
    return auto.create_or_select_stack(stack_name=env, work_dir=str(root), opts=options)


def preview(env: str, on_output: Callable[[str], None] = print) -> Result:
    stack = select_stack(env)
    result = stack.preview(diff=True, on_output=on_output)
    changes = ", ".join(f"{op} {n}" for op, n in sorted(result.change_summary.items()))
    return Result(f"{env}: preview: {changes or 'no changes'}", {})


def up(env: str, on_output: Callable[[str], None] = print) -> Result:
    stack = select_stack(env)
    result = stack.up(on_output=on_output)
    changes = result.summary.resource_changes or {}
    summary = ", ".join(f"{op} {n}" for op, n in sorted(changes.items()))
    outputs = {
        key: "[secret]" if value.secret else str(value.value)
        for key, value in result.outputs.items()
    }
    return Result(f"{env}: {result.summary.result}: {summary or 'no changes'}", outputs)
