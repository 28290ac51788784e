"""The local Kubernetes (issue #16): `modelyard cluster up` on an empty cluster folder (the goal: under
a minute once `make cluster-tools` has built it), `down`, `up` again with what was deployed kept
(the pods come back), and `status`. In a state folder of its own; needs no cluster to be running."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELYARD = str(Path(sys.executable).with_name("modelyard"))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-cluster-") as tmp:
        variables = {**os.environ, "MODELYARD_STATE_DIR": tmp}

        def timed(*args: str) -> float:
            start = time.perf_counter()
            done = subprocess.run([MODELYARD, "cluster", *args], env=variables,
                                  capture_output=True, text=True, check=False)  # fmt: skip
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"cluster {' '.join(args)} failed:\n{done.stderr[-2000:]}")
            return seconds

        figures: dict[str, float] = {}
        try:
            figures["up, empty cluster"] = timed("up")
            figures["status"] = timed("status", "--json")
        finally:
            figures["down"] = timed("down")
        figures["up again (state kept)"] = timed("up")
        figures["down again"] = timed("down")
    print(f"{'local cluster':<28} seconds   (goal: up under 60 s)")
    for name, seconds in figures.items():
        print(f"  {name:<26} {seconds:7.1f}")
    met = figures["up, empty cluster"] < 60 and figures["up again (state kept)"] < 60
    print(f"goal {'met' if met else 'NOT met'}")
