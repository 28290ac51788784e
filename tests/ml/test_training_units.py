"""Fast, in-process checks of the training building blocks (the pipeline's unit-test stage)."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from modelyard.contracts.environment import MetricRule
from modelyard.ml.data.dataset import Dataset
from modelyard.ml.data.validation import validate_dataset
from modelyard.ml.training import booster
from modelyard.ml.training.booster import fit
from modelyard.ml.training.features import prepare, stratified_split


def test_metric_rules_parse_pass_and_measure_the_gap() -> None:
    rule = MetricRule.parse("roc_auc >= 0.85")
    assert (rule.metric, rule.op, rule.threshold) == ("roc_auc", ">=", 0.85)
    assert rule.passes(0.85) and not rule.passes(0.8499)
    assert rule.gap(0.80) == pytest.approx(0.05) and rule.gap(0.9) == 0
    latency = MetricRule.parse("latency_p99_ms<=50")
    assert latency.passes(49) and not latency.higher_is_better
    with pytest.raises(ValueError, match="metric >= number"):
        MetricRule.parse("auc = high")


def test_split_is_stratified_disjoint_and_complete() -> None:
    labels = np.array([0] * 800 + [1] * 200)
    split = stratified_split(labels, valid=0.2, holdout=0.2, seed=1)
    parts = [split.train, split.valid, split.holdout]
    assert sum(len(p) for p in parts) == 1000
    assert len(np.unique(np.concatenate(parts))) == 1000
    for part in parts:
        assert labels[part].mean() == pytest.approx(0.2, abs=0.01)
    again = stratified_split(labels, valid=0.2, holdout=0.2, seed=1)
    assert np.array_equal(again.holdout, split.holdout)


def test_string_labels_and_text_columns_are_prepared_for_lightgbm() -> None:
    frame = pd.DataFrame({"plan": ["a", "b", None, "a"], "x": [1.0, 2.0, 3.0, None],
                          "outcome": ["stayed", "left", "left", "stayed"]})  # fmt: skip
    data = prepare(frame, "outcome")
    assert data.classes == ("left", "stayed") and list(data.labels) == [1, 0, 0, 1]
    assert data.categorical == ("plan",)
    assert isinstance(data.features["plan"].dtype, pd.CategoricalDtype)


def test_validation_catches_generic_problems_without_a_schema(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": range(150), "same": 1, "y": [0, 1] * 75})
    report = validate_dataset(
        Dataset(tmp_path / "f.csv", frame, "0" * 64, ["x", "same", "y"]), "y", None
    )
    assert [(p.column, p.problem.split(" (")[0]) for p in report.problems] == [
        ("same", "the column is constant")
    ]


class _Killed(Exception):
    pass


def _datasets() -> tuple[lgb.Dataset, lgb.Dataset]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3000, 5))
    labels = (features[:, 0] + rng.normal(size=3000) > 0).astype(int)
    train = lgb.Dataset(features[:2000], labels[:2000], free_raw_data=False, params={"verbose": -1})
    return train, lgb.Dataset(features[2000:], labels[2000:], reference=train)


def test_a_fit_killed_mid_way_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    params = {"objective": "binary", "verbose": -1, "learning_rate": 0.02, "deterministic": True}
    handed: list[tuple[int, str, float, int]] = []

    def crash_after_40(rows: list[tuple[int, str, float, int]]) -> None:
        if rows[-1][0] > 40:
            raise _Killed
        handed.extend(rows)

    with pytest.raises(_Killed):
        fit(params, *_datasets(), 120, None, "auc", True, tmp_path / "ckpt", 10, crash_after_40)
    resumed = fit(
        params, *_datasets(), 120, None, "auc", True, tmp_path / "ckpt", 10, handed.extend
    )
    assert resumed.resumed_from == 50  # the checkpoint written just before the crash
    auc_rows = [row for row in handed if row[1] == "auc"]
    assert sorted({row[0] for row in auc_rows}) == list(range(1, 121))  # no round lost
    # Rounds handed over before the crash are handed over again, as the very same rows (time
    # included): whoever stores them (MLflow) stores them once.
    assert len(set(auc_rows)) == 120

    reference = fit(params, *_datasets(), 120, None, "auc", True, tmp_path / "ref", 10)
    assert resumed.history.best_score == pytest.approx(reference.history.best_score, abs=1e-3)
    finished = fit(params, *_datasets(), 120, None, "auc", True, tmp_path / "ckpt", 10)
    assert finished.resumed_from == 120  # a finished fit is loaded, not redone


def test_a_kill_between_the_two_checkpoint_writes_numbers_every_round_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"objective": "binary", "verbose": -1, "learning_rate": 0.02, "deterministic": True}
    checkpoint = tmp_path / "ckpt"
    write = booster.write_atomic
    writes = 0

    def killed_at_the_12th_write(path: Path, text: str) -> None:
        nonlocal writes
        writes += 1
        if writes == 12:  # the second of the two files of the round-60 checkpoint
            raise _Killed
        write(path, text)

    monkeypatch.setattr(booster, "write_atomic", killed_at_the_12th_write)
    with pytest.raises(_Killed):
        fit(params, *_datasets(), 120, None, "auc", True, checkpoint, 10)
    monkeypatch.setattr(booster, "write_atomic", write)

    handed: list[tuple[int, str, float, int]] = []
    resumed = fit(params, *_datasets(), 120, None, "auc", True, checkpoint, 10, handed.extend)
    assert len(resumed.history.scores) == 120
    assert sorted({step for step, name, _, _ in handed if name == "auc"}) == list(range(1, 121))
