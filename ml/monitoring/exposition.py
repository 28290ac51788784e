"""The drift check's result as Prometheus gauges, for node-exporter's textfile collector.

node-exporter (`--collector.textfile.directory=DIR`) reads every `DIR/*.prom` at each scrape;
monitoring/prometheus/alerts.yml alerts on `modelyard_drift_detected` and on a
`modelyard_drift_last_check_timestamp_seconds` gone stale. Only prometheus_client is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile


def write_drift_textfile(
    path: Path, environment: str, model: str, drifted: bool, features: dict[str, float],
    checked_at: float,
) -> Path:  # fmt: skip
    """Write the drift result of one model in one environment to `path` (which must end in
    `.prom`) atomically: node-exporter never reads a half-written file, and a scrape sees the
    old result or the new.

    `features` maps each feature to its PSI; `checked_at` is the check's Unix time."""
    path = Path(path)
    if path.suffix != ".prom":
        raise ValueError(f"{path}: the textfile collector only reads files named *.prom")
    registry = CollectorRegistry()
    Gauge(
        "modelyard_drift_detected",
        "1 when the last drift check found drifted features, else 0",
        ["environment", "model"],
        registry=registry,
    ).labels(environment, model).set(1 if drifted else 0)
    psi = Gauge(
        "modelyard_drift_psi",
        "Population stability index of a feature, live sample against the training profile",
        ["environment", "model", "feature"],
        registry=registry,
    )
    for feature, value in sorted(features.items()):
        psi.labels(environment, model, feature).set(value)
    Gauge(
        "modelyard_drift_last_check_timestamp_seconds",
        "Unix time of the last drift check",
        ["environment", "model"],
        registry=registry,
    ).labels(environment, model).set(checked_at)
    # The collector skips the temporary name (not *.prom); rename(2) swaps the file in one step.
    temporary = path.with_suffix(".prom.tmp")
    try:
        write_to_textfile(str(temporary), registry)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
