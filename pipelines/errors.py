"""The errors a user can cause, and how the CLI reports them: one message, no traceback."""

from __future__ import annotations

import sys

from modelyard.contracts.environment import ConfigError
from modelyard.ml.errors import ModelyardMlError


class PipelineError(Exception):
    """A pipeline or promotion step refused or failed for a reason the user can act on."""


class RolledBack(PipelineError):
    """A deploy failed and has already rolled itself back, durably: nothing is left to undo."""


USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, ModelyardMlError, PipelineError)


def report_user_error(exc: Exception) -> None:
    print(f"error: {exc}", file=sys.stderr)
