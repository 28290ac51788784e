"""What can be checked of the platform images without building Jenkins (its base image and plugins
come from the internet): hadolint on every platform Dockerfile, non-root users, the pinned plugin
list, and the JCasC the controller starts with, rendered for every environment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelyard.contracts.environment import load_environment
from modelyard.infra.components import jenkins
from modelyard.infra.components.mlflow_server import IMAGE_CONTEXT as MLFLOW_CONTEXT
from modelyard.infra.components.registry import IMAGE_CONTEXT as REGISTRY_CONTEXT
from modelyard.infra.components.registry import registry_address

DOCKERFILES = [
    context / "Dockerfile" for context in (REGISTRY_CONTEXT, MLFLOW_CONTEXT, jenkins.IMAGE_CONTEXT)
]
HADOLINT = str(Path(sys.executable).with_name("hadolint"))
REQUIRED_PLUGINS = {
    "workflow-aggregator",  # pipeline
    "git",
    "configuration-as-code",
    "credentials-binding",
    "matrix-auth",
    "docker-plugin",
    "docker-workflow",
    "kubernetes",
    "email-ext",
    "junit",
    "job-dsl",  # the multibranch job is created from JCasC
    "multibranch-scan-webhook-trigger",  # webhook trigger of that job
}
ENVIRONMENTS = ["local", "staging", "production"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [HADOLINT, "--failure-threshold", "info", str(dockerfile)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_run_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
    assert users, "no USER: the image would run as root"
    assert users[-1].isdigit() and users[-1] != "0"


def test_jenkins_base_image_is_a_pinned_lts() -> None:
    base = re.findall(r"^FROM\s+(\S+)", (jenkins.IMAGE_CONTEXT / "Dockerfile").read_text(), re.M)
    assert base == [base[0]] and re.fullmatch(r"jenkins/jenkins:\d+\.\d+\.\d+-lts-jdk\d+", base[0])


def test_plugins_are_pinned_and_complete() -> None:
    lines = [
        line.strip()
        for line in (jenkins.IMAGE_CONTEXT / "plugins.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pins = dict(line.split(":", 1) for line in lines)
    assert len(pins) == len(lines), "a plugin is listed twice"
    for plugin, version in pins.items():
        assert re.fullmatch(r"[a-z0-9-]+", plugin), plugin
        assert re.fullmatch(r"\d[0-9A-Za-z._-]*", version), f"{plugin} is not pinned: {version}"
        assert version not in ("latest", "experimental")
    assert set(pins) >= REQUIRED_PLUGINS


def _merge(base: Any, extra: Any, path: str = "") -> Any:
    """JCasC's merge of the files in CASC_JENKINS_CONFIG: maps merge, a conflicting value fails."""
    if isinstance(base, dict) and isinstance(extra, dict):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = _merge(base[key], value, f"{path}.{key}") if key in base else value
        return merged
    raise AssertionError(f"JCasC files conflict at {path}")


def _casc(env: str) -> tuple[dict[str, Any], str]:
    platform = load_environment(env).platform
    assert platform is not None
    text = jenkins.render_environment_casc(
        platform.jenkins,
        environment=env,
        url=f"http://{platform.docker.address}:{platform.jenkins.port}",
        registry_address=registry_address(platform.docker, platform.registry),
        mlflow_url=f"http://{platform.docker.address}:{platform.mlflow.port}",
    )
    base = jenkins.BASE_CASC.read_text()
    return _merge(yaml.safe_load(base), yaml.safe_load(text)), base + text


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_jcasc_security(env: str) -> None:
    document, text = _casc(env)
    realm = document["jenkins"]["securityRealm"]["local"]
    assert realm["allowsSignup"] is False
    assert realm["users"] == [
        {"id": "${JENKINS_ADMIN_ID}", "password": "${JENKINS_ADMIN_PASSWORD}"}
    ]
    entries = document["jenkins"]["authorizationStrategy"]["globalMatrix"]["entries"]
    holders = [next(iter(e.values()))["name"] for e in entries]
    assert "anonymous" not in holders and "anonymous" not in text.lower()
    assert set(holders) == {"${JENKINS_ADMIN_ID}", "authenticated"}
    assert document["jenkins"]["crumbIssuer"]["standard"]["excludeClientIPFromCrumb"] is False
    assert document["jenkins"]["numExecutors"] == (1 if env == "local" else 0)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_jcasc_credentials_are_references_never_values(env: str) -> None:
    document, text = _casc(env)
    platform = load_environment(env).platform
    assert platform is not None
    credentials = document["credentials"]["system"]["domainCredentials"][0]["credentials"]
    by_id = {next(iter(c.values()))["id"]: next(iter(c.values())) for c in credentials}
    assert set(by_id) == {"modelyard-registry", "modelyard-mlflow"} | {
        f"modelyard-kubeconfig-{k}" for k in platform.jenkins.kubeconfigs
    }
    for credential in by_id.values():
        for field in ("username", "password", "secretBytes"):
            if field in credential:
                assert re.fullmatch(r"\$\{(base64:)?\$?\{?[A-Z_]+\}\}?", credential[field]), field
    # every reference is a variable the component gives the container
    provided = jenkins.controller_environment(
        platform.jenkins,
        admin_password="x", registry_username="x", registry_password="x",
        mlflow_username="x", mlflow_password="x", webhook_token="x",
        kubeconfigs=dict.fromkeys(platform.jenkins.kubeconfigs, "x"),
    )  # fmt: skip
    assert jenkins.referenced_variables(text) == set(provided)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_jcasc_creates_the_multibranch_job_with_webhook_and_polling(env: str) -> None:
    document, _ = _casc(env)
    platform = load_environment(env).platform
    assert platform is not None
    [job] = document["jobs"]
    script = job["script"]
    assert script.startswith("multibranchPipelineJob('modelyard')")
    assert f"remote('{platform.jenkins.repository}')" in script
    assert "scriptPath('pipelines/Jenkinsfile')" in script
    assert f"periodicFolderTrigger {{ interval('{platform.jenkins.scan_interval}') }}" in script
    assert "computedFolderWebHookTrigger { token('${MULTIBRANCH_WEBHOOK_TOKEN}') }" in script
