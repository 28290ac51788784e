"""Real models, real server processes and a small HTTP client for the serving and monitoring tests."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from modelyard.contracts import artifacts
from modelyard.ml.data.sample import TARGET, generate_churn
from modelyard.ml.monitoring.training_profile import build_profile, save_profile
from modelyard.ml.prediction_kind import PredictionKind
from modelyard.ml.serving.__main__ import options_to_json
from modelyard.ml.serving.supervisor import ServeOptions, read_status
from modelyard.pipelines.local_mlflow import free_port


def churn_frame(n_rows: int, seed: int = 0, drift: float = 0.0) -> tuple[pd.DataFrame, pd.Series]:
    frame = generate_churn(n_rows, seed=seed, drift=drift)
    target = frame.pop(TARGET)
    for name in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[name]):
            frame[name] = frame[name].astype("category")
    return frame, target


def train_booster(
    rounds: int = 30, seed: int = 0, extra_column: bool = False
) -> tuple[lgb.Booster, pd.DataFrame]:
    features, target = churn_frame(3000, seed=seed)
    if extra_column:  # a model that needs a column today's clients do not send
        features["loyalty_points"] = np.arange(len(features), dtype=float) % 7
    params = {"objective": "binary", "verbose": -1, "num_leaves": 15, "seed": seed}
    booster = lgb.train(params, lgb.Dataset(features, target), rounds)
    return booster, features


def save_local(booster: lgb.Booster, features: pd.DataFrame, path: Path) -> Path:
    signature = infer_signature(features, booster.predict(features))
    mlflow.lightgbm.save_model(booster, str(path), signature=signature)
    return path


def register(booster: lgb.Booster, features: pd.DataFrame, name: str) -> str:
    """Log and register the model the way the training step does; returns the new version."""
    predictions = booster.predict(features)
    with mlflow.start_run() as run:
        mlflow.lightgbm.log_model(
            booster, name="model", signature=infer_signature(features, predictions),
            input_example=features.head(3), registered_model_name=name,
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as folder:
            profile = save_profile(
                build_profile(features, predictions, PredictionKind()),
                Path(folder) / "profile.json",
            )
            mlflow.log_artifact(str(profile), artifact_path=str(Path(artifacts.PROFILE).parent))
    client = mlflow.MlflowClient()
    versions = client.search_model_versions(f"name='{name}' and run_id='{run.info.run_id}'")
    return str(versions[0].version)


def records(features: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a JSON client would send them: strings for categories, null for missing."""
    out = []
    for row in features.astype(object).to_dict(orient="records"):
        out.append(
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        )
    return out


@dataclass
class Server:
    options: ServeOptions
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.options.port}"

    def status(self) -> dict[str, Any]:
        return read_status(self.options.state_dir) or {}

    def wait(self, condition: Any, timeout: float = 60.0, what: str = "") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if condition(status):
                return status
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {self.status()}\n{self.log()}")

    def wait_ready(self, version: str | None = None, timeout: float = 90.0) -> dict[str, Any]:
        def ready(s: dict[str, Any]) -> bool:
            return bool(s.get("ready")) and (
                version is None or (s.get("stable") or {}).get("version") == version
            )

        return self.wait(ready, timeout, f"ready on version {version}")

    def log(self) -> str:
        path = self.options.state_dir / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(model_uri: str, state_dir: Path, **overrides: Any) -> Server:
    options = ServeOptions(
        model_uri=model_uri, port=free_port(), state_dir=state_dir, poll_seconds=1.0
    )
    options = replace(options, **overrides)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "options.json").write_bytes(options_to_json(options))
    log = (state_dir / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "modelyard.ml.serving", str(state_dir / "options.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return Server(options, process)


def call(
    url: str,
    method: str = "GET",
    path: str = "/",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def score(
    url: str, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    status, head, body = call(
        url,
        "POST",
        "/invocations",
        json.dumps(payload).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )
    return status, json.loads(body), head


@dataclass
class Load:
    """Keep-alive clients sending single-row requests until stopped; counts answers by version."""

    url: str
    rows: list[dict[str, Any]]
    threads: int = 4
    headers: dict[str, str] = field(default_factory=dict)
    # False: a new connection per request (curl, probes), which the kernel may hand to any
    # process listening on the port, a server starting beside the one it replaces included.
    keep_alive: bool = True
    versions: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for i in range(self.threads):
            thread = threading.Thread(target=self._run, args=(i,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=30)

    def _run(self, index: int) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        n = 0
        while not self._stop.is_set():
            body = json.dumps(
                {"dataframe_records": [self.rows[(index + n) % len(self.rows)]]}
            ).encode()
            n += 1
            try:
                connection.request(
                    "POST",
                    "/invocations",
                    body=body,
                    headers={"Content-Type": "application/json", **self.headers},
                )
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    self.failures.append(f"{response.status} {payload[:200]!r}")
                else:
                    self.versions[json.loads(payload)["model_version"]] += 1
                if not self.keep_alive or response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                connection.close()
            time.sleep(0.002)
        connection.close()
