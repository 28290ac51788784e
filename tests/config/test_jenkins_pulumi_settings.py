"""modelyard:platform.jenkins.pulumi: the state backend and passphrase Jenkins hands the deploy
stages' `pulumi up`. A backend some agent would not share, or no passphrase, is refused when the
file is read, in one message naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelyard.contracts.environment import ConfigError, load_environment

from tests.helpers import DELETE, edit_environment, run_cli

SECTION = "modelyard:platform.jenkins.pulumi"
BACKEND = f"{SECTION}.backendUrl"


def _refused(env: str = "staging") -> str:
    with pytest.raises(ConfigError) as refused:
        load_environment(env)
    message = str(refused.value)
    assert f"Pulumi.{env}.yaml" in message
    return message


@pytest.mark.parametrize(
    "url",
    [
        "s3://modelyard-state",
        "s3://modelyard-state/ml?region=eu-west-1&endpoint=minio.example.internal:9000",
        "azblob://modelyard-state",
        "gs://modelyard-state/ml",
        "https://api.pulumi.com",
        "https://pulumi.example.internal",
    ],
)
def test_backends_every_agent_shares_are_accepted(environments: Path, url: str) -> None:
    edit_environment(environments, "staging", {"platform.jenkins.pulumi.backendUrl": url})
    settings = load_environment("staging").platform.jenkins.pulumi  # type: ignore[union-attr]
    assert settings is not None and settings.backend_url == url


REFUSED = {
    "a folder on one agent": ("file:///var/lib/pulumi", "keeps the stacks' state on one agent"),
    "no scheme": ("modelyard-state", "must be a backend every agent shares"),
    "plain http": ("http://pulumi.example.internal", "must be a backend every agent shares"),
    "no bucket": ("s3://", "must be a backend every agent shares"),
    "a database holding its password": (
        "postgres://pulumi:hunter2@db.example.internal/state", "must not carry credentials"),
    "a token in the URL": ("https://ci:hunter2@pulumi.example.internal", "must not carry credentials"),
    "a JCasC reference": ("s3://modelyard-state/${PREFIX}", "must not contain spaces or `$`"),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_a_backend_some_agent_would_not_share_is_refused_naming_the_key(
    environments: Path, case: str
) -> None:
    url, expected = REFUSED[case]
    edit_environment(environments, "staging", {"platform.jenkins.pulumi.backendUrl": url})
    message = _refused()
    assert f"{BACKEND}: " in message and expected in message
    assert "hunter2" not in message  # a password written into the URL is never echoed


@pytest.mark.parametrize("url", ["s3://modelyard-state", "https://api.pulumi.com"])
def test_a_missing_passphrase_is_refused_with_the_command_that_sets_it(
    environments: Path, url: str
) -> None:
    # Whatever the backend: the stacks' secrets are encrypted with the passphrase.
    edit_environment(
        environments,
        "staging",
        {"platform.jenkins.pulumi.backendUrl": url, "platform.jenkins.pulumi.passphrase": DELETE},
    )
    message = _refused()
    assert f"{SECTION}: passphrase is not set" in message
    assert f"`pulumi config set --secret --path {SECTION}.passphrase`" in message


def test_a_plain_text_passphrase_is_refused_without_echoing_it(environments: Path) -> None:
    edit_environment(environments, "staging", {"platform.jenkins.pulumi.passphrase": "s3cret-pp"})
    message = _refused()
    assert f"{SECTION}.passphrase: " in message and "never plain text" in message
    assert "s3cret-pp" not in message


def test_jenkins_without_pulumi_settings_is_refused_only_when_enabled(environments: Path) -> None:
    edit_environment(environments, "staging", {"platform.jenkins.pulumi": DELETE})
    message = _refused()
    assert f"modelyard:platform.jenkins: Jenkins is enabled but {SECTION} is not set" in message
    edit_environment(environments, "staging", {"platform.jenkins.enabled": False})
    assert load_environment("staging").platform.jenkins.pulumi is None  # type: ignore[union-attr]


def test_env_validate_names_the_key_and_exits_2(environments: Path) -> None:
    edit_environment(
        environments, "production", {"platform.jenkins.pulumi.backendUrl": "file:///srv/state"}
    )
    validate = run_cli("env", "validate", "production")
    assert validate.returncode == 2, validate.stdout + validate.stderr
    assert f"{BACKEND}: file:// keeps the stacks' state on one agent" in validate.stderr
    assert "Traceback" not in validate.stderr


def test_the_shipped_jenkins_share_one_backend() -> None:
    # The staging and the production Jenkins both deploy staging: two backends would hold two
    # diverging states of that one stack.
    backends = set()
    for env in ("staging", "production"):
        jenkins = load_environment(env).platform.jenkins  # type: ignore[union-attr]
        assert jenkins.enabled and jenkins.pulumi is not None and jenkins.pulumi.passphrase
        backends.add(jenkins.pulumi.backend_url)
    assert len(backends) == 1, backends
