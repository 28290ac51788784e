"""Rollout strategies: the names an environment file may choose, and which of them each
serving platform carries out. Dependency-free: the model server's image carries this file."""

from __future__ import annotations

from typing import Literal, get_args

Strategy = Literal["recreate", "rolling", "blue-green", "canary", "ab", "shadow"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
# The strategies whose server loads the stable and the candidate version side by side and routes
# each request itself (locally and in each Kubernetes pod alike).
TWO_VERSIONS_PER_POD: tuple[str, ...] = ("canary", "ab", "shadow")
