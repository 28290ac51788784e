"""Where a worker's time goes on one 1,000-row `dataframe_split` request (issue #25: "the batch
path is mostly JSON decoding and the copy into LightGBM: measure where the time goes").

`python -m benchmarks._batch_profile` (not part of `make bench`: the leading `_`). Same model and
the same 16 bodies as benchmarks/serving.py's 1,000-row scenario, in one process, no network:
each phase of what a worker does for a request, timed in turn, request after request. The
phases follow ml/serving (http_server.HttpProtocol, app.ScoringApp._score, inputs._from_split,
predictor.FastPredictor), whose steps are repeated here line for line where they are not
functions of their own; the sum is checked against the real ScoringApp.handle on the same
bodies, and the matrix built here against inputs.parse_body's. The worker's garbage collector
settings (gc.freeze after loading, threshold 50,000) are used; LightGBM runs on one thread,
as in a worker. Nothing under ml/ is changed or patched.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROUNDS = int(os.environ.get("MODELYARD_PROFILE_ROUNDS", "40"))  # x 16 bodies
CHUNK = 256 * 1024  # what asyncio's selector transport reads at a time


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="modelyard-profile-"))
    # prometheus-client reads its multiprocess folder when first imported (the supervisor sets
    # it for every worker): before the server's modules are.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work / "metrics")
    (work / "metrics").mkdir()
    try:
        profile(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def profile(work: Path) -> None:
    import httptools
    import orjson
    from modelyard.ml.monitoring.sampling import SampleWriter
    from modelyard.ml.serving import inputs, metrics
    from modelyard.ml.serving.app import ScoringApp, Snapshot
    from modelyard.ml.serving.model import decode_row, load_model
    from modelyard.ml.serving.routing import Routing

    from benchmarks.serving import bodies, train

    print("training the model (as benchmarks/serving.py)...", flush=True)
    _, frame = train(work / "model")
    model = load_model(work / "model")
    payloads = bodies(frame, 1000, 16)
    requests = [
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        for body in payloads
    ]
    samples = SampleWriter(work / "samples", 0.1, 50_000)  # the server's defaults
    app = ScoringApp(str(work / "metrics"), samples, 100_000)
    app.snapshot = Snapshot(Routing(message="ready"), model, None)
    headers = {"content-type": "application/json", "host": "127.0.0.1"}

    class Collect:  # the parser callbacks HttpProtocol keeps for a body
        def __init__(self) -> None:
            self.parts: list[bytes] = []
            self.headers: dict[str, str] = {}
            self.done = False

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

        def on_body(self, body: bytes) -> None:
            self.parts.append(body)

        def on_message_complete(self) -> None:
            self.done = True

    # Same matrix as the server builds, or this profile measures something else.
    for body in payloads[:2]:
        expected = inputs.parse_body(body, "application/json", model, 100_000)
        assert np.array_equal(build(orjson.loads(body), model, inputs), expected, equal_nan=True)

    gc.collect()
    gc.freeze()  # as the worker does once its model is loaded
    gc.set_threshold(50_000, 50, 100)
    clock = Clock()
    flush_every = 0.0
    for round_ in range(ROUNDS + 1):
        for request in requests:
            clock.start()
            collect = Collect()
            parser = httptools.HttpRequestParser(collect)
            for at in range(0, len(request), CHUNK):
                parser.feed_data(request[at : at + CHUNK])
            assert collect.done
            body = b"".join(collect.parts)
            clock.lap("http: llhttp parse + body join")
            document = orjson.loads(body)
            clock.lap("json: orjson.loads")
            matrix = build(document, model, inputs, clock.lap)
            scores = model.predict(matrix)
            clock.lap("predict: LGBM_BoosterPredictForMat, 1 thread")
            app.summaries.add(model.version, model.summary_columns, matrix, scores,
                              model.prediction)  # fmt: skip
            app._child(metrics.BATCH_ROWS, model.version).observe(len(scores))
            if samples.wants():
                for i in samples.pick(len(scores)):
                    samples.add(model.version, decode_row(model, matrix[i]),
                                model.prediction.sample_value(scores[i]))  # fmt: skip
            app._child(metrics.REQUESTS, model.version, "200").inc()
            app._child(metrics.LATENCY, model.version).observe(0.01)
            clock.lap("bookkeeping: metrics, summaries, 10% sampled")
            version = model.version.encode()
            answer = (b'{"predictions":' + orjson.dumps(scores, option=orjson.OPT_SERIALIZE_NUMPY)
                      + model.prediction.extra_answer(scores) + b',"model_version":"' + version
                      + b'"}')  # fmt: skip
            clock.lap("answer: orjson.dumps(scores)")
            out = [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(answer),
                   b"Content-Type: application/json\r\n", b"X-Model-Version: %s\r\n\r\n" % version,
                   answer]  # fmt: skip
            b"".join(out)
            clock.lap("http: answer bytes")
        # A worker flushes once a second, some 60 to 80 of these requests at the rates
        # benchmarks/serving.py measures; here once per 16 (a little more often): amortized.
        started = time.perf_counter()
        app.flush()
        flush_every += time.perf_counter() - started
        if round_ == 0:  # the first round warms caches and allocators: not counted
            clock.phases.clear()
            flush_every = 0.0
    count = ROUNDS * len(requests)
    phases = clock.phases
    phases["bookkeeping: flush every 16 requests, amortized"] = [flush_every / count] * count

    handled = []
    for _ in range(ROUNDS // 4 or 1):
        for body in payloads:
            started = time.perf_counter()
            response = app.handle("POST", "/invocations", headers, body)
            handled.append(time.perf_counter() - started)
            assert response.status == 200, response.body[:300]
        app.flush()
    parsed = []
    for _ in range(ROUNDS // 4 or 1):
        for body in payloads:
            started = time.perf_counter()
            inputs.parse_body(body, "application/json", model, 100_000)
            parsed.append(time.perf_counter() - started)

    means = {name: statistics.fmean(values) for name, values in phases.items()}
    total = sum(means.values())
    size = statistics.fmean(len(b) for b in payloads)
    print(f"one 1,000-row dataframe_split request ({size / 1024:.0f} KiB of JSON, 30 columns, "
          f"every 17th row with a null), mean of {count} requests, one process:")  # fmt: skip
    for name, mean in means.items():
        print(f"  {name:<48} {mean * 1e6:8.0f} us  {mean / total:6.1%}")
    print(f"  {'sum of the phases':<48} {total * 1e6:8.0f} us  -> {1000 / total:,.0f} rows/s "
          "per busy core")  # fmt: skip
    decode = sum(v for k, v in means.items() if k.startswith(("json", "rows")))
    print(
        f"  {'  of which JSON -> float64 matrix':<48} {decode * 1e6:8.0f} us  {decode / total:6.1%}"
    )
    checks = [
        ("ScoringApp.handle (no HTTP, no flush)", handled),
        ("inputs.parse_body (json + rows phases)", parsed),
    ]
    for name, values in checks:
        print(f"  check: {name:<41} {statistics.fmean(values) * 1e6:8.0f} us "
              f"(median {statistics.median(values) * 1e6:.0f})")  # fmt: skip


class Clock:
    """Each `lap(name)` adds the time since the previous lap (or `start`) to that phase."""

    def __init__(self) -> None:
        self.phases: dict[str, list[float]] = {}
        self.last = 0.0

    def start(self) -> None:
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases.setdefault(name, []).append(now - self.last)
        self.last = now


def build(document: Any, model: Any, inputs: Any,
          lap: Callable[[str], None] = lambda name: None) -> np.ndarray:  # fmt: skip
    """inputs.parse_body after orjson.loads, for a `dataframe_split` of numeric columns, step by
    step as inputs._from_split does it today; `lap(name)` after each step."""
    keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs")
            if k in document]  # fmt: skip
    assert keys == ["dataframe_split"]
    payload = document["dataframe_split"]
    columns, data = payload["columns"], payload["data"]
    assert isinstance(columns, list) and all(isinstance(c, str) for c in columns)
    assert isinstance(data, list) and data and len(data) <= 100_000
    inputs._check_names(columns, model, "columns")
    width = len(columns)
    assert all(isinstance(r, list) and len(r) == width for r in data)
    n = len(data)
    positions = [model.index[c] for c in columns]
    assert n > inputs.SMALL_BATCH
    lap("rows: structure checks (names, row lengths)")
    block = np.empty((n, width), dtype=object)
    block[:] = data
    lap("rows: lists -> object array")
    matrix = np.full((n, model.n_features), inputs.NAN)
    numeric = [j for j, p in enumerate(positions) if not model.columns[p].categorical]
    part = block[:, numeric]
    assert set(map(type, part.ravel().tolist())) <= set(inputs._NUMBER_TYPES)
    lap("rows: column copy + type check")
    part[part == None] = inputs.NAN  # noqa: E711 (elementwise comparison on an object array)
    lap("rows: null -> NaN")
    matrix[:, [positions[j] for j in numeric]] = part.astype(np.float64)
    lap("rows: object -> float64 matrix")
    assert not model.categorical_idx, "the benchmark's model has numeric columns only"
    return matrix


if __name__ == "__main__":
    main()
