"""The one typed model of the environment files, used by every part of the kit."""

from infra.config.base import MetricRule, SecretValue, secret_env_var
from infra.config.environment import Environment
from infra.config.loader import (
    ENVIRONMENTS_DIR_VAR,
    ConfigError,
    environment_path,
    environments_dir,
    list_environments,
    load_environment,
    project_root,
)

__all__ = [
    "ENVIRONMENTS_DIR_VAR",
    "ConfigError",
    "Environment",
    "MetricRule",
    "SecretValue",
    "environment_path",
    "environments_dir",
    "list_environments",
    "load_environment",
    "project_root",
    "secret_env_var",
]
