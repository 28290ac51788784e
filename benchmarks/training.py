"""`modelyard train` against a bare LightGBM script, whole process against whole process.

1,000,000 rows x 30 features, 200 rounds, 63 leaves. The bare script (benchmarks/_bare_lightgbm.py)
is what a data scientist writes by hand: read the same file, train on the same rows with the same
parameters and the same validation set scored each round, score the holdout, save the model.
modelyard's figure is the real command: read and hash the file, validate, train with checkpoints,
track every round, evaluate, plot, log and register the model in a real `mlflow server` (the
server runs beside it, outside the measured process tree). Each side is measured from process
start to exit, with the peak memory of its whole process tree (benchmarks/_process_tree.py).
Goals (#27): at most 1.10x the time and 1.20x the peak memory.

The two are measured in turn, five times: on a shared machine the speed of both drifts by a
fifth from minute to minute, and a pair measured back to back sees the same machine. The verdict
is on the median of the five ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from benchmarks._bare_lightgbm import DEFAULTS
from benchmarks._process_tree import Measured, run_measured

ROWS, FEATURES, ROUNDS, LEAVES = 1_000_000, 30, 200, 63
PAIRS = 5
REPO = Path(__file__).resolve().parents[1]


def stolen_seconds() -> float:
    """CPU time the hypervisor gave other guests (Linux's steal counter, both cores): when it
    grows during a measurement, that measurement ran on less machine than its pair."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def make_data(path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
    weights = rng.normal(size=FEATURES)
    logit = features @ weights * 0.3 + np.sin(features[:, 0] * 2) + rng.normal(0, 1.0, size=ROWS)
    frame = pd.DataFrame(features, columns=[f"f{i:02d}" for i in range(FEATURES)])
    frame["label"] = (logit > 0).astype(np.int8)
    frame.to_parquet(path, index=False)
    return frame


PARAMS = {"objective": "binary", "num_leaves": LEAVES, "verbose": -1, "seed": DEFAULTS["seed"],
          "deterministic": True, "metric": ["auc", "binary_logloss"]}  # fmt: skip
TIME_GOAL, MEMORY_GOAL = 1.10, 1.20


def bare(data: Path, work: Path) -> Measured:
    command = [sys.executable, str(REPO / "benchmarks/_bare_lightgbm.py"), str(data), "label",
               str(work / "bare-model.txt"), str(ROUNDS), json.dumps(PARAMS)]  # fmt: skip
    return _checked("the bare LightGBM script", run_measured(command))


def modelyard(data: Path, work: Path) -> Measured:
    from modelyard.pipelines.local_mlflow import start_mlflow_server

    environments = work / "environments"
    environments.mkdir()
    document = yaml.safe_load((REPO / "environments/Pulumi.local.yaml").read_text())
    config = document["config"]
    config["modelyard:mlflow"]["experiment"] = "bench"
    config["modelyard:notify"] = {}
    config["modelyard:training"] = {
        "model": "churn",
        "gate": "roc_auc >= 0.5",
        "budget": {"trials": 1},
        "numBoostRound": ROUNDS,
        "earlyStoppingRounds": None,
        "checkpointEvery": 50,
        "params": {"num_leaves": LEAVES},
    }
    (environments / "Pulumi.bench.yaml").write_text(yaml.safe_dump(document))
    server = start_mlflow_server(work / "mlflow")
    env = {
        **os.environ,
        "MODELYARD_ENVIRONMENTS_DIR": str(environments),
        "MODELYARD_STATE_DIR": str(work / "state"),
        "MLFLOW_TRACKING_URI": server.url,
    }
    command = [str(Path(sys.executable).with_name("modelyard")), "train", "bench", "--data", str(data),
               "--target", "label", "--json", "--no-notify"]  # fmt: skip
    try:
        return _checked("modelyard train", run_measured(command, env))
    finally:
        server.stop()


def _checked(what: str, measured: Measured) -> Measured:
    if measured.returncode != 0:
        raise SystemExit(f"{what} failed:\n{measured.stderr[-3000:]}")
    return measured


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "bench.parquet"
        print(
            f"dataset: {ROWS:,} rows x {FEATURES} features; {ROUNDS} rounds, {LEAVES} leaves",
            flush=True,
        )
        make_data(data)
        times, memories = [], []
        for pair in range(1, PAIRS + 1):
            folder = work / f"pair-{pair}"
            folder.mkdir()
            stolen = stolen_seconds()
            by_hand = bare(data, folder)
            between = stolen_seconds()
            ours = modelyard(data, folder)
            stolen, between = between - stolen, stolen_seconds() - between
            times.append(ours.seconds / by_hand.seconds)
            memories.append(ours.peak_bytes / by_hand.peak_bytes)
            print(f"pair {pair}: bare LightGBM script {by_hand.seconds:5.1f} s, "
                  f"{by_hand.peak_bytes / 2**20:6.0f} MiB; modelyard train {ours.seconds:5.1f} s, "
                  f"{ours.peak_bytes / 2**20:6.0f} MiB; ratios {times[-1]:.2f}x time, "
                  f"{memories[-1]:.2f}x memory (CPU stolen by the host: {stolen:.1f} s, "
                  f"{between:.1f} s)", flush=True)  # fmt: skip
        out, auc = json.loads(ours.stdout), json.loads(by_hand.stdout)["roc_auc"]
        print(f"  registered {out['model_name']} version {out['model_version']}, holdout roc_auc "
              f"{out['metrics']['roc_auc']:.4f} (bare script: {auc:.4f})")  # fmt: skip
        for name, ratios, goal in (("time", times, TIME_GOAL), ("peak memory", memories,
                                                                MEMORY_GOAL)):  # fmt: skip
            ratio = statistics.median(ratios)
            verdict = "meets" if ratio <= goal else "misses"
            print(f"{name}, modelyard / bare, median of {PAIRS} pairs: {ratio:.2f}x "
                  f"(goal <= {goal:.2f}x: {verdict})")  # fmt: skip


if __name__ == "__main__":
    main()
