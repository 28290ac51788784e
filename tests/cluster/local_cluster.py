"""The session's cluster as the tests drive it: `modelyard cluster` as a user types it, with the
state folder the cluster was made in."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import MODELYARD


@dataclass(frozen=True)
class LocalCluster:
    state: Path  # MODELYARD_STATE_DIR of the commands that run it

    def variables(self) -> dict[str, str]:
        return {**os.environ, "MODELYARD_STATE_DIR": str(self.state)}

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MODELYARD, "cluster", *args], env=self.variables(), capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        done = self.cli("status", "--json")
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        status = self.status()
        done = subprocess.run(
            [status["kubectl"], f"--kubeconfig={status['kubeconfig']}", *args], input=stdin,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr


def destroy_demo_platform(stack: str, state: Path, variables: dict[str, str]) -> None:
    """Remove the demo's platform stack (its containers and volumes) that `modelyard demo
    --cluster` made in STATE/demo-cluster; the cluster's namespaces go with the cluster."""
    from modelyard.pipelines.cluster_demo import PASSPHRASE

    folder = state / "demo-cluster"
    subprocess.run(
        [MODELYARD, "infra", "destroy", stack], cwd=folder / "project", capture_output=True,
        check=False, env={**variables, "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
                          "PULUMI_BACKEND_URL": (folder / "pulumi-state").as_uri()},
    )  # fmt: skip
