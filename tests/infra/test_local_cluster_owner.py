"""One cluster per machine, and a cluster that stopped without `modelyard cluster down` (a killed
test run, its node containers removed by hand) no longer claims it: the CLI as a user types it,
against a runtime folder of the test's own (the session's cluster keeps the machine's)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from modelyard.infra.local_cluster.binaries import Binaries

from tests.helpers import MODELYARD

pytestmark = [pytest.mark.docker, pytest.mark.cluster]


def _cli(state: Path, run: Path, *args: str) -> subprocess.CompletedProcess[str]:
    variables = {**os.environ, "MODELYARD_STATE_DIR": str(state),
                 "MODELYARD_CLUSTER_RUN_DIR": str(run)}  # fmt: skip
    return subprocess.run([MODELYARD, "cluster", *args], env=variables, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip


def test_a_cluster_whose_nodes_were_removed_by_hand_is_named_with_the_way_forward(
    cluster_tools: Binaries, docker_engine: None, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    gone = tmp_path / "gone"
    (gone / "cluster").mkdir(parents=True)
    container = f"modelyard-gone-{uuid.uuid4().hex[:8]}"  # no such container exists
    (gone / "cluster" / "nodes.json").write_text(json.dumps({
        "network": f"{container}-net", "prefix": "10.250.254", "formed": True,
        "nodes": [{"name": "cp", "role": "control_plane", "address": "10.250.254.2",
                   "container": container, "ssh_port": 0}],
    }))  # fmt: skip
    (run / "owner").write_text(f"{gone / 'cluster'}\n")  # started, never brought down

    # Another project's commands see their own cluster, not the one that died.
    mine = tmp_path / "mine"
    status = _cli(mine, run, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["kubeconfig"].startswith(str(mine / "cluster"))

    # Its own project is told what was lost and how to go on, and nothing is half-started.
    up = _cli(gone, run, "up")
    assert up.returncode == 2, up.stdout + up.stderr
    (message,) = up.stderr.strip().splitlines()
    assert container in message and str(gone / "cluster") in message
    assert "`modelyard cluster down --destroy`" in message
    down = _cli(gone, run, "down", "--destroy")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not (gone / "cluster" / "nodes.json").exists()
    assert not (run / "owner").exists()
