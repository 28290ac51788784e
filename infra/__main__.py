"""Pulumi entry (`pulumi up --stack ENV`): read the stack's environment once, build it."""

import pulumi
from modelyard.contracts.environment import load_environment
from modelyard.infra import program

program.build(load_environment(pulumi.get_stack()))
