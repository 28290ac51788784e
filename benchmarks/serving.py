"""Model serving: modelyard's server against `mlflow models serve` and Seldon's MLServer.

Same LightGBM model (200 trees, 63 leaves, 30 numeric features, so MLflow's own server can
score it), same rows (every 17th has a missing value: `null` in every server's JSON), same
machine, same run, the bounded loopback load generator in benchmarks/_loadgen:
- single-row requests at concurrency 8: requests/s, p50/p99 (goals: >= 15x MLflow and p99
  < 10 ms; >= 10x MLServer and p99 < 5 ms), with the shipped default of two workers and with
  one worker like MLflow's (the load generator runs on the same two cores, so two workers and
  it contend for them);
- 1,000-row batches at concurrency 4: rows/s against MLflow, MLServer (goal: >= 2x) and
  booster.predict in-process on the same batches (goal: >= 50% of in-process).

MLServer 1.7.1 (mlserver_lightgbm.LightGBMModel) runs from the venv `make bench-tools` makes
(benchmarks/_mlserver_install.sh), on the same booster saved as model.txt, answering the V2
inference protocol (`POST /v2/models/NAME/infer`, one FP64 tensor [rows, 30]); its answers must
be 200 and agree with booster.predict before anything is measured. Its settings are its
defaults but for loopback ports (HTTP, and its gRPC and metrics servers, which stay on) and
`debug: false` (no access log line per request; ours writes none). Its HTTP front end (uvicorn
+ FastAPI, decoding and validating the JSON) is one process, whatever `parallel_workers` says:
N > 0 worker processes only run the model, each request and answer crossing over a queue; 0
runs the model in the front end. Its runtime calls booster.predict with LightGBM's default
threads (OpenMP, every core), ours one thread per worker. So it runs three ways (MLSERVER_SETUPS):
- "mlserver": as shipped, 1 worker (its default), LightGBM on every core;
- "0w 1thr": the model in the front end, OMP_NUM_THREADS=1: its fastest for single rows here;
- "2w 1thr": 2 workers like ours, OMP_NUM_THREADS=1: its fastest for 1,000-row batches here
  (as shipped, every worker's OpenMP threads and the front end fight for the two cores: in a 3 s
  trial on this 2-core machine, single rows went from 1,351 req/s with one thread to 657 with 0
  workers, 826 to 173 with 1, 774 to 127 with 2).
The MLServer goals are judged against it as shipped and against the fastest of the three.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
from modelyard.ml.serving.__main__ import options_to_json
from modelyard.ml.serving.compiled import SWAPPED_IN
from modelyard.ml.serving.supervisor import ServeOptions, read_status
from modelyard.pipelines.local_mlflow import free_port

from benchmarks._loadgen import LoadResult, run_load

FEATURES, TREES, LEAVES = 30, 200, 63
SECONDS = float(os.environ.get("MODELYARD_BENCH_SECONDS", "8"))
MLSERVER_LOCK = Path(__file__).with_name("_mlserver_requirements.txt")
MLSERVER_MODEL = "lgbm"
MLSERVER_PATH = f"/v2/models/{MLSERVER_MODEL}/infer"
# (label, parallel_workers, OMP_NUM_THREADS or None for LightGBM's default): see the docstring.
MLSERVER_SETUPS = (("mlserver", 1, None), ("0w 1thr", 0, 1), ("2w 1thr", 2, 1))


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


def chunks(frame: pd.DataFrame, rows: int, count: int) -> list[np.ndarray]:
    """`count` blocks of `rows` consecutive rows: what each server is sent, in this order."""
    values = frame.to_numpy()
    return [values[(k * rows) % (len(values) - rows) :][:rows] for k in range(count)]


def bodies(frame: pd.DataFrame, rows: int, count: int) -> list[bytes]:
    """MLflow's `dataframe_split`, for modelyard and mlflow."""
    out = []
    for chunk in chunks(frame, rows, count):
        data = [[None if np.isnan(v) else float(v) for v in row] for row in chunk]
        out.append(
            orjson.dumps({"dataframe_split": {"columns": list(frame.columns), "data": data}})
        )
    return out


def v2_bodies(frame: pd.DataFrame, rows: int, count: int) -> list[bytes]:
    """The same rows in the V2 inference protocol, for MLServer: one FP64 tensor [rows, 30],
    its data flattened row by row. JSON has no NaN (MLServer's orjson refuses the token): a
    missing value is `null`, which its NumPy codec turns into NaN, as the others do."""
    out = []
    for chunk in chunks(frame, rows, count):
        data = [None if np.isnan(v) else float(v) for v in chunk.ravel()]
        tensor = {"name": "input-0", "shape": list(chunk.shape), "datatype": "FP64", "data": data}
        out.append(orjson.dumps({"inputs": [tensor]}))
    return out


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 180.0,
              path: str = "/ping") -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as response:
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
    # Measured once every worker scores with the compiled model (ml/serving/compiled.py), as a
    # server does seconds after a version arrives.
    started = time.monotonic()
    while (state / "server.log").read_text().count(SWAPPED_IN) < workers:
        if time.monotonic() - started > 180:
            raise RuntimeError(f"{url}: not compiled in 180 s; see {state / 'server.log'}")
        time.sleep(0.2)
    print(f"modelyard ({workers} worker(s)): compiled in {time.monotonic() - started:.1f}s "
          "after ready", flush=True)  # fmt: skip
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


