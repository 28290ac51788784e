"""Promotions per environment: rules with evidence, locking, records, rollback, history."""

from pipelines.promotion.engine import Outcome, history, promote, rollback

__all__ = ["Outcome", "history", "promote", "rollback"]
