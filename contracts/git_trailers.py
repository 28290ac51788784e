"""The trailers of the commits modelyard pushes when it writes release keys (a promotion, a
rollback, a repair, a canary step). Written by pipelines/promotion/release_git.py, read by the
repair (did the push land?), `pipeline changed` (the pipeline's own commits start no build) and
auditors (`git log --grep Modelyard-Record`)."""

from __future__ import annotations

RECORD = "Modelyard-Record"  # the promotion record's id (its MLflow run)
MODEL = "Modelyard-Model"
ENVIRONMENT = "Modelyard-Environment"
ACTION = "Modelyard-Action"  # promote, rollback, repair, canary-step
FROM = "Modelyard-From"
TO = "Modelyard-To"
ACTOR = "Modelyard-Actor"
