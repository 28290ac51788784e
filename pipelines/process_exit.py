"""Leaving the process without the interpreter's teardown, for a command that asks to.

Once `modelyard train` has printed its result, the interpreter still spends half a second tearing
down pandas, LightGBM and Optuna module by module. A command whose work is finished, flushed and
closed when it returns (its sidecar shut down, its files written) may skip that wait.
"""

from __future__ import annotations

import logging
import os
import sys

_skip_teardown = False


def skip_teardown() -> None:
    """Called by a command that leaves nothing to the interpreter's exit (atexit, finalizers)."""
    global _skip_teardown
    _skip_teardown = True


def leave(code: int | str | None) -> None:
    """Exit with `code` as `sys.exit` would, skipping the teardown if the command asked to."""
    if _skip_teardown and isinstance(code, int | None):
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code or 0)
    sys.exit(code)
