"""Helpers the promotion tests share (fixtures are in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from modelyard.ml.data.sample import TARGET, generate_churn
from modelyard.ml.monitoring.sampling import SampleWriter
from modelyard.ml.monitoring.training_profile import build_profile
from modelyard.ml.prediction_kind import PredictionKind
from ruamel.yaml import YAML

Register = Callable[..., int]


def set_keys(environments: Path, env: str, section: str, values: dict[str, object]) -> None:
    """Edit `modelyard:SECTION` of a test's environment file, as a person would."""
    path = environments / f"Pulumi.{env}.yaml"
    yaml = YAML()
    document = yaml.load(path.read_text(encoding="utf-8"))
    document["config"][f"modelyard:{section}"].update(values)
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(document, handle)


def live_traffic(state: Path, env: str, rows: int, drift: float, seed: int) -> None:
    """Live samples as the environment's model server keeps them (ml.monitoring.sampling)."""
    frame = generate_churn(rows, seed=seed, drift=drift).drop(columns=[TARGET])
    writer = SampleWriter(state / "serving" / env / "blue" / "samples", rate=1.0, max_rows=10_000)
    scores = np.random.default_rng(seed).uniform(size=rows)
    for row, score in zip(frame.to_dict("records"), scores, strict=True):
        writer.add("1", row, float(score))
    writer.flush()


def training_profile(rows: int = 2000) -> dict[str, object]:
    frame = generate_churn(rows, seed=1).drop(columns=[TARGET])
    return build_profile(frame, np.random.default_rng(1).uniform(size=rows), PredictionKind())
