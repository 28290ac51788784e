"""The local Kubernetes: `modelyard cluster up` on an empty cluster folder (three nodes made by the
kubernetes_node role), `status`, `down`, `up` again with etcd's data and the images kept (the
goal, from issue #16: a stopped cluster back within a minute), and `down --destroy`. In a state
folder of its own; needs no cluster to be running."""

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
            done = subprocess.run([MODELYARD, "cluster", *args], env=variables, timeout=1500,
                                  capture_output=True, text=True, check=False)  # fmt: skip
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"cluster {' '.join(args)} failed:\n{done.stderr[-2000:]}")
            return seconds

        figures: dict[str, float] = {}
        try:
            figures["up, new nodes"] = timed("up")
            figures["status"] = timed("status", "--json")
            figures["down"] = timed("down")
            figures["up again (state kept)"] = timed("up")
        finally:
            figures["down --destroy"] = timed("down", "--destroy")
    print(f"{'local cluster (3 nodes)':<28} seconds   (goal: up again under 60 s)")
    for name, seconds in figures.items():
        print(f"  {name:<26} {seconds:7.1f}")
    print(f"goal {'met' if figures['up again (state kept)'] < 60 else 'NOT met'}")
