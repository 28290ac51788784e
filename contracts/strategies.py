"""Rollout strategies: the names an environment file may choose, and which of them each
serving platform carries out. Dependency-free: the model server's image carries this file."""

from __future__ import annotations

from typing import Literal, get_args

Strategy = Literal["recreate", "rolling", "blue-green", "canary", "ab", "shadow"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
# Kubernetes splits traffic by pods; A/B and shadow need per-request routing it lacks today.
ON_KUBERNETES: tuple[str, ...] = ("recreate", "rolling", "blue-green", "canary")
