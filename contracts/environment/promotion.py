"""The rules a model version must pass to be served by an environment."""

from __future__ import annotations

from datetime import time
from typing import Literal

from modelyard.contracts.environment.base import MetricRule, Section
from modelyard.contracts.strategies import Strategy
from pydantic import Field, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Champion(Section):
    metric: str = Field(min_length=1)
    min_delta: float = Field(default=0.0, ge=0)
    # False for metrics where lower wins (log_loss, latency): then the candidate must be lower.
    higher_is_better: bool = True


class Approvals(Section):
    required: int = Field(default=0, ge=0, le=10)
    group: str | None = None
    members: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _enough_members(self) -> Approvals:
        if self.required and self.members and len(self.members) < self.required:
            raise ValueError(
                f"{self.required} approvals required but the group lists only "
                f"{len(self.members)} members: add members or lower `required`"
            )
        return self


class FreezeWindow(Section):
    days: list[Weekday] = Field(min_length=1)
    start: time
    end: time
    reason: str = ""


class Freeze(Section):
    enabled: bool = False
    reason: str = ""
    windows: list[FreezeWindow] = Field(default_factory=list)


class Rollout(Section):
    strategy: Strategy = "rolling"
    canary_steps: list[int] = Field(default_factory=lambda: [10, 50, 100])
    ab_split: int = Field(default=50, ge=1, le=99)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_latency_p99_ms: float = Field(default=100.0, gt=0)

    @model_validator(mode="after")
    def _steps_climb_to_100(self) -> Rollout:
        steps = self.canary_steps
        if any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)) or steps[-1] != 100:
            raise ValueError(
                "canarySteps must be increasing percentages ending at 100, e.g. [10, 50, 100]"
            )
        return self


class PromotionSettings(Section):
    # "registered": candidates the pipeline registered; otherwise the environment it takes from.
    source: str = Field(default="registered", min_length=1)
    # With source `registered`: versions trained for these environments are candidates too
    # (e.g. [local] lets the demo's locally trained model into staging); default: only its own.
    trained_for: list[str] = Field(default_factory=list)
    # What a version must show to be served here, checked at promotion on the metrics its run
    # recorded. training.gate is where tuning stops: a promotion gate on the same metric set
    # higher than it lets training register versions this environment will refuse.
    gates: list[MetricRule] = Field(default_factory=list)
    champion: Champion | None = None
    max_drift: float | None = Field(default=None, gt=0)
    soak_minutes: float = Field(default=0.0, ge=0)
    approvals: Approvals = Approvals()
    freeze: Freeze = Freeze()
    rollout: Rollout = Rollout()
