"""The environment's promotion rules, each judged on evidence the caller gathered.

Pure functions: no MLflow, no clock of their own. Every result says what was compared, so the
table a person reads and the record an auditor reads carry the same evidence. A rule without
evidence fails (fail closed) and says which evidence is missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from modelyard.contracts.environment import MetricRule
from modelyard.contracts.environment.promotion import Approvals, Champion, Freeze


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    evidence: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def registered_gate(version: int, rule: str, value: str, passed: bool) -> Gate:
    name = "training gate"
    if passed:
        return Gate(name, True, f"v{version} passed its training gate {rule} (value {value})")
    return Gate(name, False, f"v{version} did not pass its training gate {rule} (value {value})")


def source_gate(source: str, version: int, source_serves: int | None) -> Gate:
    """Production-like environments take only what their source environment serves now."""
    name = f"served by {source}"
    if source_serves == version:
        return Gate(name, True, f"{source} serves v{version}")
    now = f"v{source_serves}" if source_serves is not None else "nothing"
    return Gate(
        name, False, f"{source} serves {now}, not v{version}: promote v{version} to {source} first"
    )


def metric_gate(rule: MetricRule, metrics: dict[str, float], run_id: str) -> Gate:
    value = metrics.get(rule.metric)
    if value is None:
        return Gate(
            str(rule), False, f"no evidence: metric {rule.metric!r} is not logged on run {run_id}"
        )
    verdict = "meets" if rule.passes(value) else "misses"
    return Gate(str(rule), rule.passes(value), f"{rule.metric} = {value:.4g} {verdict} {rule}")


def champion_gate(
    rule: Champion,
    higher_is_better: bool,
    candidate: dict[str, float],
    champion_version: int | None,
    champion: dict[str, float],
) -> Gate:
    better = "higher" if higher_is_better else "lower"
    name = f"beats champion on {rule.metric} by >= {rule.min_delta:g} ({better} is better)"
    if champion_version is None:
        return Gate(name, True, "first promotion: the environment serves no model yet, no champion")
    mine, theirs = candidate.get(rule.metric), champion.get(rule.metric)
    if mine is None or theirs is None:
        missing = "the candidate" if mine is None else f"champion v{champion_version}"
        return Gate(name, False, f"no evidence: {rule.metric!r} is not logged for {missing}")
    delta = mine - theirs if higher_is_better else theirs - mine
    passed = delta >= rule.min_delta
    return Gate(
        name,
        passed,
        f"candidate {mine:.4g} vs champion v{champion_version} {theirs:.4g}: "
        f"improvement {delta:+.4g} {'>=' if passed else '<'} {rule.min_delta:g}",
    )


def soak_gate(minimum_minutes: float, since: datetime | None, where: str, now: datetime) -> Gate:
    name = f"soak >= {minimum_minutes:g} min in {where}"
    if since is None:
        return Gate(name, False, f"no evidence: no record of when {where} started serving it")
    soaked = (now - since) / timedelta(minutes=1)
    passed = soaked >= minimum_minutes
    return Gate(
        name,
        passed,
        f"in {where} since {since:%Y-%m-%d %H:%M} UTC: {soaked:.1f} min "
        f"{'>=' if passed else '<'} {minimum_minutes:g}",
    )


def approvals_gate(rule: Approvals, approvers: list[str]) -> Gate:
    group = rule.group or "anyone"
    name = f"{rule.required} approval(s) from {group}"
    unique = list(dict.fromkeys(a.strip() for a in approvers if a.strip()))
    strangers = [a for a in unique if rule.members and a not in rule.members]
    valid = [a for a in unique if a not in strangers]
    passed = len(valid) >= rule.required and not strangers
    parts = [f"{len(valid)} of {rule.required}" + (f": {', '.join(valid)}" if valid else "")]
    if strangers:
        parts.append(f"not in {group} ({', '.join(rule.members)}): {', '.join(strangers)}")
    if len(valid) < rule.required:
        parts.append("add --approved-by NAME for each approver")
    return Gate(name, passed, "; ".join(parts))


def freeze_gate(rule: Freeze, now: datetime) -> Gate:
    """Refuses during a freeze (all times UTC); rollback reports it without being blocked."""
    if rule.enabled:
        why = rule.reason or "no reason given"
        return Gate("no freeze", False, f"the environment is frozen: {why}")
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[now.weekday()]
    clock = now.time().replace(tzinfo=None)
    for window in rule.windows:
        if day in window.days and window.start <= clock <= window.end:
            return Gate(
                "no freeze",
                False,
                f"{now:%a %H:%M} UTC is inside the freeze window {'/'.join(window.days)} "
                f"{window.start:%H:%M}-{window.end:%H:%M}: {window.reason or 'no reason given'}",
            )
    return Gate("no freeze", True, f"not frozen at {now:%a %H:%M} UTC")


def drift_gate(maximum: float, score: float | None, detail: str) -> Gate:
    name = f"drift <= {maximum:g}"
    if score is None:
        return Gate(name, False, f"no evidence: {detail}")
    passed = score <= maximum
    return Gate(name, passed, f"{detail}: {score:.4g} {'<=' if passed else '>'} {maximum:g}")
