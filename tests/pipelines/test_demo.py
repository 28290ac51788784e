"""`modelyard demo` (`make demo`) as a user runs it, twice, in a state folder of its own: churn
through the pipeline, and the multiclass and regression sample models trained, promoted and served
beside it, each with its own history; everything stopped at the end."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import MODELYARD

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_demo_serves_three_kinds_of_model_side_by_side(tmp_path: Path) -> None:
    variables = {**os.environ, "MODELYARD_STATE_DIR": str(tmp_path / "state")}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MODELYARD_ENVIRONMENTS_DIR"):
        variables.pop(key, None)
    done = subprocess.run([MODELYARD, "demo"], env=variables, capture_output=True, text=True,
                          timeout=1200, check=False)  # fmt: skip
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-6000:]
    # Its state went to the state folder it was given, not the checkout's (a `make demo` run
    # there before `make test` leaves this test alone).
    assert (tmp_path / "state" / "demo" / "mlflow").is_dir()
    assert "DRIFT caught" in said
    assert "segment: a multiclass model, version 1" in said
    assert "demand: a regression model, version 1" in said
    for env in ("staging", "production"):
        assert f"{env}: promoted segment v1" in said and f"{env}: promoted demand v1" in said
    for model in ("churn", "segment", "demand"):
        assert f"promotion history of {model}" in said
    # Each sample model's own server answered in both environments, then everything stopped.
    assert said.count("segment in ") == 2 and said.count("demand in ") == 2
    for port in (5000, 8181, 8182, 8191, 8192, 8201, 8202):
        assert not _listening(port), f"port {port} still answers after the demo"

    # Again: each model is trained again and promoted, or kept where its rules say so; what the
    # first run's promotions wrote into the environment copies is still there (nothing repaired).
    again = subprocess.run([MODELYARD, "demo"], env=variables, capture_output=True, text=True,
                           timeout=1200, check=False)  # fmt: skip
    said = again.stdout + again.stderr
    assert again.returncode == 0, said[-6000:]
    assert "segment: a multiclass model, version 2" in said and "repaired" not in said
    assert said.count("segment in ") == 2 and said.count("demand in ") == 2
