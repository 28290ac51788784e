"""Profile, drift statistics and the report, on the sample generator's drift knob."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from modelyard.ml.monitoring.drift import compare, psi_from_counts
from modelyard.ml.monitoring.report import write_report
from modelyard.ml.monitoring.training_profile import (
    ProfileError,
    build_profile,
    load_profile,
    save_profile,
)
from modelyard.ml.prediction_kind import PredictionKind

from tests.serving.helpers import churn_frame, records


def _live(drift: float, seed: int, n: int = 1500) -> list[dict[str, object]]:
    features, _ = churn_frame(n, seed=seed, drift=drift)
    scores = np.clip(features["monthly_charges"].to_numpy() / 200, 0, 1)
    return [{"x": row, "p": float(p)} for row, p in zip(records(features), scores, strict=True)]


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    features, _ = churn_frame(4000, seed=0)
    scores = np.clip(features["monthly_charges"].to_numpy() / 200, 0, 1)
    path = save_profile(
        build_profile(features, scores, PredictionKind()), tmp_path_factory.mktemp("p") / "p.json"
    )
    return load_profile(path)


def test_profile_describes_every_feature_and_the_predictions(profile: dict) -> None:  # type: ignore[type-arg]
    features = profile["features"]
    assert features["contract"]["kind"] == "categorical"
    assert sum(features["contract"]["frequencies"].values()) == pytest.approx(1.0)
    tenure = features["tenure_months"]
    assert tenure["kind"] == "numeric" and len(tenure["shares"]) == len(tenure["edges"]) + 1
    assert features["satisfaction_score"]["missing"] == pytest.approx(0.15, abs=0.03)
    assert len(profile["prediction"]["shares"]) == 10


def test_same_population_does_not_drift(profile: dict) -> None:  # type: ignore[type-arg]
    result = compare(profile, _live(drift=0.0, seed=7))
    assert not result.drifted, [(f.name, f.psi, f.p_value) for f in result.drifted_features]
    assert result.max_psi < 0.1


def test_drifted_population_is_caught_feature_by_feature(profile: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    result = compare(profile, _live(drift=0.9, seed=7))
    drifted = {f.name for f in result.drifted_features}
    # The generator's knob moves tenure, contracts, regions (an unseen one) and support calls.
    assert {"tenure_months", "contract", "region", "support_calls"} <= drifted
    assert "age" not in drifted and "payment_method" not in drifted
    report = write_report(result, tmp_path / "drift.html", "Drift of churn")
    page = report.read_text()
    assert page.count("<img") == len(result.drifted_features) + int(
        bool(result.prediction and result.prediction.drifted)
    )
    assert "region drift" in page and "Verdict" in page


def test_psi_is_zero_for_identical_histograms_and_grows_with_shift() -> None:
    assert psi_from_counts([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    assert (
        psi_from_counts([10, 20, 30], [30, 20, 10])
        > psi_from_counts([10, 20, 30], [12, 20, 28])
        > 0
    )


def test_a_file_that_is_not_a_profile_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(ProfileError, match="not a modelyard reference profile"):
        load_profile(path)


def test_a_multiclass_model_s_predicted_classes_and_a_regression_model_s_values_drift() -> None:
    """The prediction is profiled as the task has it (the predicted class, or the value binned by
    the training target's deciles) and live samples carry the same."""
    rng = np.random.default_rng(4)
    features, _ = churn_frame(3000, seed=0)
    tiers = PredictionKind("multiclass", ("basic", "plus", "pro"), ())
    probabilities = rng.dirichlet([4, 2, 1], size=len(features))
    profile = build_profile(features, probabilities, tiers)
    assert profile["prediction"]["kind"] == "categorical"
    assert profile["prediction"]["frequencies"]["basic"] > 0.5

    def live(weights: list[float]) -> list[dict[str, object]]:
        rows = records(features.head(1500))
        picked = rng.dirichlet(weights, size=len(rows))
        return [{"x": row, "p": tiers.sample_value(p)} for row, p in zip(rows, picked, strict=True)]

    assert compare(profile, live([4, 2, 1])).prediction is not None
    assert not compare(profile, live([4, 2, 1])).prediction.drifted  # type: ignore[union-attr]
    shifted = compare(profile, live([1, 2, 4])).prediction
    assert shifted is not None and shifted.drifted and shifted.kind == "categorical"

    values = rng.normal(60, 20, len(features))
    demand = PredictionKind("regression", (), tuple(np.quantile(values, np.linspace(0.1, 0.9, 9))))
    profile = build_profile(features, values, demand)
    assert profile["prediction"]["edges"] == pytest.approx(list(demand.edges))
    same = [{"x": row, "p": float(v)} for row, v in
            zip(records(features.head(1500)), rng.normal(60, 20, 1500), strict=True)]  # fmt: skip
    higher = [{"x": row, "p": float(v)} for row, v in
              zip(records(features.head(1500)), rng.normal(85, 20, 1500), strict=True)]  # fmt: skip
    assert not compare(profile, same).prediction.drifted  # type: ignore[union-attr]
    assert compare(profile, higher).prediction.drifted  # type: ignore[union-attr]
