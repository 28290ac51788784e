"""`modelyard monitor drift ENV`: the environment's live samples against the training profile of
the version its alias serves, a report, and (when the environment asks) retraining."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from infra.config import Environment
from ml.errors import ModelyardMlError
from ml.monitoring.drift import DriftResult, compare
from ml.monitoring.profile import load_profile
from ml.monitoring.sampling import read_samples


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
    newest: deque[dict[str, object]] = deque(maxlen=limit)
    for sub in folders:
        newest.extend(read_samples(sub))
    rows = list(newest)
    of_version = [r for r in rows if r.get("v") == version]
    return of_version or rows


def check_drift(
    env: Environment, samples_dir: Path, report_path: Path, profile_uri: str | None = None
) -> DriftCheck:
    from mlflow.tracking import MlflowClient

    settings = env.monitoring
    name = env.training.model
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
    rows = live_samples(samples_dir, version or None, settings.sample_max_rows)
    if len(rows) < settings.min_rows:
        raise NotEnoughTraffic(
            f"only {len(rows)} live rows sampled under {samples_dir} (modelyard:monitoring.minRows "
            f"is {settings.min_rows}): let the server answer more traffic, or raise sampleRate"
        )
    result = compare(profile, rows, settings.drift_threshold, settings.p_value)
    title = f"Drift of {name} v{version or '?'} in {env.name}"
    from ml.monitoring.report import write_report

    return DriftCheck(env.name, name, version, result, write_report(result, report_path, title))


def default_report_path(state: Path, environment: str) -> Path:
    return state / "reports" / f"drift-{environment}-{datetime.now(UTC):%Y%m%dT%H%M%S}.html"
