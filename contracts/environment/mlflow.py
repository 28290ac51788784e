"""Where the environment's MLflow tracking server and model registry live."""

from __future__ import annotations

from modelyard.contracts.environment.base import Section
from pydantic import Field


class MlflowSettings(Section):
    # MLFLOW_TRACKING_URI (and _USERNAME/_PASSWORD) win over this, the MLflow way.
    tracking_uri: str = Field(min_length=1)
    experiment: str = Field(default="modelyard", min_length=1)
