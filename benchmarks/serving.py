"""Model serving: modelyard's server against `mlflow models serve` on the same model.

Same LightGBM model (200 trees, 63 leaves, 30 numeric features, so MLflow's own server can
score it), same machine, same run, the bounded loopback load generator in benchmarks/_loadgen:
- single-row requests at concurrency 8: requests/s, p50/p99 (goal: >= 15x MLflow, p99 < 10 ms),
  with the shipped default of two workers and with one worker like MLflow's (the load
  generator runs on the same two cores, so two workers and it contend for them);
- 1,000-row batches at concurrency 4: rows/s against MLflow and against booster.predict
  in-process on the same batches (goal: >= 50% of in-process).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
from modelyard.ml.serving.__main__ import options_to_json
from modelyard.ml.serving.supervisor import ServeOptions, read_status
from modelyard.pipelines.local_mlflow import free_port

from benchmarks._loadgen import LoadResult, run_load

FEATURES, TREES, LEAVES = 30, 200, 63
SECONDS = float(os.environ.get("MODELYARD_BENCH_SECONDS", "8"))


def train(folder: Path) -> tuple[lgb.Booster, pd.DataFrame]:
    import mlflow
    from mlflow.models import infer_signature

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        rng.normal(size=(20_000, FEATURES)), columns=[f"f{i}" for i in range(FEATURES)]
    )
    frame.iloc[::17, 3] = np.nan
    target = (
        (
            frame["f0"]
            + frame["f1"] * frame["f2"]
            - frame["f5"].fillna(0)
            + rng.normal(size=len(frame))
        )
        > 0
    ).astype(int)
    params = {"objective": "binary", "num_leaves": LEAVES, "min_data_in_leaf": 5, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(frame, target), TREES)
    mlflow.lightgbm.save_model(booster, str(folder), signature=infer_signature(frame, booster.predict(frame)),
                               input_example=frame.head(2))  # fmt: skip
    return booster, frame


def bodies(frame: pd.DataFrame, rows: int, count: int) -> list[bytes]:
    values = frame.to_numpy()
    out = []
    for k in range(count):
        chunk = values[(k * rows) % (len(values) - rows) :][:rows]
        data = [[None if np.isnan(v) else float(v) for v in row] for row in chunk]
        out.append(
            orjson.dumps({"dataframe_split": {"columns": list(frame.columns), "data": data}})
        )
    return out


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready in {timeout:.0f}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def start_modelyard(model: Path, state: Path, workers: int) -> tuple[str, subprocess.Popen[bytes]]:
    options = ServeOptions(model_uri=str(model), port=free_port(), state_dir=state, workers=workers)
    state.mkdir(parents=True)
    (state / "options.json").write_bytes(options_to_json(options))
    log = (state / "server.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "modelyard.ml.serving", str(state / "options.json")],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{options.port}"
    wait_http(url, process)
    while not (read_status(state) or {}).get("ready"):  # every worker loaded, not just one
        time.sleep(0.2)
    return url, process


def start_mlflow(model: Path, log_path: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", str(model),
               "--env-manager", "local", "-w", "1", "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    log = log_path.open("ab")
    # MLflow execs `uvicorn` by name: the venv's bin must be on PATH even when not activated.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url, process)
    return url, process


def in_process(booster: lgb.Booster, frame: pd.DataFrame, rows: int, seconds: float) -> float:
    """booster.predict on the same 1,000-row batches, default threads: the ceiling."""
    batches = [frame.to_numpy()[k * rows : (k + 1) * rows] for k in range(len(frame) // rows)]
    booster.predict(batches[0])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        booster.predict(batches[done % len(batches)])
        done += 1
    return done * rows / (time.perf_counter() - started)


def line(name: str, result: LoadResult) -> str:
    return (f"  {name:<34} {result.rps:9.0f} req/s {result.rows_per_second:11.0f} rows/s  "
            f"p50 {result.percentile_ms(50):7.2f} ms  p99 {result.percentile_ms(99):7.2f} ms  "
            f"errors {result.errors}") + "".join(
        f"\n    {status}: {body.decode(errors='replace')}"
        for status, body in result.error_samples.items()
    )  # fmt: skip


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        print(
            f"training the model ({TREES} trees, {LEAVES} leaves, {FEATURES} features)...",
            flush=True,
        )
        booster, frame = train(work / "model")
        singles, batches = bodies(frame, 1, 512), bodies(frame, 1000, 16)
        ours_url, ours = start_modelyard(work / "model", work / "modelyard", workers=2)
        processes.append(ours)
        one_url, one = start_modelyard(work / "model", work / "modelyard-1", workers=1)
        processes.append(one)
        mlflow_url, theirs = start_mlflow(work / "model", work / "mlflow.log")
        processes.append(theirs)
        print(f"each scenario runs {SECONDS:.0f}s after a 1s warm-up", flush=True)

        ours_single = run_load(ours_url, singles, 8, SECONDS)
        print(line("modelyard   1 row,  concurrency 8", ours_single), flush=True)
        one_single = run_load(one_url, singles, 8, SECONDS)
        print(line("  1 worker  1 row,  concurrency 8", one_single), flush=True)
        mlflow_single = run_load(mlflow_url, singles, 8, SECONDS)
        print(line("mlflow      1 row,  concurrency 8", mlflow_single), flush=True)
        mlflow_one = run_load(mlflow_url, singles, 1, SECONDS)
        print(line("mlflow      1 row,  concurrency 1", mlflow_one), flush=True)
        ours_batch = run_load(ours_url, batches, 4, SECONDS, rows_per_request=1000)
        print(line("modelyard   1000 rows, concurrency 4", ours_batch), flush=True)
        mlflow_batch = run_load(mlflow_url, batches, 4, SECONDS, rows_per_request=1000)
        print(line("mlflow      1000 rows, concurrency 4", mlflow_batch), flush=True)
        for process in processes:  # the in-process figure gets the machine to itself
            stop(process)
        ceiling = in_process(booster, frame, 1000, SECONDS)
        print(f"  {'booster.predict in-process, 1000 rows':<34} {ceiling:31.0f} rows/s", flush=True)

        batch_vs_mlflow = ours_batch.rows_per_second / max(mlflow_batch.rows_per_second, 1e-9)
        batch_vs_ceiling = ours_batch.rows_per_second / ceiling
        print("ratios:")
        for name, result in (("2 workers, both cores (the default)", ours_single),
                             ("1 worker, like mlflow's", one_single)):  # fmt: skip
            speedup = result.rps / max(mlflow_single.rps, 1e-9)
            p99 = result.percentile_ms(99)
            print(f"  single rows, c=8, {name}: modelyard / mlflow = {speedup:.1f}x "
                  f"(goal >= 15x); p99 {p99:.2f} ms (goal < 10 ms) -> "
                  f"{'MET' if speedup >= 15 and p99 < 10 else 'NOT MET'}")  # fmt: skip
        print(f"  1000-row batches, c=4: modelyard / mlflow = {batch_vs_mlflow:.1f}x; "
              f"modelyard / in-process = {batch_vs_ceiling:.0%} (goal >= 50%) -> "
              f"{'MET' if batch_vs_ceiling >= 0.5 else 'NOT MET'}")  # fmt: skip
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
