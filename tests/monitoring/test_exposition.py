"""The drift check's textfile for node-exporter: what Prometheus will read, written atomically."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from modelyard.ml.monitoring.exposition import write_drift_textfile
from prometheus_client.parser import text_string_to_metric_families


def read_samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_the_textfile_holds_the_drift_result_per_environment_model_and_feature(
    tmp_path: Path,
) -> None:
    written = write_drift_textfile(
        tmp_path / "drift-production.prom",
        "production",
        "churn",
        drifted=True,
        features={"tenure_months": 0.31, "monthly_charges": 0.04},
        checked_at=1_700_000_123.5,
    )
    assert written == tmp_path / "drift-production.prom"
    assert read_samples(written) == {
        key("modelyard_drift_detected", environment="production", model="churn"): 1.0,
        key(
            "modelyard_drift_psi", environment="production", model="churn", feature="tenure_months"
        ): 0.31,
        key(
            "modelyard_drift_psi",
            environment="production",
            model="churn",
            feature="monthly_charges",
        ): 0.04,
        key(
            "modelyard_drift_last_check_timestamp_seconds", environment="production", model="churn"
        ): 1_700_000_123.5,
    }
    # Nothing else in the collector's folder: no temporary file left behind.
    assert [p.name for p in tmp_path.iterdir()] == ["drift-production.prom"]


def test_a_second_write_replaces_the_first_whole(tmp_path: Path) -> None:
    path = tmp_path / "drift-staging.prom"
    write_drift_textfile(path, "staging", "churn", True, {"age": 0.5, "plan": 0.3}, 100.0)
    write_drift_textfile(path, "staging", "churn", False, {"age": 0.01}, checked_at=200.0)
    # The feature the second check did not report is gone, not left over from the first.
    assert read_samples(path) == {
        key("modelyard_drift_detected", environment="staging", model="churn"): 0.0,
        key("modelyard_drift_psi", environment="staging", model="churn", feature="age"): 0.01,
        key(
            "modelyard_drift_last_check_timestamp_seconds", environment="staging", model="churn"
        ): 200.0,
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drift-staging.prom"]


def test_a_reader_never_sees_a_half_written_file(tmp_path: Path) -> None:
    """What node-exporter does at every scrape, while the drift check rewrites the file."""
    path = tmp_path / "drift-production.prom"
    write_drift_textfile(path, "production", "churn", False, {"f0": 0.0}, checked_at=0.0)
    done = threading.Event()
    reads: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []

    def read() -> None:
        while not done.is_set():
            reads.append(read_samples(path))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 300):
            # Run i: i features, drifted on odd runs, checked at time i.
            features = {f"f{n}": float(i) for n in range(i % 7 + 1)}
            write_drift_textfile(path, "production", "churn", i % 2 == 1, features, float(i))
    finally:
        done.set()
        reader.join(timeout=30)
    assert len(reads) > 10
    for seen in reads:
        labels = {"environment": "production", "model": "churn"}
        run = seen[key("modelyard_drift_last_check_timestamp_seconds", **labels)]
        assert seen[key("modelyard_drift_detected", **labels)] == run % 2
        psi = {dict(labels)["feature"]: v for (name, labels), v in seen.items() if "psi" in name}
        assert psi == {f"f{n}": run for n in range(int(run) % 7 + 1)}


def test_a_name_the_collector_would_ignore_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\*\.prom"):
        write_drift_textfile(tmp_path / "drift.txt", "production", "churn", True, {}, 1.0)
    assert list(tmp_path.iterdir()) == []
