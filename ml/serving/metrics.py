"""Prometheus metrics of the server, per model version; shared by all workers (multiprocess mode).

The per-request series (requests, latency, batch rows) are updated inline; the per-row ones
(prediction distribution, feature summaries) are summed in numpy and flushed once a second,
so a 1,000-row batch costs a few vector operations instead of thousands of metric updates.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from modelyard.ml.prediction_kind import PredictionKind
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
ROW_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000)

REQUESTS = Counter(
    "modelyard_requests_total",
    "Scoring requests by answering version and HTTP status",
    ["model_version", "status"],
)
UNAUTHORIZED = Counter(
    "modelyard_unauthorized_requests_total",
    "Requests refused 401: route (invocations, metrics) and reason (missing, invalid token)",
    ["route", "reason"],
)
LATENCY = Histogram(
    "modelyard_request_latency_seconds",
    "Time to score one request",
    ["model_version"],
    buckets=LATENCY_BUCKETS,
)
BATCH_ROWS = Histogram(
    "modelyard_batch_rows", "Rows per scoring request", ["model_version"], buckets=ROW_BUCKETS
)
PREDICTIONS = Counter(
    "modelyard_predictions_total",
    "Predictions by bin: tenth of [0, 1] (binary), decile of the training target (regression, "
    "named by its lower edge), predicted class (multiclass)",
    ["model_version", "bin"],
)
# A gauge, not a counter: feature values can be negative. "sum" adds up every worker's total.
FEATURE_SUM = Gauge(
    "modelyard_feature_value_sum",
    "Sum of the non-missing values of a feature",
    ["model_version", "feature"],
    multiprocess_mode="sum",
)
FEATURE_COUNT = Counter(
    "modelyard_feature_values_total",
    "Non-missing values seen per feature",
    ["model_version", "feature"],
)
FEATURE_MISSING = Counter(
    "modelyard_feature_missing_total",
    "Missing values seen per feature",
    ["model_version", "feature"],
)


class RowSummaries:
    """Predictions and feature values of answered requests, summed into the metrics once a
    second: the request path only keeps a reference to arrays it already has.

    `features` are (name, is numeric) pairs in matrix column order."""

    FLUSH_ROWS = 200_000  # bound the memory held between flushes

    def __init__(self) -> None:
        self._pending: list[
            tuple[str, list[tuple[str, bool]], np.ndarray, np.ndarray, PredictionKind]
        ] = []
        self._rows = 0

    def add(
        self,
        version: str,
        features: list[tuple[str, bool]],
        matrix: np.ndarray,
        scores: np.ndarray,
        kind: PredictionKind,
    ) -> None:
        self._pending.append((version, features, matrix, scores, kind))
        self._rows += len(scores)
        if self._rows >= self.FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        pending, self._pending, self._rows = self._pending, [], 0
        by_version: dict[
            str,
            tuple[list[tuple[str, bool]], PredictionKind, list[np.ndarray], list[np.ndarray]],
        ] = {}
        for version, features, matrix, scores, kind in pending:
            entry = by_version.setdefault(version, (features, kind, [], []))
            entry[2].append(matrix)
            entry[3].append(scores)
        for version, (features, kind, matrices, score_lists) in by_version.items():
            matrix, scores = np.vstack(matrices), np.concatenate(score_lists)
            for label, n in kind.bin_counts(scores).items():
                PREDICTIONS.labels(version, label).inc(n)
            present = ~np.isnan(matrix)
            sums = np.where(present, matrix, 0.0).sum(axis=0)
            counts = present.sum(axis=0)
            for i, (name, numeric) in enumerate(features):
                if counts[i] and numeric:  # a sum of category codes would mean nothing
                    FEATURE_SUM.labels(version, name).inc(float(sums[i]))
                if counts[i]:
                    FEATURE_COUNT.labels(version, name).inc(int(counts[i]))
                if len(matrix) - counts[i]:
                    FEATURE_MISSING.labels(version, name).inc(int(len(matrix) - counts[i]))


def render(multiproc_dir: str) -> bytes:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiproc_dir)
    return generate_latest(registry)


def read_version_stats(multiproc_dir: str) -> dict[str, dict[str, Any]]:
    """Per version: requests by status, latency buckets, prediction bins (cumulative)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiproc_dir)
    return _version_stats(registry.collect())


def parse_version_stats(*exposition: str) -> dict[str, dict[str, Any]]:
    """The same from `/metrics` answers (one per server or pod), summed over them."""
    from prometheus_client.parser import text_string_to_metric_families

    total: dict[str, dict[str, Any]] = {}
    for text in exposition:
        for version, entry in _version_stats(text_string_to_metric_families(text)).items():
            into = total.setdefault(version, {"status": {}, "buckets": {}, "bins": {}})
            for kind, counts in entry.items():
                for key, value in counts.items():
                    into[kind][key] = into[kind].get(key, 0.0) + value
    return total


def _version_stats(families: Iterable[Metric]) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for family in families:
        for sample in family.samples:
            version = sample.labels.get("model_version")
            if version is None:
                continue
            entry = stats.setdefault(version, {"status": {}, "buckets": {}, "bins": {}})
            if sample.name == "modelyard_requests_total":
                entry["status"][sample.labels["status"]] = sample.value
            elif sample.name == "modelyard_request_latency_seconds_bucket":
                entry["buckets"][float(sample.labels["le"])] = sample.value
            elif sample.name == "modelyard_predictions_total":
                entry["bins"][sample.labels["bin"]] = sample.value
    return stats
