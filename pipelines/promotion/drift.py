"""Drift evidence for the `maxDrift` rule: the candidate's training profile (its run's
`reference/profile.json`) against the live inputs its source environment's model servers
sampled (`.modelyard/serving/SOURCE/**/samples-*.jsonl`, `serving-models/SOURCE/MODEL/` for
the models served beside training.model; written by ml/serving; on Kubernetes
copied out of the source's pods first). The score is
the largest PSI over features and predictions (ml.monitoring.drift). Without a profile or live
sample there is no evidence, and the rule fails closed."""

from __future__ import annotations

from pathlib import Path

from modelyard.contracts import artifacts
from modelyard.contracts.environment import load_environment
from modelyard.ml.monitoring.drift import compare
from modelyard.ml.monitoring.sampling import read_samples
from modelyard.pipelines.promotion.registry import Registry, Version

MIN_ROWS = 100  # fewer live rows than this say nothing about a distribution


def samples_of(environment: str, model: str) -> list[dict[str, object]]:
    """Every live sample the environment's servers of `model` kept, any slot, any version: its
    pods' on Kubernetes, its local servers' otherwise."""
    settings = load_environment(environment)
    if model not in settings.served_models:
        return []  # the source does not serve this model: nothing was seen live
    extra = None if model == settings.served_model else model
    if settings.serving.platform == "kubernetes":
        from modelyard.pipelines.pod_samples import pods_folder, refresh_pod_samples

        refresh_pod_samples(settings, extra)  # unreachable pods: one clear error, no stale evidence
        root = pods_folder(environment, extra)
    else:
        from modelyard.pipelines.deploy import serving_dir

        root = serving_dir(environment, extra)
    folders = sorted({path.parent for path in root.glob("**/samples-*.jsonl")})
    return [record for folder in folders for record in read_samples(Path(folder))]


def evidence(registry: Registry, candidate: Version, source: str) -> tuple[float | None, str]:
    """(drift score, what was compared); the score is None when there is nothing to compare."""
    if source == "registered":
        return None, "the source is the registry: no environment has served it live traffic yet"
    profile = (
        registry.json_artifact(candidate.run_id, artifacts.PROFILE) if candidate.run_id else None
    )
    if not isinstance(profile, dict) or "features" not in profile:
        return (
            None,
            f"run {candidate.run_id} of v{candidate.number} has no usable {artifacts.PROFILE}",
        )
    live = samples_of(source, candidate.model)
    if len(live) < MIN_ROWS:
        return None, (
            f"{len(live)} live rows sampled in {source} (at least {MIN_ROWS} needed to compare "
            f"with the training profile)"
        )
    result = compare(profile, live)
    worst = max(
        [*result.features, *([result.prediction] if result.prediction else [])],
        key=lambda feature: feature.psi,
    )
    return result.max_psi, (
        f"max PSI of {len(live)} live rows in {source} vs v{candidate.number}'s training profile "
        f"(worst: {worst.name})"
    )
