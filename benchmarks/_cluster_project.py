"""What the cluster benchmarks share: a state folder of their own, and production set up the way
`make demo-cluster` does (the cluster, the platform stack, the pipeline's first run), torn down
after the measurement."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def run_in_own_state(module: str, what: str) -> None:
    """`python -m MODULE` with a temporary state folder (its own cluster, stack and backend)."""
    with tempfile.TemporaryDirectory(prefix=f"modelyard-bench-{what}-") as tmp:
        done = subprocess.run(
            [sys.executable, "-m", module],
            env={**os.environ, "MODELYARD_STATE_DIR": tmp, "MODELYARD_DEMO_STACK": "bench"},
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"the {what} benchmark failed (exit {done.returncode})")


@contextmanager
def demo_production() -> Iterator[Path]:
    """Production serving as `make demo-cluster` leaves it; yields the project's environments."""
    from modelyard.infra.automation import run
    from modelyard.infra.local_cluster import runtime
    from modelyard.pipelines.cluster_demo import PLATFORM, run_cluster_demo, stop_serving
    from rich.console import Console

    log = Path(os.environ["MODELYARD_STATE_DIR"]) / "bench.log"
    quiet = Console(file=log.open("w"), width=120)
    print("setting production up as make demo-cluster does (log: a temporary folder) ...",
          flush=True)  # fmt: skip
    try:
        run_cluster_demo(keep_serving=True, console=quiet)
        yield Path.cwd() / "environments"  # the demo's project
    finally:
        stop_serving(quiet, stop_cluster=False)
        # The nodes go with the state folder that records them (a stopped node left behind
        # would refuse the next cluster on this machine).
        runtime.down(lambda line: None, destroy=True)
        run(PLATFORM, "destroy", lambda line: None)  # its containers, volumes and images


def edit(environments: Path, env: str, changes: dict[str, Any]) -> None:
    from modelyard.pipelines.cluster_demo import edit_environment_file

    edit_environment_file(environments / f"Pulumi.{env}.yaml", changes)
