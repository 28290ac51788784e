"""Promotions per environment: rules with evidence, locking, records, rollback, history."""

from modelyard.pipelines.promotion.engine import Outcome, history, promote, rollback, served_at

__all__ = ["Outcome", "history", "promote", "rollback", "served_at"]