def mlserver_home() -> Path:
    """The venv benchmarks/_mlserver_install.sh makes: same cache folder, version and lock hash."""
    lock = MLSERVER_LOCK.read_bytes()
    found = re.search(rb"^mlserver==(\S+)$", lock, re.MULTILINE)
    assert found, f"{MLSERVER_LOCK} pins no mlserver"
    version = found.group(1).decode()
    cache = os.environ.get("MODELYARD_TOOLS_DIR") or str(Path.home() / ".cache/modelyard/tools")
    home = Path(cache) / f"mlserver-{version}-{hashlib.sha256(lock).hexdigest()[:10]}"
    if not (home / ".stamp").is_file():
        raise RuntimeError(
            f"MLServer {version} is not installed ({home}): run `make bench-tools` "
            "(benchmarks/_mlserver_install.sh), or `make bench`, which runs it"
        )
    return home


def start_mlserver(home: Path, booster: lgb.Booster, folder: Path, workers: int,
                   threads: int | None) -> tuple[str, subprocess.Popen[bytes]]:  # fmt: skip
    """MLServer's LightGBM runtime on the same booster; its gRPC and metrics servers (which it
    always starts, metrics on by default) on free loopback ports of their own."""
    model = folder / MLSERVER_MODEL
    model.mkdir(parents=True)
    booster.save_model(str(model / "model.txt"))
    (model / "model-settings.json").write_bytes(orjson.dumps({
        "name": MLSERVER_MODEL,
        "implementation": "mlserver_lightgbm.LightGBMModel",
        "parameters": {"uri": "./model.txt"},
    }))  # fmt: skip
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    http, grpc, metrics = ports
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "metrics_dir": str(folder / "metrics"),
        "environments_dir": str(folder / "envs"),
        "parallel_workers": workers,
    }
    (folder / "settings.json").write_bytes(orjson.dumps(settings))
    # Its settings also come from MLSERVER_* variables: only the file counts here.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER")
           and k not in ("PYTHONPATH", "PYTHONHOME", "OMP_NUM_THREADS")}  # fmt: skip
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    log = (folder / "server.log").open("ab")
    process = subprocess.Popen([str(home / "bin" / "mlserver"), "start", str(folder)], cwd=folder,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{http}"
    # /v2/health/ready answers 200 before the model has loaded (and while a model fails to
    # load): wait for the model itself, which is ready once every worker has loaded it.
    try:
        wait_http(url, process, path=f"/v2/models/{MLSERVER_MODEL}/ready")
    except RuntimeError as exc:  # the folder is removed on the way out: show why here
        tail = (folder / "server.log").read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"MLServer {exc}; its log ends:\n" + "\n".join(tail)) from None
    return url, process


def check_mlserver(url: str, booster: lgb.Booster, cases: list[tuple[bytes, np.ndarray]]) -> None:
    """Each body answered 200 with booster.predict's values for its rows, or stop here."""
    for body, rows in cases:
        request = urllib.request.Request(f"{url}{MLSERVER_PATH}", data=body,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"MLServer {url}: {exc.code} on {len(rows)} row(s): {exc.read()[:500]!r}"
            ) from None
        outputs = answer.get("outputs") or [{}]
        got = np.asarray(outputs[0].get("data"), dtype=np.float64).ravel()
        want = np.asarray(booster.predict(rows), dtype=np.float64).ravel()
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-9, atol=1e-12):
            raise RuntimeError(
                f"MLServer {url}: {len(rows)} row(s) scored {got[:5]}..., "
                f"booster.predict says {want[:5]}...: not the same model"
            )


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


def verdict(met: bool, *results: LoadResult) -> str:
    """MET / NOT MET; a ratio over answers some of which failed would flatter one side."""
    if any(r.errors for r in results):
        return "NOT JUDGED (some requests failed, see above)"
    return "MET" if met else "NOT MET"


