"""Pulumi entry (`pulumi up --stack ENV`): read the stack's environment once, build it."""

import os
from pathlib import Path

import pulumi
from modelyard.contracts import variables
from modelyard.contracts.environment import Environment, load_environment
from modelyard.infra import program
from modelyard.pipelines.errors import PipelineError
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import get_monitor


def refuse_stale_release(environment: Environment) -> None:
    """Nothing deploys from a checkout whose release keys disagree with the registry and the
    promotion records (modelyard:promotion.git on): an update stops before any resource, naming
    the commit to pull; a preview shows the same difference as a warning."""
    if not environment.promotion.git.enabled:
        return  # the local stack: nothing records its releases (and it makes its own MLflow)
    if isinstance(get_monitor(), MockMonitor):
        return  # `infra render` / `infra diff`: the desired state, offline, for any revision
    from modelyard.pipelines.promotion.engine import check_current  # imports MLflow

    try:
        check_current(environment)
    except PipelineError as exc:
        if pulumi.runtime.is_dry_run():
            pulumi.warn(str(exc))
            return
        raise pulumi.RunError(str(exc)) from None


# The environment file is the stack config file of the project the engine runs (its
# stackConfigDir), wherever the program's code lives. (The mock runtime has no real project.)
project = Path(pulumi.runtime.get_root_directory() or ".")
if (project / "Pulumi.yaml").is_file() and variables.ENVIRONMENTS_DIR not in os.environ:
    os.environ[variables.ENVIRONMENTS_DIR] = str(project / "environments")
environment = load_environment(pulumi.get_stack())
refuse_stale_release(environment)
program.build(environment)
