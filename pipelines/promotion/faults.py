"""Crash injection for the safety tests: `MODELYARD_FAULT_AT=<step>` makes the process SIGKILL
itself when it reaches that step, exactly as `kill -9` would (no cleanup, no finally blocks).

For tests only; unset in normal use. Steps, in the order a promotion reaches them:
  after-record        the pending record is in MLflow, the alias has not moved
  after-alias         the alias moved, the environment file is not written yet
  during-file-write   half of the new environment file is in a temp file
  after-file          the file is written, the record is still pending
With modelyard:promotion.git on, between after-alias and after-file:
  before-push         the commit is made, not pushed
  after-push          the commit is on the remote, the checkout and the record not updated
"""

from __future__ import annotations

import os
import signal

from modelyard.contracts import variables

STEPS = (
    "after-record",
    "after-alias",
    "during-file-write",
    "before-push",
    "after-push",
    "after-file",
)
GIT_STEPS = ("before-push", "after-push")  # reached only with modelyard:promotion.git on


def hit(step: str) -> None:
    if os.environ.get(variables.FAULT_AT) == step:
        os.kill(os.getpid(), signal.SIGKILL)
