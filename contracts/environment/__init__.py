"""The one typed model of the environment files, used by every part of the kit."""

from modelyard.contracts.environment.base import MetricRule, SecretValue, secret_env_var
from modelyard.contracts.environment.environment import Environment
from modelyard.contracts.environment.loader import (
    ConfigError,
    check_cross_section,
    environment_path,
    environments_dir,
    list_environments,
    load_environment,
    project_root,
)

__all__ = [
    "ConfigError",
    "Environment",
    "MetricRule",
    "SecretValue",
    "check_cross_section",
    "environment_path",
    "environments_dir",
    "list_environments",
    "load_environment",
    "project_root",
    "secret_env_var",
]
