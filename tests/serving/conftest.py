"""Models trained once per run, and servers started per test on free ports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightgbm as lgb
import pandas as pd
import pytest

from tests.serving.helpers import Server, save_local, start_server, train_booster

Trained = tuple[lgb.Booster, pd.DataFrame]


@pytest.fixture(scope="session")
def model_a() -> Trained:
    return train_booster(rounds=30, seed=0)


@pytest.fixture(scope="session")
def model_b() -> Trained:
    return train_booster(rounds=40, seed=1)


@pytest.fixture(scope="session")
def model_needs_new_column() -> Trained:
    return train_booster(rounds=20, seed=2, extra_column=True)


@pytest.fixture(scope="session")
def local_model_a(model_a: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_local(*model_a, tmp_path_factory.mktemp("models") / "churn-a")


@pytest.fixture
def model_name() -> str:
    """A registered-model name no other test uses (they share one MLflow server)."""
    return f"serving-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers for this test; all are stopped at its end."""
    started: list[Server] = []

    def start(model_uri: str, **options: Any) -> Server:
        folder = tmp_path / f"server-{len(started)}"
        handle = start_server(model_uri, folder, **options)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
