"""Compiled models (ml/serving/compiled.py) as the server runs them: a version scores with
LightGBM at once, every worker swaps in its compiled model once it is checked, the answers stay
LightGBM's, a restart reuses the compiled file, and a model the compiler gets wrong is never
served compiled."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from modelyard.ml.serving.compiled import SWAPPED_IN

from tests.serving.conftest import Trained
from tests.serving.helpers import (
    Server,
    call,
    churn_frame,
    records,
    save_local,
    score,
    start_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _predictor(handle: Server) -> str:
    status, _, body = call(handle.url, path="/version")
    assert status == 200, body
    return str(json.loads(body)["stable"]["predictor"])


def _until_logged(handle: Server, text: str, times: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while handle.log().count(text) < times:
        assert time.monotonic() < deadline, (
            f"{text!r} {times} time(s) in {timeout:.0f} s: {handle.log()}"
        )
        time.sleep(0.2)


def _sample(model: Trained) -> tuple[lgb.Booster, Any]:
    booster, features = model
    sample = features.iloc[:300].copy()
    sample.iloc[::5, 1] = np.nan  # missing values take the trees' default branches
    return booster, sample


def test_every_worker_swaps_in_the_compiled_model_and_answers_stay_lightgbms(
    server: Callable[..., Server], local_model_a: Path, model_a: Trained
) -> None:
    booster, sample = _sample(model_a)
    handle = server(str(local_model_a), workers=2)
    handle.wait_ready()
    _until_logged(handle, SWAPPED_IN, times=2)
    assert _predictor(handle) == "compiled"
    status, body, _ = score(handle.url, {"dataframe_records": records(sample)})
    assert status == 200, body
    np.testing.assert_allclose(body["predictions"], booster.predict(sample), rtol=1e-9)
    [built] = (handle.options.state_dir / "compiled").glob("*.o")  # one compile for both workers

    # A restart finds the compiled file: scoring compiled again within seconds, no new compile.
    handle.stop()
    compiled_at = built.stat().st_mtime_ns
    again = start_server(str(local_model_a), handle.options.state_dir, workers=1)
    try:
        again.wait_ready()
        _until_logged(again, SWAPPED_IN, times=3, timeout=15)
        assert built.stat().st_mtime_ns == compiled_at
        status, body, _ = score(again.url, {"dataframe_records": records(sample)})
        np.testing.assert_allclose(body["predictions"], booster.predict(sample), rtol=1e-9)
    finally:
        again.stop()


def test_a_model_the_compiler_gets_wrong_stays_on_lightgbm(
    server: Callable[..., Server], tmp_path: Path
) -> None:
    # lleaves ignores linear trees' leaf models: the check against LightGBM catches it.
    features, target = churn_frame(2000, seed=3)
    features = features.select_dtypes("number")
    params = {"objective": "binary", "linear_tree": True, "num_leaves": 7, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(features, target), 10)
    handle = server(str(save_local(booster, features, tmp_path / "linear")), workers=1)
    handle.wait_ready()
    _until_logged(handle, "stays on LightGBM's predictor: RuntimeError: compiled answers differ", 1)
    assert _predictor(handle) == "lightgbm"
    assert not list((handle.options.state_dir / "compiled").glob("*.o"))
    status, body, _ = score(handle.url, {"dataframe_records": records(features.iloc[:50])})
    assert status == 200, body
    np.testing.assert_allclose(body["predictions"], booster.predict(features.iloc[:50]), rtol=1e-9)
