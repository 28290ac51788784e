"""Rules that span sections of an environment file live on the environment model: `modelyard
env validate` refuses each mistake `infra render`, `pulumi up` or a stage would refuse later,
with one message naming the file and the key, exit code 2, and nothing changed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import DELETE, edit_environment, run_cli


def _drop_allowed_host(folder: Path) -> None:
    path = folder / "Pulumi.staging.yaml"
    path.write_text(path.read_text().replace("allowedHosts: [mlflow.staging.example.internal]", ""))


def _registry_elsewhere(folder: Path) -> None:
    path = folder / "Pulumi.production.yaml"
    path.write_text(path.read_text().replace("      hostname: registry.example.internal\n", ""))


MISTAKES: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "a canary weight that is not a step": (
        "staging",
        lambda f: edit_environment(
            f, "staging", {"promotion.rollout.strategy": "canary", "serving.canaryWeight": 30}
        ),
        "modelyard:serving.canaryWeight: 30 is not one of promotion.rollout.canarySteps",
    ),
    "a tracking host the MLflow server refuses": (
        "staging",
        _drop_allowed_host,
        "modelyard:mlflow.trackingUri: names host 'mlflow.staging.example.internal'",
    ),
    "promotions pushed by a Jenkins without a key to push with": (
        "production",
        lambda f: edit_environment(
            f,
            "production",
            {
                "promotion.git.enabled": True,
                "platform.jenkins.gitPrivateKey": DELETE,
            },
        ),
        "modelyard:platform.jenkins.gitPrivateKey: promotion.git is on but Jenkins has no key",
    ),
    "serving images pushed to another registry": (
        "production",
        _registry_elsewhere,
        "modelyard:serving.imageRepository: pushes to 'registry.example.internal'",
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_env_validate_refuses_what_the_program_would_refuse_later(
    mistake: str, environments: Path
) -> None:
    env, mutate, expected = MISTAKES[mistake]
    mutate(environments)
    before = {p.name: p.read_bytes() for p in environments.iterdir()}

    validate = run_cli("env", "validate", env)
    assert validate.returncode == 2, validate.stdout + validate.stderr
    [message] = validate.stderr.strip().splitlines()
    assert message.startswith(f"error: {environments / f'Pulumi.{env}.yaml'}: {expected}")

    # `infra render` (the program under the mock runtime) refuses with the very same message.
    render = run_cli("infra", "render", env)
    assert render.returncode == 2
    assert message in render.stderr
    assert {p.name: p.read_bytes() for p in environments.iterdir()} == before


def test_every_shipped_environment_passes_every_cross_section_rule() -> None:
    result = run_cli("env", "validate")
    assert result.returncode == 0, result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [
        ["ok", "local"],
        ["ok", "production"],
        ["ok", "staging"],
    ]
