"""Issue 2's figure: modelyard's `train` wall time against LightGBM's bare training time.

1,000,000 rows x 30 features, 200 rounds, 63 leaves. The bare figure is `lgb.train` on the same
rows modelyard trains on (its training split, with the same validation set evaluated each round),
in-process with data already in memory. modelyard's figure is the real command, from process
start to exit: read and hash the file, validate, train with checkpoints, track every round,
evaluate, plot, log and register the model in a real `mlflow server`. Goal: at most 1.3x.

The two are measured in turn, five times: on a shared machine the speed of both drifts by a
fifth from minute to minute, and a pair measured back to back sees the same machine. The verdict
is on the median of the five ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

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


def bare_seconds(frame: pd.DataFrame) -> tuple[float, float]:
    import lightgbm as lgb
    from modelyard.ml.training.features import prepare, stratified_split

    data = prepare(frame, "label")
    split = stratified_split(data.labels, 0.2, 0.2, 42)
    train = lgb.Dataset(data.features.iloc[split.train], data.labels[split.train])
    valid = lgb.Dataset(data.features.iloc[split.valid], data.labels[split.valid], reference=train)
    params = {
        "objective": "binary",
        "num_leaves": LEAVES,
        "verbose": -1,
        "metric": ["auc", "binary_logloss"],
    }
    started, stolen = time.perf_counter(), stolen_seconds()
    lgb.train(params, train, num_boost_round=ROUNDS, valid_sets=[valid])
    return time.perf_counter() - started, stolen_seconds() - stolen


def modelyard_seconds(data: Path, work: Path) -> tuple[float, float, dict[str, object]]:
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
        started, stolen = time.perf_counter(), stolen_seconds()
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        seconds, stolen = time.perf_counter() - started, stolen_seconds() - stolen
    finally:
        server.stop()
    if result.returncode != 0:
        raise SystemExit(f"modelyard train failed:\n{result.stderr[-3000:]}")
    return seconds, stolen, json.loads(result.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "bench.parquet"
        print(
            f"dataset: {ROWS:,} rows x {FEATURES} features; {ROUNDS} rounds, {LEAVES} leaves",
            flush=True,
        )
        frame = make_data(data)
        ratios = []
        for pair in range(1, PAIRS + 1):
            bare, bare_stolen = bare_seconds(frame)
            folder = work / f"pair-{pair}"
            folder.mkdir()
            total, total_stolen, out = modelyard_seconds(data, folder)
            ratios.append(total / bare)
            print(f"pair {pair}: LightGBM bare training (same split, validation each round) "
                  f"{bare:5.1f} s; modelyard train, whole command (tracking, plots, "
                  f"registration) {total:5.1f} s; ratio {total / bare:.2f}x "
                  f"(CPU stolen by the host: {bare_stolen:.1f} s, {total_stolen:.1f} s)",
                  flush=True)  # fmt: skip
        print(f"  registered {out['model_name']} version {out['model_version']}, "
              f"roc_auc {out['metrics']['roc_auc']:.4f}")  # type: ignore[index]  # fmt: skip
        ratio = statistics.median(ratios)
        verdict = "meets" if ratio <= 1.3 else "misses"
        print(f"ratio modelyard / bare, median of {PAIRS} pairs: {ratio:.2f}x "
              f"(goal <= 1.30x: {verdict})")  # fmt: skip


if __name__ == "__main__":
    main()
