"""The `modelyard` command: thin commands over library functions, one module per area."""

from __future__ import annotations

import warnings

import typer
from modelyard.pipelines.commands import register_all
from modelyard.pipelines.errors import USER_ERRORS, report_user_error
from modelyard.pipelines.process_exit import leave

app = typer.Typer(
    name="modelyard",
    help="From git push to a model serving in production, as reviewable code.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
register_all(app)


def main() -> None:
    """Console entry point: a mistake a user can make ends in one message and exit code 2."""
    # Library hints (MLflow's schema advice, pandas deprecations) are not the user's business.
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        app(standalone_mode=True)
    except USER_ERRORS as exc:
        report_user_error(exc)
        leave(2)
    except SystemExit as done:  # how click ends every command, successful or not
        leave(done.code)
