"""The package stage's image: the serving image with the model baked in, pushed to the
environment's registry with its credentials. What is recorded is the digest the registry
returned for the push, so a deploy can pin exactly the bytes this run built."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from modelyard.contracts.environment import Environment, secret_env_var
from modelyard.contracts.tags import ServingImage
from modelyard.pipelines.docker_cli import docker, engine_problem, stream
from modelyard.pipelines.errors import PipelineError

PASSWORD_KEY = "pipeline.package.password"
_PUSHED = re.compile(r"digest: (sha256:[0-9a-f]{64})")


def image_repository(environment: Environment, registry: str) -> str:
    """serving.imageRepository under the registry (staging's already names its registry)."""
    repository = environment.serving.image_repository
    return repository if repository.startswith(f"{registry}/") else f"{registry}/{repository}"


def package_image(
    environment: Environment,
    model_dir: Path,
    identity: dict[str, str],
    say: Callable[[str], None],
) -> ServingImage | None:
    """Build and push the serving image; None when the environment packages the artifact alone."""
    settings = environment.pipeline.package
    if settings.registry is None:
        say(
            "serving image: not built (no modelyard:pipeline.package.registry); the artifact is the package"
        )
        return None
    problem = engine_problem()
    if problem and settings.require_docker:
        raise PipelineError(
            f"{environment.path}: modelyard:pipeline.package pushes the serving image to "
            f"{settings.registry}, but {problem}. Start Docker, or set "
            "modelyard:pipeline.package.requireDocker to false to package the artifact alone."
        )
    if problem:
        say(f"serving image: not built ({problem}); the artifact is the package")
        return None
    return _build_and_push(environment, model_dir, identity, say)


def _build_and_push(
    environment: Environment, model_dir: Path, identity: dict[str, str], say: Callable[[str], None]
) -> ServingImage:
    from modelyard.ml.serving.image import build_context

    settings = environment.pipeline.package
    registry = settings.registry
    assert registry is not None
    tag = f"{image_repository(environment, registry)}:{identity['name']}-v{identity['version']}"
    with tempfile.TemporaryDirectory(prefix="modelyard-package-") as folder:
        context = build_context(Path(folder) / "context", model_dir, identity)
        say(f"building serving image {tag}")
        code, tail = stream(
            ["build", "-t", tag, str(context)], say, lambda line: line.startswith("Step ")
        )
        if code != 0:
            raise PipelineError(f"the serving image {tag} did not build:\n" + "\n".join(tail[-8:]))
        digest = push_image(environment, tag)
    say(f"pushed {tag} ({digest})")
    return ServingImage(f"{tag}@{digest}", digest)


def push_image(environment: Environment, tag: str) -> str:
    """Push `tag` to pipeline.package.registry with its credentials, then drop the local tag
    (the registry holds the image; its layers stay here as build cache). The digest the
    registry returned: what a deploy or a Job pins."""
    from modelyard.pipelines.notify import reveal

    settings = environment.pipeline.package
    registry = settings.registry
    assert registry is not None and settings.password is not None
    password = reveal(settings.password, PASSWORD_KEY, environment)
    try:
        with tempfile.TemporaryDirectory(prefix="modelyard-push-") as folder:
            push = _login_and_push(environment, registry, password, tag, Path(folder))
    finally:
        docker("rmi", "--no-prune", tag)
    digest = _PUSHED.search(push.stdout)
    if push.returncode != 0 or digest is None:
        reason = (push.stderr.strip().splitlines() or ["no digest in its output"])[-1]
        raise PipelineError(f"pushing {tag} to {registry} failed: {reason}")
    return digest[1]


def _login_and_push(
    environment: Environment, registry: str, password: str, tag: str, folder: Path
) -> subprocess.CompletedProcess[str]:
    username = environment.pipeline.package.username
    # A private client config: the login lives and dies with this stage, never in ~/.docker.
    client = folder / "docker-config"
    client.mkdir(mode=0o700)
    env = {**os.environ, "DOCKER_CONFIG": str(client)}
    login = docker("login", registry, "--username", username, "--password-stdin",
                   input=password, env=env)  # fmt: skip
    if login.returncode != 0:
        reason = (login.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise PipelineError(
            f"registry {registry} refused the login of {username!r} "
            f"({reason.replace(password, '[secret]')}). Check modelyard:pipeline.package.username "
            f"in {environment.path} and the password in {secret_env_var(PASSWORD_KEY)} "
            "(Jenkins: the modelyard-registry credential)."
        )
    try:
        return docker("push", tag, env=env)
    finally:
        docker("logout", registry, env=env)
