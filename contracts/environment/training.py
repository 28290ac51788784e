"""How an environment trains: which model, the gate it must pass and the tuning budget."""

from __future__ import annotations

from modelyard.contracts.environment.base import MetricRule, Section
from pydantic import Field


class Budget(Section):
    trials: int = Field(default=20, ge=1, le=1000)
    minutes: float = Field(default=15.0, gt=0, le=24 * 60)


class TrainingSettings(Section):
    model: str = Field(min_length=1, description="model folder under ml/models/")
    # The bar tuning works towards: a candidate below it is never registered. What this
    # environment will serve is decided by promotion.gates (promotion.py).
    gate: MetricRule
    budget: Budget = Budget()
    num_boost_round: int = Field(default=200, ge=1, le=100_000)
    early_stopping_rounds: int | None = Field(default=30, ge=1)
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    validation_fraction: float = Field(default=0.2, gt=0.0, lt=0.5)
    checkpoint_every: int = Field(default=10, ge=1)
    seed: int = 42
