"""What each worker of a training over several holds of the data (ml/training/training_data.py):
only its rows of the Parquet file, read row group by row group, meaning to LightGBM what the same
rows mean to one process that read the whole file; the leader's validation of the file, column by
column, says what one process's says; and a CSV is refused with what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from modelyard.contracts.environment import load_environment
from modelyard.ml.data.dataset import read_dataset
from modelyard.ml.data.parquet_parts import read_rows
from modelyard.ml.data.sample import generate_churn
from modelyard.ml.errors import DataValidationError
from modelyard.ml.spec import load_model_spec
from modelyard.ml.training.distributed import Network
from modelyard.ml.training.run import training_settings
from modelyard.ml.training.training_data import TrainingData, share, whole

WORKERS = 3


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    frame = generate_churn(6_000, seed=4)
    # A category only a few rows hold: most workers never see it, and must code it alike.
    frame.loc[frame.index[-3:], "region"] = "zzz-rare"
    return frame


def _file(frame: pd.DataFrame, folder: Path) -> Path:
    path = folder / "churn.parquet"
    frame.to_parquet(path, index=False, row_group_size=500)  # 12 row groups
    return path


def _shares(path: Path, tmp_path: Path) -> list[TrainingData]:
    spec = load_model_spec("churn")
    settings = training_settings(load_environment("local"), spec)
    return [share(path, spec, spec.target, settings,
                  Network(rank, WORKERS, "127.0.0.1:1", tmp_path / "network"))
            for rank in range(WORKERS)]  # fmt: skip


def test_each_worker_holds_only_its_rows_coded_as_one_process_codes_them(
    churn: pd.DataFrame, tmp_path: Path
) -> None:
    path = _file(churn, tmp_path)
    spec = load_model_spec("churn")
    one = whole(read_dataset(path), spec, spec.target,
                training_settings(load_environment("local"), spec))  # fmt: skip
    shares = _shares(path, tmp_path)
    leader, followers = shares[0], shares[1:]

    # The training rows are dealt out once: together the workers train on every row one
    # process would, each on about a third.
    trained = [len(s.split.train) for s in shares]
    assert sum(trained) == len(one.split.train) and max(trained) - min(trained) <= 1
    for worker in shares:  # every worker scores the whole validation set
        assert len(worker.split.valid) == len(one.split.valid)
    # Followers hold their training rows and the validation rows, nothing else.
    for follower in followers:
        assert len(follower.split.holdout) == 0
        assert len(follower.data.labels) == len(follower.split.train) + len(one.split.valid)
        assert len(follower.data.labels) < 0.6 * len(churn)
    assert len(leader.split.holdout) == len(one.split.holdout)

    # A worker's rows mean to LightGBM what the same rows mean to one process: the same values,
    # the same labels, the same category codes (the rare category too).
    for rank, worker in enumerate(shares):
        rows = one.split.train[rank::WORKERS]
        mine = worker.data.features.iloc[worker.split.train].reset_index(drop=True)
        theirs = one.data.features.iloc[rows].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, theirs)
        assert np.array_equal(worker.data.labels[worker.split.train], one.data.labels[rows])
        assert worker.data.categorical == one.data.categorical
        codes = worker.data.features["region"].cat.categories
        assert list(codes) == list(one.data.features["region"].cat.categories)
    assert "zzz-rare" in set(one.data.features["region"].cat.categories)

    # The leader records the whole file, as one process does.
    assert leader.digest == one.digest
    assert leader.report is not None and one.report is not None and one.record is not None
    assert leader.report.to_dict() == one.report.to_dict()
    assert leader.record is not None and leader.record.rows == one.record.rows
    assert leader.record.nullable == one.record.nullable
    assert leader.kind == one.kind


def test_the_rows_read_are_the_rows_of_the_file(churn: pd.DataFrame, tmp_path: Path) -> None:
    path = _file(churn, tmp_path)
    rows = np.array([0, 1, 499, 500, 1777, 5999])  # across row group edges, first and last
    got = read_rows(path, rows)
    pd.testing.assert_frame_equal(got, churn.iloc[rows].reset_index(drop=True))


def test_the_leader_rejects_a_bad_file_with_one_process_s_problems(
    churn: pd.DataFrame, tmp_path: Path
) -> None:
    bad = churn.drop(columns=["churned"])  # no target, and two more problems
    bad.loc[bad.index[:40], "tenure_months"] = -5
    bad["coupon"] = "x"
    path = _file(bad, tmp_path)
    spec = load_model_spec("churn")
    with pytest.raises(DataValidationError) as one:
        whole(read_dataset(path), spec, spec.target,
              training_settings(load_environment("local"), spec))  # fmt: skip
    with pytest.raises(DataValidationError) as leader:
        _shares(path, tmp_path)
    assert str(leader.value) == str(one.value)
    said = str(leader.value)
    assert "40 values below the minimum 0" in said and "coupon" in said
    assert "churned: the target column is missing" in said


def test_a_csv_is_refused_with_what_to_do(churn: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "churn.csv"
    churn.to_csv(path, index=False)
    with pytest.raises(DataValidationError) as refused:
        _shares(path, tmp_path)
    said = str(refused.value)
    assert str(path) in said and "training.kubernetes.workers is 3" in said
    assert "Give --data a .parquet file" in said
