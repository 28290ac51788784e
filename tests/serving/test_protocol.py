"""The scoring protocol over real HTTP: every MLflow input format, CSV, and the other routes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.serving.conftest import Trained
from tests.serving.helpers import Server, call, records, score, start_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def running(local_model_a: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for this module: small limits so the oversize cases stay small."""
    handle = start_server(str(local_model_a), tmp_path_factory.mktemp("protocol"), max_rows=500,
                          max_body_bytes=200_000)  # fmt: skip
    try:
        handle.wait_ready()
        yield handle
    finally:
        handle.stop()


def test_every_input_format_gives_the_boosters_own_predictions(running, model_a: Trained) -> None:  # type: ignore[no-untyped-def]
    booster, features = model_a
    sample = features.iloc[:25]
    expected = booster.predict(sample)
    rows = records(sample)
    columns = list(sample.columns)
    payloads = {
        "dataframe_split": {
            "dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
        },
        "dataframe_records": {"dataframe_records": rows},
        "instances": {"instances": rows},
        "inputs": {"inputs": {c: [r[c] for r in rows] for c in columns}},
    }
    for name, payload in payloads.items():
        status, body, headers = score(running.url, payload)
        assert status == 200, (name, body)
        np.testing.assert_allclose(body["predictions"], expected, rtol=1e-9, err_msg=name)
        assert body["model_version"] == headers["x-model-version"] != ""
    csv = (
        ",".join(columns)
        + "\n"
        + "\n".join(",".join("" if r[c] is None else str(r[c]) for c in columns) for r in rows)
    )
    status, _, raw = call(
        running.url, "POST", "/invocations", csv.encode(), {"Content-Type": "text/csv"}
    )
    assert status == 200, raw
    np.testing.assert_allclose(json.loads(raw)["predictions"], expected, rtol=1e-9)


def test_unknown_category_is_scored_as_missing(running, model_a: Trained) -> None:  # type: ignore[no-untyped-def]
    booster, features = model_a
    row = records(features.iloc[:1])[0]
    as_missing = features.iloc[:1].copy()
    as_missing["region"] = pd.Categorical([None], categories=features["region"].cat.categories)
    status, body, _ = score(running.url, {"dataframe_records": [{**row, "region": "atlantis"}]})
    assert status == 200
    assert body["predictions"][0] == pytest.approx(booster.predict(as_missing)[0], rel=1e-9)


def test_health_version_and_metrics(running, model_a: Trained) -> None:  # type: ignore[no-untyped-def]
    _, features = model_a
    for path in ("/ping", "/health"):
        status, _, body = call(running.url, "GET", path)
        assert status == 200 and json.loads(body)["ready"] is True
    status, _, body = call(running.url, "GET", "/version")
    info = json.loads(body)
    assert status == 200 and info["model_name"] == "churn-a"
    assert info["model_digest"].startswith("sha256:")
    assert score(running.url, {"dataframe_records": records(features.iloc[:7])})[0] == 200
    negative = features.iloc[:3].assign(monthly_charges=-1e6)  # refunds: a negative sum
    assert score(running.url, {"dataframe_records": records(negative)})[0] == 200
    version = info["model_version"]
    text = ""

    def charges_sum(metrics: str) -> float:
        prefix = 'modelyard_feature_value_sum{feature="monthly_charges"'
        lines = [line for line in metrics.splitlines() if line.startswith(prefix)]
        return float(lines[0].split()[-1]) if lines else 0.0

    # Row summaries are flushed once a second by whichever worker scored: wait for both requests.
    for _ in range(50):
        text = call(running.url, "GET", "/metrics")[2].decode()
        if charges_sum(text) < -2e6 and 'missing_total{feature="satisfaction_score"' in text:
            break
        time.sleep(0.2)
    assert f'modelyard_requests_total{{model_version="{version}",status="200"}}' in text
    assert "modelyard_request_latency_seconds_bucket" in text
    assert "modelyard_batch_rows_bucket" in text
    assert "modelyard_predictions_total" in text
    assert 'modelyard_feature_missing_total{feature="satisfaction_score"' in text
    assert charges_sum(text) < -2e6  # negative values are summed, not refused


def _bad(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    status, _, raw = call(url, "POST", "/invocations", body, {"Content-Type": content_type})
    return status, json.loads(raw)["message"]


def test_bad_requests_get_a_4xx_naming_the_problem(running: Server, model_a: Trained) -> None:
    _, features = model_a
    row = records(features.iloc[:1])[0]
    url = running.url
    cases = [
        (b"", 400, "empty request body"),
        (b'{"dataframe_records": [', 400, "malformed JSON"),
        (b"[1, 2]", 400, "must be an object"),
        (b'{"rows": []}', 400, "exactly one of"),
        (json.dumps({"dataframe_records": [{k: v for k, v in row.items() if k != "tenure_months"}]}).encode(),
         400, "missing required column(s) ['tenure_months']"),
        (json.dumps({"dataframe_records": [{**row, "favourite_colour": "red"}]}).encode(),
         400, "unknown column(s) ['favourite_colour']"),
        (json.dumps({"dataframe_records": [{**row, "age": "forty"}]}).encode(),
         400, "column 'age' is numeric; got 'forty'"),
        (json.dumps({"dataframe_records": [{**row, "contract": 3}]}).encode(),
         400, "column 'contract' holds categories"),
        (json.dumps({"dataframe_split": {"columns": list(row), "data": [[1]]}}).encode(),
         400, "row 0 does not have one value per column"),
        (json.dumps({"dataframe_records": [row] * 501}).encode(), 413, "limit of 500"),
        (b"x" * 200_001, 413, "over this server's limit of 200000 bytes"),
    ]  # fmt: skip
    for body, status, message in cases:
        got_status, got_message = _bad(url, body)
        assert (got_status, message in got_message) == (status, True), (message, got_message)
    assert _bad(url, b"a,b\n1,2\n", "text/plain")[0] == 415
    assert _bad(url, b"tenure_months\nabc\n", "text/csv") == (
        400, "CSV row 1: column 'tenure_months' is numeric; got 'abc'")  # fmt: skip
    assert call(url, "GET", "/invocations")[0] == 405
    assert call(url, "GET", "/nowhere")[0] == 404
    # After all of that the server still answers good requests.
    status, body, _ = score(url, {"dataframe_records": [row]})
    assert status == 200 and len(body["predictions"]) == 1