def main() -> None:
    home = mlserver_home()  # before training: a missing install stops the benchmark at once
    work = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        print(
            f"training the model ({TREES} trees, {LEAVES} leaves, {FEATURES} features)...",
            flush=True,
        )
        booster, frame = train(work / "model")
        singles, batches = bodies(frame, 1, 512), bodies(frame, 1000, 16)
        v2_singles, v2_batches = v2_bodies(frame, 1, 512), v2_bodies(frame, 1000, 16)
        ours_url, ours = start_modelyard(work / "model", work / "modelyard", workers=2)
        processes.append(ours)
        one_url, one = start_modelyard(work / "model", work / "modelyard-1", workers=1)
        processes.append(one)
        mlflow_url, theirs = start_mlflow(work / "model", work / "mlflow.log")
        processes.append(theirs)
        mlserver_urls: dict[str, str] = {}
        checks = [*zip(v2_singles[:3], chunks(frame, 1, 3), strict=True),
                  (v2_batches[0], chunks(frame, 1000, 1)[0])]  # fmt: skip
        for label, workers, threads in MLSERVER_SETUPS:
            folder = work / f"mlserver-{len(mlserver_urls)}"
            url, process = start_mlserver(home, booster, folder, workers, threads)
            processes.append(process)
            check_mlserver(url, booster, checks)
            mlserver_urls[label] = url
        print(f"MLServer ({home.name}): 'mlserver' as shipped (parallel_workers 1, LightGBM on "
              "every core); '0w 1thr' parallel_workers 0, '2w 1thr' 2, both OMP_NUM_THREADS=1; "
              "every one's answers agree with booster.predict (3 single rows, a 1000-row batch, "
              "missing values)")  # fmt: skip
        print(f"each scenario runs {SECONDS:.0f}s after a 1s warm-up", flush=True)

        ours_single = run_load(ours_url, singles, 8, SECONDS)
        print(line("modelyard   1 row,  concurrency 8", ours_single), flush=True)
        one_single = run_load(one_url, singles, 8, SECONDS)
        print(line("  1 worker  1 row,  concurrency 8", one_single), flush=True)
        mlflow_single = run_load(mlflow_url, singles, 8, SECONDS)
        print(line("mlflow      1 row,  concurrency 8", mlflow_single), flush=True)
        mlflow_one = run_load(mlflow_url, singles, 1, SECONDS)
        print(line("mlflow      1 row,  concurrency 1", mlflow_one), flush=True)
        mlserver_single: dict[str, LoadResult] = {}
        for label, url in mlserver_urls.items():
            result = run_load(url, v2_singles, 8, SECONDS, path=MLSERVER_PATH)
            mlserver_single[label] = result
            name = label if label == "mlserver" else f"  {label}"
            print(line(f"{name:<11} 1 row,  concurrency 8", result), flush=True)
        ours_batch = run_load(ours_url, batches, 4, SECONDS, rows_per_request=1000)
        print(line("modelyard   1000 rows, concurrency 4", ours_batch), flush=True)
        mlflow_batch = run_load(mlflow_url, batches, 4, SECONDS, rows_per_request=1000)
        print(line("mlflow      1000 rows, concurrency 4", mlflow_batch), flush=True)
        mlserver_batch: dict[str, LoadResult] = {}
        for label, url in mlserver_urls.items():
            result = run_load(url, v2_batches, 4, SECONDS, rows_per_request=1000, path=MLSERVER_PATH)  # fmt: skip
            mlserver_batch[label] = result
            name = label if label == "mlserver" else f"  {label}"
            print(line(f"{name:<11} 1000 rows, concurrency 4", result), flush=True)
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

        def against(ours: LoadResult, theirs: dict[str, LoadResult], rows: bool) -> tuple[str, float, float]:  # fmt: skip
            """Ours / each MLServer setup's (req/s or rows/s); as shipped; against the fastest."""
            ratios = {label: (ours.rows_per_second / max(r.rows_per_second, 1e-9) if rows
                              else ours.rps / max(r.rps, 1e-9)) for label, r in theirs.items()}  # fmt: skip
            text = ", ".join(f"{ratio:.1f}x ({label})" for label, ratio in ratios.items())
            return text, ratios["mlserver"], min(ratios.values())

        text, shipped, fastest = against(ours_single, mlserver_single, rows=False)
        p99 = ours_single.percentile_ms(99)
        print(f"  single rows, c=8, modelyard's default 2 workers: modelyard / MLServer = {text} "
              f"(goal >= 10x); modelyard p99 {p99:.2f} ms (goal < 5 ms) -> as shipped "
              f"{verdict(shipped >= 10 and p99 < 5, ours_single, mlserver_single['mlserver'])}; "
              f"against its fastest here ({fastest:.1f}x) "
              f"{verdict(fastest >= 10 and p99 < 5, ours_single, *mlserver_single.values())}")  # fmt: skip
        text, shipped, fastest = against(ours_batch, mlserver_batch, rows=True)
        print(f"  1000-row batches, c=4: modelyard rows/s / MLServer rows/s = {text} "
              f"(goal >= 2x) -> as shipped "
              f"{verdict(shipped >= 2, ours_batch, mlserver_batch['mlserver'])}; against its "
              f"fastest here ({fastest:.1f}x) "
              f"{verdict(fastest >= 2, ours_batch, *mlserver_batch.values())}")  # fmt: skip
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
