"""Pulumi entry (`pulumi up --stack ENV`): read the stack's environment once, build it."""

import os
from pathlib import Path

import pulumi
from modelyard.contracts import variables
from modelyard.contracts.environment import load_environment
from modelyard.infra import program

# The environment file is the stack config file of the project the engine runs (its
# stackConfigDir), wherever the program's code lives. (The mock runtime has no real project.)
project = Path(pulumi.runtime.get_root_directory() or ".")
if (project / "Pulumi.yaml").is_file() and variables.ENVIRONMENTS_DIR not in os.environ:
    os.environ[variables.ENVIRONMENTS_DIR] = str(project / "environments")
program.build(load_environment(pulumi.get_stack()))
