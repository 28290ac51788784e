"""Drift evidence for the `maxDrift` rule: the candidate's training profile against the live
inputs its source environment saw. Without both, the rule has no evidence and fails closed."""

from __future__ import annotations

from pipelines.promotion.registry import Registry, Version

PROFILE = "reference/profile.json"


def evidence(registry: Registry, candidate: Version, source: str) -> tuple[float | None, str]:
    """(drift score, what was compared); the score is None when there is nothing to compare."""
    if source == "registered":
        return None, "the source is the registry: no environment has served it live traffic yet"
    profile = registry.json_artifact(candidate.run_id, PROFILE) if candidate.run_id else None
    if profile is None:
        return None, f"run {candidate.run_id} of v{candidate.number} has no {PROFILE}"
    return None, f"no live sample from {source} is available to compare with {PROFILE}"
