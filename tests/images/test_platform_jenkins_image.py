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
from modelyard.contracts.environment import ConfigError, check_cross_section, load_environment
from modelyard.contracts.environment.base import SecretValue
from modelyard.contracts.environment.platform_services import Jenkins, JenkinsAgent
from modelyard.infra.components import jenkins
from modelyard.infra.components.mlflow_server import IMAGE_CONTEXT as MLFLOW_CONTEXT
from modelyard.infra.components.registry import IMAGE_CONTEXT as REGISTRY_CONTEXT
from modelyard.infra.components.registry import registry_address

from tests.helpers import DELETE, REPO, edit_environment
from tests.pipelines import jenkinsfile_model

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


def _pins() -> dict[str, str]:
    lines = [
        line.strip()
        for line in (jenkins.IMAGE_CONTEXT / "plugins.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pins = dict(line.split(":", 1) for line in lines)
    assert len(pins) == len(lines), "a plugin is listed twice"
    return pins


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
    environment = load_environment(env)
    platform = environment.platform
    assert platform is not None
    text = jenkins.render_environment_casc(
        platform.jenkins,
        environment=env,
        url=f"http://{platform.docker.address}:{platform.jenkins.port}",
        registry_address=registry_address(platform.docker, platform.registry),
        mlflow_url=f"http://{platform.docker.address}:{platform.mlflow.port}",
        agent_user=environment.hosts.agent_user,
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


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMp6gSUU4e2mKBi0IuVYxOmmrBhAvzW4x5i6OEq5QxcF"
AGENTS = [
    JenkinsAgent(host="build-1.staging.example.internal", host_key=HOST_KEY),
    JenkinsAgent(host="build-2.staging.example.internal", host_key=HOST_KEY, port=2222,
                 executors=4),
]  # fmt: skip
# The environments as files hold them, and staging with two SSH agents.
VARIANTS = [*ENVIRONMENTS, "staging+agents"]


def _settings(variant: str) -> tuple[str, Jenkins]:
    env = variant.split("+")[0]
    platform = load_environment(env).platform
    assert platform is not None
    if variant.endswith("+agents"):
        secret = SecretValue("v1:stand-in-ciphertext")
        return env, platform.jenkins.model_copy(update={"agents": AGENTS,
                                                        "agent_private_key": secret})  # fmt: skip
    return env, platform.jenkins


def _render(variant: str, agent_user: str = "jenkins") -> tuple[dict[str, Any], str]:
    env, settings = _settings(variant)
    text = jenkins.render_environment_casc(
        settings, environment=env, url="http://jenkins.example.internal:8080",
        registry_address="registry.example.internal", mlflow_url="http://mlflow:5000",
        agent_user=agent_user,
    )  # fmt: skip
    base = jenkins.BASE_CASC.read_text()
    return _merge(yaml.safe_load(base), yaml.safe_load(text)), base + text


def _credentials(document: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """id -> (credential type, its fields)."""
    listed = document["credentials"]["system"]["domainCredentials"][0]["credentials"]
    return {fields["id"]: (kind, fields) for c in listed for kind, fields in c.items()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_jcasc_credentials_are_references_never_values(variant: str) -> None:
    document, text = _render(variant)
    _, settings = _settings(variant)
    by_id = _credentials(document)
    expected = {"modelyard-registry", "modelyard-mlflow"} | {
        f"modelyard-kubeconfig-{k}" for k in settings.kubeconfigs
    }
    expected |= {jenkins.AGENT_CREDENTIAL} if settings.agents else set()
    expected |= {jenkins.PASSPHRASE_CREDENTIAL} if settings.pulumi else set()
    expected |= {jenkins.GIT_CREDENTIAL} if settings.git_private_key else set()
    expected |= {jenkins.serving_token_credential(k) for k in settings.serving_tokens}
    assert set(by_id) == expected
    reference = r"\$\{(base64:)?\$?\{?[A-Z_]+\}\}?"
    for kind, credential in by_id.values():
        secrets = {
            "usernamePassword": ("username", "password"),
            "file": ("secretBytes",),
            "string": ("secret",),
            "basicSSHUserPrivateKey": (),
        }[kind]
        for field in secrets:
            assert re.fullmatch(reference, credential[field]), (kind, field)
        if kind == "basicSSHUserPrivateKey":
            key = credential["privateKeySource"]["directEntry"]["privateKey"]
            variable = {jenkins.AGENT_CREDENTIAL: jenkins.AGENT_KEY_VARIABLE,
                        jenkins.GIT_CREDENTIAL: jenkins.GIT_KEY_VARIABLE}[credential["id"]]  # fmt: skip
            assert key == "${" + variable + "}"
            # Jobs may bind the push key; the agents' key only launches agents.
            assert credential["scope"] == ("GLOBAL" if variable == jenkins.GIT_KEY_VARIABLE
                                           else "SYSTEM")  # fmt: skip
    # every reference is a variable the component gives the container
    provided = jenkins.controller_environment(
        settings,
        admin_password="x", registry_username="x", registry_password="x",
        mlflow_username="x", mlflow_password="x", webhook_token="x",
        kubeconfigs=dict.fromkeys(settings.kubeconfigs, "x"), agent_private_key="x",
        pulumi_passphrase="x", git_private_key="x",
        serving_tokens=dict.fromkeys(settings.serving_tokens, "x"),
    )  # fmt: skip
    assert jenkins.referenced_variables(text) == set(provided)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_builds_get_the_stacks_backend_and_a_passphrase_credential(env: str) -> None:
    document, text = _render(env)
    _, settings = _settings(env)
    [node_env] = document["jenkins"]["globalNodeProperties"]
    variables = {e["key"]: e["value"] for e in node_env["envVars"]["env"]}
    if settings.pulumi is None:  # a Jenkins the file leaves out (local)
        assert jenkins.BACKEND_VARIABLE not in variables
        assert jenkins.PASSPHRASE_CREDENTIAL not in text
        return
    # plain: the URL names where state lives, and every node's builds need it
    assert variables[jenkins.BACKEND_VARIABLE] == settings.pulumi.backend_url
    kind, credential = _credentials(document)[jenkins.PASSPHRASE_CREDENTIAL]
    assert (kind, credential["secret"]) == ("string", "${" + jenkins.PASSPHRASE_VARIABLE + "}")
    assert credential["scope"] == "GLOBAL"  # builds bind it; SYSTEM would hide it from them


def _jenkinsfile_label() -> str:
    tree = jenkinsfile_model.parse((REPO / jenkins.JENKINSFILE).read_text())
    [pipeline] = jenkinsfile_model.calls(tree, "pipeline")
    [agent] = jenkinsfile_model.calls(pipeline["body"], "agent")
    [label] = jenkinsfile_model.calls(agent["body"], "label")
    return str(label["strings"][0])


def test_agents_are_ssh_nodes_with_the_label_the_jenkinsfile_asks_for() -> None:
    document, text = _render("staging+agents", agent_user="builder")
    nodes = [node["permanent"] for node in document["jenkins"]["nodes"]]
    assert [node["name"] for node in nodes] == [agent.host for agent in AGENTS]
    role = yaml.safe_load((REPO / "ansible/roles/jenkins_agent/defaults/main.yml").read_text())
    kind, credential = _credentials(document)[jenkins.AGENT_CREDENTIAL]
    for node, agent in zip(nodes, AGENTS, strict=True):
        assert node["labelString"] == _jenkinsfile_label()
        assert node["numExecutors"] == agent.executors
        assert node["remoteFS"] == role["jenkins_agent_home"]  # the home the role creates
        ssh = node["launcher"]["ssh"]
        assert (ssh["host"], ssh["port"]) == (agent.host, agent.port)
        assert ssh["credentialsId"] == jenkins.AGENT_CREDENTIAL
        # the host must prove it holds the key the environment file names
        assert ssh["sshHostKeyVerificationStrategy"] == {
            "manuallyProvidedKeyVerificationStrategy": {"key": agent.host_key}
        }
    assert (kind, credential["username"]) == ("basicSSHUserPrivateKey", "builder")
    assert credential["scope"] == "SYSTEM"  # for launching agents, never bound by a job
    assert "nonVerifying" not in text and "TrustedKey" not in text


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_controller_executors_and_agents_are_what_the_file_says(env: str) -> None:
    document, _ = _render(env)
    platform = load_environment(env).platform
    assert platform is not None
    nodes = [node["permanent"]["name"] for node in document["jenkins"]["nodes"]]
    assert nodes == [agent.host for agent in platform.jenkins.agents]
    assert document["jenkins"]["mode"] == "EXCLUSIVE"  # the controller takes no labelled build


def _agents_yaml(host_key: str = HOST_KEY) -> list[dict[str, Any]]:
    return [{"host": "build-1.staging.example.internal", "hostKey": host_key}]


SECURE = {"secure": "v1:stand-in-ciphertext"}
AUTHORIZED = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEONLYexampleonly jenkins@controller"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"platform.jenkins.agents": _agents_yaml(), "platform.jenkins.agentPrivateKey": DELETE},
         "agents are set but agentPrivateKey is not"),
        ({"platform.jenkins.agents": _agents_yaml("ssh-ed25519 not base64!"),
          "platform.jenkins.agentPrivateKey": SECURE}, "hostKey"),
        ({"platform.jenkins.agents": _agents_yaml() * 2,
          "platform.jenkins.agentPrivateKey": SECURE}, "agents lists a host twice"),
        ({"platform.jenkins.agents": _agents_yaml(),
          "platform.jenkins.agentPrivateKey": "plain text key"}, "never plain text"),
    ],
    ids=["no key", "bad host key", "a host twice", "a plain key"],
)  # fmt: skip
def test_agent_settings_are_refused_naming_the_key(
    environments: Path, changes: dict[str, Any], message: str
) -> None:
    edit_environment(environments, "staging", {**changes, "hosts.agentAuthorizedKey": AUTHORIZED})
    with pytest.raises(ConfigError, match=message) as refused:
        load_environment("staging")
    assert "Pulumi.staging.yaml" in str(refused.value)


def test_agents_need_the_key_ansible_authorizes(environments: Path) -> None:
    edit_environment(environments, "staging", {"platform.jenkins.agents": _agents_yaml(),
                                               "platform.jenkins.agentPrivateKey": SECURE,
                                               "hosts.agentAuthorizedKey": DELETE})  # fmt: skip
    with pytest.raises(ConfigError, match=r"modelyard:hosts.agentAuthorizedKey"):
        check_cross_section(load_environment("staging"))
    edit_environment(environments, "staging", {"hosts.agentAuthorizedKey": AUTHORIZED})
    check_cross_section(load_environment("staging"))  # with it, the file is accepted


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


# Which plugin provides each JCasC key the controller is configured with (None: Jenkins core),
# by the longest matching prefix of its path.
CASC_PROVIDERS: dict[str, str | None] = {
    "jenkins": None,  # mode, numExecutors, systemMessage, slaveAgentPort, disableRememberMe, ...
    "jenkins.securityRealm.local": None,
    "jenkins.authorizationStrategy.globalMatrix": "matrix-auth",
    "jenkins.crumbIssuer.standard": None,
    "jenkins.globalNodeProperties.envVars": None,
    "jenkins.nodes.permanent": None,
    "jenkins.nodes.permanent.launcher.ssh": "ssh-slaves",
    "unclassified": None,
    "unclassified.location": None,
    "security": None,
    "security.globalJobDslSecurityConfiguration": "job-dsl",
    "security.scriptApproval": "script-security",
    "credentials": "credentials",
    "credentials.system.domainCredentials.credentials.usernamePassword": "credentials",
    "credentials.system.domainCredentials.credentials.file": "plain-credentials",
    "credentials.system.domainCredentials.credentials.string": "plain-credentials",
    "credentials.system.domainCredentials.credentials.basicSSHUserPrivateKey": "ssh-credentials",
    "jobs": "job-dsl",
}
# The Job DSL the jobs entry runs.
JOB_DSL_PROVIDERS = {
    "multibranchPipelineJob": "workflow-multibranch", "workflowBranchProjectFactory":
    "workflow-multibranch", "branchSources": "workflow-multibranch", "git": "git",
    "periodicFolderTrigger": "cloudbees-folder", "discardOldItems": "cloudbees-folder",
    "computedFolderWebHookTrigger": "multibranch-scan-webhook-trigger",
}  # fmt: skip
# The Jenkinsfile's steps and directives. workflow-aggregator's pin brings the plugins marked so
# (its dependencies, at the versions it requires); the others are pinned in plugins.txt.
AGGREGATED = {"pipeline-model-definition", "workflow-basic-steps", "workflow-durable-task-step",
              "workflow-scm-step", "pipeline-input-step", "workflow-job",
              "pipeline-build-step"}  # fmt: skip
STEP_PROVIDERS = {
    "timestamps": "timestamper", "junit": "junit", "withCredentials": "credentials-binding",
    "usernamePassword": "credentials-binding", "file": "credentials-binding",
    # `X = credentials('id')` in an environment block: Declarative binds it through
    # credentials-binding (secret text and file types: plain-credentials, pinned for JCasC).
    "credentials": "credentials-binding",
    "input": "pipeline-input-step", "build": "pipeline-build-step",
    "retry": "workflow-basic-steps",
    "timeout": "workflow-basic-steps", "sh": "workflow-durable-task-step",
    "checkout": "workflow-scm-step", "pollSCM": "workflow-job", "cron": "workflow-job",
    "buildDiscarder": "workflow-job", "logRotator": "workflow-job",
    "disableConcurrentBuilds": "workflow-job", "string": "workflow-job",
    **dict.fromkeys(["pipeline", "agent", "label", "options", "triggers", "parameters",
                     "environment", "stages", "stage", "steps", "post", "script", "when",
                     "expression",
                     *jenkinsfile_model.POST_CONDITIONS], "pipeline-model-definition"),
}  # fmt: skip


def _paths(node: Any, prefix: str = "") -> set[str]:
    if isinstance(node, list):
        return {p for item in node for p in _paths(item, prefix)}
    if not isinstance(node, dict):
        return set()
    found = set()
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        found |= {path} | _paths(value, path)
    return found


def _provider(path: str) -> str | None:
    prefixes = [p for p in CASC_PROVIDERS if path == p or path.startswith(p + ".")]
    assert prefixes, f"JCasC key {path}: which plugin provides it? Add it to CASC_PROVIDERS"
    return CASC_PROVIDERS[max(prefixes, key=len)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_plugin_the_jcasc_uses_is_pinned(variant: str) -> None:
    document, _ = _render(variant)
    used = {_provider(path) for path in _paths(document)} - {None}
    [job] = document["jobs"]
    symbols = set(re.findall(r"\b([A-Za-z]\w*)\s*[({]", job["script"]))
    used |= {JOB_DSL_PROVIDERS[s] for s in symbols if s in JOB_DSL_PROVIDERS}
    assert "multibranchPipelineJob" in symbols  # the scan saw the job
    missing = sorted(p for p in used if p not in _pins())
    assert missing == [], f"{jenkins.IMAGE_CONTEXT / 'plugins.txt'} does not pin {missing}"
    if variant.endswith("+agents"):
        assert {"ssh-slaves", "ssh-credentials"} <= used


def test_every_step_and_directive_of_the_jenkinsfile_has_its_plugin_pinned() -> None:
    source = (REPO / jenkins.JENKINSFILE).read_text()
    tree = jenkinsfile_model.parse(source)
    used = {node["call"] for node in jenkinsfile_model.walk(tree)}
    used |= {n["function"] for n in jenkinsfile_model.assignments(tree) if n["function"]}
    unknown = sorted(used - set(STEP_PROVIDERS))
    assert unknown == [], f"which plugin provides {unknown}? Add them to STEP_PROVIDERS"
    # steps inside `script {}` (opaque to the tree): input, sh, build
    used |= {name for name in STEP_PROVIDERS if re.search(rf"\b{name}\(", source)}
    assert {"timestamps", "input", "junit", "withCredentials", "retry", "pollSCM",
            "credentials", "build"} <= used  # fmt: skip
    pins = _pins()
    missing = sorted(
        {STEP_PROVIDERS[name] for name in used}
        - set(pins)
        - (AGGREGATED if "workflow-aggregator" in pins else set())
    )
    assert missing == [], f"{jenkins.IMAGE_CONTEXT / 'plugins.txt'} does not pin {missing}"
