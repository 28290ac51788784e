"""Where the kit keeps what it logs to an MLflow run, named once (writers and readers import
these; a person finds them in the MLflow UI under the same paths)."""

from __future__ import annotations

# The training data's profile, what live traffic is compared against for drift.
PROFILE = "reference/profile.json"
# Held-out rows as a client sends them: what the smoke test sends when the data is not at hand.
REQUEST_SAMPLE = "serving/request-sample.json"
# The data validation report of the dataset the run trained on.
VALIDATION_REPORT = "validation/report.json"
# ROC and precision-recall curves, feature importance, confusion matrix (one PNG each).
PLOTS = "plots"
# The evaluate stage's report: metrics, gates, the champion comparison.
EVALUATION_REPORT = "evaluation/report.md"
# A promotion's record, on the run the promotion history keeps (pipelines/promotion/records.py).
PROMOTION_RECORD = "record.json"
