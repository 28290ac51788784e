"""Judging a candidate version from the per-version metrics: step a canary up, or roll it back.

The limits are the environment's (`promotion.rollout.maxErrorRate`, `maxLatencyP99Ms`); each
canary step is judged on the requests the candidate answered since the step began.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from modelyard.ml.serving.app import CANDIDATE_FAILED


@dataclass(frozen=True)
class Limits:
    max_error_rate: float
    max_latency_p99_ms: float
    min_requests: int = 20


@dataclass
class VersionWindow:
    """Counts of one version since a point in time (cumulative metrics minus a baseline)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    bins: dict[str, float] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency_p99_ms(self) -> float:
        """Upper bound of the bucket holding the 99th percentile of answered requests."""
        total = self.buckets.get(math.inf, 0.0)
        if not total:
            return 0.0
        for bound in sorted(self.buckets):
            if self.buckets[bound] >= 0.99 * total:
                return bound * 1000 if math.isfinite(bound) else math.inf
        return math.inf


def window(stats: dict[str, Any], baseline: dict[str, Any] | None) -> VersionWindow:
    """Turn one version's cumulative stats (metrics.read_version_stats) into a window."""
    base = baseline or {"status": {}, "buckets": {}, "bins": {}}

    def delta(kind: str) -> dict[Any, float]:
        now: dict[Any, float] = stats.get(kind, {})
        then: dict[Any, float] = base.get(kind, {})
        return {k: v - then.get(k, 0.0) for k, v in now.items()}

    status = delta("status")
    errors = sum(v for k, v in status.items() if k == CANDIDATE_FAILED or k.startswith("5"))
    return VersionWindow(
        requests=sum(status.values()), errors=errors, buckets=delta("buckets"), bins=delta("bins")
    )


def verdict(candidate: VersionWindow, limits: Limits) -> str | None:
    """Why the candidate must be rolled back, or None while it stays within the limits."""
    if candidate.requests < limits.min_requests:
        return None
    if candidate.error_rate > limits.max_error_rate:
        return (
            f"error rate {candidate.error_rate:.1%} over {candidate.requests:.0f} requests is "
            f"above maxErrorRate {limits.max_error_rate:.1%}"
        )
    p99 = candidate.latency_p99_ms()
    if p99 > limits.max_latency_p99_ms:
        return f"p99 latency {p99:.1f} ms is above maxLatencyP99Ms {limits.max_latency_p99_ms:g} ms"
    return None


def prediction_shift(candidate: VersionWindow, stable: VersionWindow) -> float | None:
    """PSI between the two versions' prediction distributions (reported beside the verdict)."""
    from modelyard.ml.monitoring.drift import psi_from_counts

    keys = sorted(set(candidate.bins) | set(stable.bins))
    if not keys or not sum(candidate.bins.values()) or not sum(stable.bins.values()):
        return None
    return psi_from_counts(
        [stable.bins.get(k, 0.0) for k in keys], [candidate.bins.get(k, 0.0) for k in keys]
    )
