"""Servers on one host share the download cache: one server's download never takes away a model
another is loading (a second server used to remove the first one's published folder, and the
first one's worker found no MLmodel file)."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from modelyard.ml.serving.routing import VersionRef
from modelyard.ml.serving.source import COMPLETE, materialise, resolve

from tests.serving.conftest import Trained
from tests.serving.helpers import register

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_a_download_that_finishes_second_leaves_the_published_model_in_place(
    tracking: str, model_a: Trained, model_name: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    version = register(*model_a, model_name)
    ref = resolve(f"models:/{model_name}/{version}")
    cache = tmp_path / "models"
    download = mlflow.artifacts.download_artifacts
    published: list[VersionRef] = []
    inodes: list[int] = []
    calls = 0

    def other_server_publishes_first(**kwargs: str) -> str:
        nonlocal calls
        calls += 1
        local = download(**kwargs)
        if calls == 1:  # while this download is in flight, another server finishes its own
            published.append(materialise(ref, cache))
            inodes.append(Path(published[0].path).stat().st_ino)
        return local

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", other_server_publishes_first)
    got = materialise(ref, cache)
    first = Path(published[0].path)
    assert got.path == str(first) and got.version == version
    # The folder a worker may already be loading is the one that stays: the same folder, whole,
    # with nothing left beside it (no half-download, no second copy).
    assert [first.stat().st_ino] == inodes
    assert (first / "MLmodel").is_file() and (first / COMPLETE).is_file()
    assert os.listdir(cache / model_name) == [version]
    booster, features = model_a
    served = mlflow.lightgbm.load_model(str(first))
    assert list(served.predict(features.head(3))) == list(booster.predict(features.head(3)))


def test_an_unfinished_folder_from_an_older_cache_is_replaced(
    tracking: str, model_a: Trained, model_name: str, tmp_path: Path
) -> None:
    version = register(*model_a, model_name)
    cache = tmp_path / "models"
    left = cache / model_name / version
    left.mkdir(parents=True)
    (left / "model.lgb").write_text("half a download\n")
    got = materialise(resolve(f"models:/{model_name}/{version}"), cache)
    assert (Path(got.path) / "MLmodel").is_file() and (Path(got.path) / COMPLETE).is_file()
    assert sorted(os.listdir(cache / model_name)) == [version]
