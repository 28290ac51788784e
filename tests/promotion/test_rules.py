"""Each promotion rule, judged on evidence: pass, fail, and fail-closed without evidence."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from modelyard.contracts.environment import MetricRule
from modelyard.contracts.environment.promotion import (
    Approvals,
    Champion,
    Freeze,
    FreezeWindow,
    PromotionSettings,
)
from modelyard.pipelines.promotion import rules

SUNDAY_NOON = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_metric_gates_compare_in_their_direction_and_fail_without_evidence() -> None:
    higher, lower = MetricRule.parse("roc_auc >= 0.85"), MetricRule.parse("latency_p99_ms <= 50")
    assert rules.metric_gate(higher, {"roc_auc": 0.9}, "r1").passed
    failed = rules.metric_gate(higher, {"roc_auc": 0.8}, "r1")
    assert not failed.passed and "0.8 misses roc_auc >= 0.85" in failed.evidence
    assert rules.metric_gate(lower, {"latency_p99_ms": 31.0}, "r1").passed
    assert not rules.metric_gate(lower, {"latency_p99_ms": 51.0}, "r1").passed
    missing = rules.metric_gate(lower, {"roc_auc": 0.9}, "r1")
    assert not missing.passed
    assert "no evidence" in missing.evidence and "latency_p99_ms" in missing.evidence


def test_champion_comparison_first_promotion_delta_and_direction() -> None:
    rule = Champion(metric="roc_auc", min_delta=0.01)
    up = rule.better_when_higher("binary")
    first = rules.champion_gate(rule, up, {"roc_auc": 0.9}, None, {})
    assert first.passed and "first promotion" in first.evidence
    assert rules.champion_gate(rule, up, {"roc_auc": 0.92}, 3, {"roc_auc": 0.905}).passed
    close = rules.champion_gate(rule, up, {"roc_auc": 0.91}, 3, {"roc_auc": 0.905})
    assert not close.passed and "champion v3" in close.evidence
    # The direction is the task's metric's: lower wins for log_loss and rmse, unless the
    # environment says otherwise for a metric the kit does not record.
    lower = Champion(metric="log_loss", min_delta=0.0)
    down = lower.better_when_higher("binary")
    assert rules.champion_gate(lower, down, {"log_loss": 0.3}, 1, {"log_loss": 0.4}).passed
    assert not rules.champion_gate(lower, down, {"log_loss": 0.5}, 1, {"log_loss": 0.4}).passed
    rmse = Champion(metric="rmse")
    gate = rules.champion_gate(rmse, rmse.better_when_higher("regression"), {"rmse": 3.1}, 2,
                               {"rmse": 3.4})  # fmt: skip
    assert gate.passed and "lower is better" in gate.name
    assert (
        Champion(metric="custom_lift", higher_is_better=False).better_when_higher("binary") is False
    )
    assert not rules.champion_gate(rule, up, {}, 1, {"roc_auc": 0.9}).passed


def test_promotion_rules_per_task_pick_the_candidate_s_task() -> None:
    settings = PromotionSettings.model_validate({
        "gates": {"binary": ["roc_auc >= 0.8"], "regression": ["rmse <= 3.5", "r2 >= 0.8"]},
        "champion": {"regression": {"metric": "rmse"}},
    })  # fmt: skip
    assert [str(g) for g in settings.gates_for("regression")] == ["rmse <= 3.5", "r2 >= 0.8"]
    assert settings.gates_for("multiclass") == [] and settings.champion_for("binary") is None
    champion = settings.champion_for("regression")
    assert champion is not None and champion.better_when_higher("regression") is False
    with pytest.raises(ValueError, match="lower is better for rmse"):
        PromotionSettings.model_validate({"gates": {"regression": ["rmse >= 3.5"]}})
    with pytest.raises(ValueError, match="multiclass models have"):
        PromotionSettings.model_validate({"champion": {"multiclass": {"metric": "roc_auc"}}})


def test_soak_counts_minutes_in_the_source_and_needs_a_start() -> None:
    since = SUNDAY_NOON - timedelta(minutes=90)
    assert rules.soak_gate(60, since, "staging", SUNDAY_NOON).passed
    short = rules.soak_gate(120, since, "staging", SUNDAY_NOON)
    assert not short.passed and "90.0 min < 120" in short.evidence
    unknown = rules.soak_gate(60, None, "staging", SUNDAY_NOON)
    assert not unknown.passed and "no evidence" in unknown.evidence


def test_approvals_need_enough_distinct_members_of_the_group() -> None:
    rule = Approvals(required=2, group="ml-leads", members=["alice", "bob", "carol"])
    assert rules.approvals_gate(rule, ["alice", "bob"]).passed
    assert not rules.approvals_gate(rule, ["alice", "alice"]).passed
    stranger = rules.approvals_gate(rule, ["alice", "bob", "mallory"])
    assert not stranger.passed and "mallory" in stranger.evidence
    assert rules.approvals_gate(Approvals(required=1), ["anyone"]).passed
    none = rules.approvals_gate(rule, [])
    assert not none.passed and "--approved-by" in none.evidence


def test_freeze_switch_and_windows_in_utc() -> None:
    assert not rules.freeze_gate(Freeze(enabled=True, reason="audit"), SUNDAY_NOON).passed
    window = FreezeWindow(days=["sun"], start=time(11, 0), end=time(13, 0), reason="game day")
    frozen = rules.freeze_gate(Freeze(windows=[window]), SUNDAY_NOON)
    assert not frozen.passed and "game day" in frozen.evidence
    assert rules.freeze_gate(Freeze(windows=[window]), SUNDAY_NOON + timedelta(hours=2)).passed
    assert rules.freeze_gate(Freeze(windows=[window]), SUNDAY_NOON + timedelta(days=1)).passed


def test_drift_needs_a_score() -> None:
    assert rules.drift_gate(0.2, 0.05, "max PSI").passed
    assert not rules.drift_gate(0.2, 0.3, "max PSI").passed
    blind = rules.drift_gate(0.2, None, "no live sample")
    assert not blind.passed and "no evidence: no live sample" in blind.evidence
