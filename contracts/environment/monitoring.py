"""How an environment watches what it serves: live sampling and the drift alarm."""

from __future__ import annotations

from typing import Literal

from modelyard.contracts.environment.base import Section
from pydantic import Field


class MonitoringSettings(Section):
    # Share of scoring requests whose rows are kept (bounded, rotated) for drift checks.
    sample_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    sample_max_rows: int = Field(default=50_000, ge=100, le=10_000_000)
    # A feature drifts when its PSI reaches the threshold and its KS / chi-square test agrees.
    drift_threshold: float = Field(default=0.2, gt=0.0)
    p_value: float = Field(default=0.01, gt=0.0, lt=1.0)
    min_rows: int = Field(default=200, ge=10)
    # What a drift alarm does: nothing more than the report and exit code, or start retraining
    # (the local pipeline, or a Jenkins build where JENKINS_URL is set).
    on_drift: Literal["report", "retrain"] = "report"
    # How a canary is judged and stepped up (the limits are promotion.rollout's).
    canary_step_seconds: float = Field(default=60.0, gt=0)
    canary_min_requests: int = Field(default=50, ge=1)
