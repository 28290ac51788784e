"""`modelyard hooks install`: a git post-commit hook that starts the local pipeline in the
background (the source documents' "hooks for auto trigger"), logging to a file."""

from __future__ import annotations

import shlex
import stat
import sys
from pathlib import Path

from modelyard.pipelines.errors import PipelineError

MARKER = "# installed by modelyard hooks install"


def install_post_commit(repo: Path, env: str, data: Path, logs: Path, force: bool = False) -> Path:
    git_dir = repo / ".git"
    if not git_dir.is_dir():
        raise PipelineError(
            f"{repo} is not a git work tree (no .git folder): run it in the repository"
        )
    hook = git_dir / "hooks" / "post-commit"
    if hook.exists() and MARKER not in hook.read_text(errors="replace") and not force:
        raise PipelineError(
            f"{hook} exists and was not written by modelyard: move it away or pass --force"
        )
    modelyard = Path(sys.executable).with_name("modelyard")
    command = " ".join(shlex.quote(str(part)) for part in
                       (modelyard, "pipeline", "run", env, "--data", data.resolve()))  # fmt: skip
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(
        "#!/bin/sh\n"
        f"{MARKER}\n"
        "# Starts the pipeline for the commit just made, in the background; the commit returns at once.\n"
        f"mkdir -p {shlex.quote(str(logs))}\n"
        f"log={shlex.quote(str(logs))}/pipeline-$(date +%Y%m%d-%H%M%S)-$(git rev-parse --short HEAD).log\n"
        f'echo "modelyard: pipeline started for $(git rev-parse --short HEAD), log $log"\n'
        f'nohup {command} > "$log" 2>&1 &\n'
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return hook
