"""Pulumi entry (`pulumi up --stack ENV`): read the stack's environment once, build it."""

import pulumi

from infra import program
from infra.config import load_environment

program.build(load_environment(pulumi.get_stack()))
