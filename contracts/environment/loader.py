"""Reads environment files and turns every mistake in them into one message a person can act on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from modelyard.contracts import variables
from modelyard.contracts.environment.environment import NAMESPACE, Environment
from pydantic import BaseModel, ValidationError

_STACK_FILE_KEYS = {"config", "encryptionsalt", "secretsprovider", "encryptedkey", "environment"}


class ConfigError(Exception):
    """An environment file is missing, unreadable or wrong. The message names file, key and fix."""


def project_root() -> Path:
    """The folder holding Pulumi.yaml: found from the working directory, else the installed tree."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "Pulumi.yaml").is_file() and (folder / "environments").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


def environments_dir() -> Path:
    override = os.environ.get(variables.ENVIRONMENTS_DIR)
    return Path(override) if override else project_root() / "environments"


def environment_path(name: str) -> Path:
    return environments_dir() / f"Pulumi.{name}.yaml"


def list_environments() -> list[str]:
    folder = environments_dir()
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in folder.glob("Pulumi.*.yaml"))


def load_environment(name: str) -> Environment:
    path = environment_path(name)
    if not path.is_file():
        known = ", ".join(list_environments()) or "none"
        raise ConfigError(
            f"{path}: no such environment file. Known environments: {known}. "
            f"Create {path.name} or pick one of those."
        )
    return parse_environment(path, name)


def read_stack_file(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{path}:{where}: not valid YAML ({problem}). Fix the syntax there."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}).") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(
            f"{path}: must be a mapping with a `config:` key, as Pulumi stack files are."
        )
    unknown = sorted(set(document) - _STACK_FILE_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key {unknown[0]!r}. A Pulumi stack file holds "
            f"`config:` (and Pulumi's own encryption keys); move it under `config:`."
        )
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: `config` must be a mapping of `namespace:key: value` entries.")
    return config


def parse_environment(path: Path, name: str) -> Environment:
    config = read_stack_file(path)
    ours: dict[str, Any] = {}
    providers: dict[str, object] = {}
    for key, value in config.items():
        namespace, sep, short = str(key).partition(":")
        if not sep or not short:
            raise ConfigError(
                f"{path}: key {key!r} has no namespace. Write it as `{NAMESPACE}:{key}` "
                f"(or `provider:{key}` for a Pulumi provider's setting)."
            )
        if namespace == NAMESPACE:
            ours[short] = value
        else:
            providers[str(key)] = value
    try:
        environment = Environment.model_validate(ours)
    except ValidationError as exc:
        raise ConfigError(_describe(path, exc)) from None
    environment._name = name
    environment._path = path
    environment._provider_config = providers
    return environment


def check_cross_section(environment: Environment) -> None:
    """Refuse what `pulumi up` of this environment would fail on later (one message per rule).
    `env validate` and the Pulumi program call it; the pipeline's other commands do not, so a
    tracking URI pointed elsewhere for a run (a local MLflow, say) stays usable there."""
    path = environment.path
    problems = environment.cross_section_problems()
    if len(problems) == 1:
        [(key, fix)] = problems
        raise ConfigError(f"{path}: {NAMESPACE}:{key}: {fix}")
    if problems:
        lines = [f"{path}: {len(problems)} problem(s) in the environment settings:"]
        lines += [f"  - {NAMESPACE}:{key}: {fix}" for key, fix in problems]
        raise ConfigError("\n".join(lines))


def _describe(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} problem(s) in the environment settings:"]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = (
            f"{NAMESPACE}:{loc[0]}" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
            if loc
            else f"{NAMESPACE}:"
        )
        lines.append(f"  - {key}: {_fix_for(error, loc)}")
    return "\n".join(lines)


def _fix_for(error: Any, loc: list[str]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required but missing: add it."
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f" Allowed here: {', '.join(allowed)}." if allowed else ""
        return f"unknown key: remove it or fix its spelling.{hint}"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    # Never echo what was written where a secret belongs: it may be the secret itself.
    hide = isinstance(value, dict | list) or value is None or "secret" in message
    shown = "" if hide else f" (got {value!r})"
    return f"{message}{shown}. Fix the value."


def _allowed_keys(loc: list[str]) -> list[str]:
    """The keys the model accepts at `loc`, by walking the model's fields."""
    model: type[BaseModel] | None = Environment
    for part in loc:
        if model is None or part.isdigit():
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return []
        model = _model_in(field.annotation)
    if model is None:
        return []
    return sorted(f.alias or n for n, f in model.model_fields.items())


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
