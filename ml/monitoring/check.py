"""`modelyard monitor drift ENV`: the environment's live samples against the training profile of
the version its alias serves, a report, and (when the environment asks) retraining."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from modelyard.contracts.environment import Environment
from modelyard.contracts.state import reports_dir
from modelyard.ml.errors import ModelyardMlError
from modelyard.ml.monitoring.drift import DriftResult, compare
from modelyard.ml.monitoring.sampling import read_samples
from modelyard.ml.monitoring.training_profile import load_profile


class NotEnoughTraffic(ModelyardMlError):
    """Too few live rows were sampled to say anything about drift."""


@dataclass(frozen=True)
class DriftCheck:
    environment: str
    model: str
    version: str
    result: DriftResult
    report: Path


def live_samples(folder: Path, version: str | None, limit: int) -> list[dict[str, object]]:
    """The newest `limit` samples under `folder` (every slot), of `version` when it has any."""
    folders = sorted({p.parent for p in folder.glob("**/samples-*.jsonl")})
    rows = [row for sub in folders for row in read_samples(sub)]
    of_version = [r for r in rows if r.get("v") == version] or rows
    of_version.sort(key=lambda r: float(r.get("t") or 0.0))  # type: ignore[arg-type]
    return of_version[-limit:]


def check_drift(
    env: Environment,
    samples_dir: Path,
    report_path: Path,
    profile_uri: str | None = None,
    rows: int | None = None,
    model: str | None = None,
) -> DriftCheck:
    """`rows`: how many of the newest live rows to judge (default monitoring.sampleMaxRows);
    `model`: which of the environment's served models (default: training.model)."""
    from mlflow.tracking import MlflowClient

    settings = env.monitoring
    name = model or env.served_model
    version = ""
    if profile_uri is None:
        try:
            served = MlflowClient().get_model_version_by_alias(name, env.name)
        except Exception as exc:
            raise ModelyardMlError(
                f"cannot find what {env.name} serves (models:/{name}@{env.name}): {exc}"
            ) from None
        version = str(served.version)
        profile_uri = f"runs:/{served.run_id}"
    profile = load_profile(profile_uri)
    live = live_samples(samples_dir, version or None, rows or settings.sample_max_rows)
    if len(live) < settings.min_rows:
        raise NotEnoughTraffic(
            f"only {len(live)} live rows sampled under {samples_dir} (modelyard:monitoring.minRows "
            f"is {settings.min_rows}): let the server answer more traffic, or raise sampleRate"
        )
    result = compare(profile, live, settings.drift_threshold, settings.p_value)
    title = f"Drift of {name} v{version or '?'} in {env.name}"
    from modelyard.ml.monitoring.report import write_report

    return DriftCheck(env.name, name, version, result, write_report(result, report_path, title))


def default_report_path(state: Path, environment: str) -> Path:
    return reports_dir(state) / f"drift-{environment}-{datetime.now(UTC):%Y%m%dT%H%M%S}.html"
