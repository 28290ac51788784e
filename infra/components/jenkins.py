"""Jenkins controller: pinned plugins, Configuration as Code, secrets injected from Pulumi."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from modelyard.contracts import variables
from modelyard.contracts.environment import ConfigError, project_root
from modelyard.contracts.environment.platform_services import (
    PASSPHRASE_KEY,
    DockerTarget,
    Jenkins,
)
from modelyard.infra.components.container_health import port_open
from modelyard.infra.components.container_secrets import secret_files, upload
from modelyard.infra.components.image_build import IMAGES, local_image
from modelyard.infra.providers.docker_engine import Container, Volume
from modelyard.infra.providers.generated_secrets import Password

IMAGE_CONTEXT = IMAGES / "jenkins"
BASE_CASC = IMAGE_CONTEXT / "casc.yaml"  # baked into the image as 00-security.yaml
CASC_DIR = "/etc/jenkins/casc"  # CASC_JENKINS_CONFIG in the image
ENVIRONMENT_CASC_PATH = f"{CASC_DIR}/10-environment.yaml"
HOME = "/var/jenkins_home"
HTTP_PORT = 8080
AGENT_PORT = 50000
JOB_NAME = "modelyard"
JENKINSFILE = "pipelines/Jenkinsfile"
# The agents: the label the Jenkinsfile asks for, the home the jenkins_agent role gives the agent
# user (its remoting jar and workspaces live there), and the SSH key the controller logs in with.
AGENT_LABEL = "modelyard"
AGENT_HOME = "/var/lib/jenkins-agent"
AGENT_CREDENTIAL = "modelyard-agent-ssh"
AGENT_KEY_VARIABLE = "JENKINS_AGENT_SSH_KEY"
AGENT_GROUP = "jenkins_agents"  # the inventory group the jenkins_agent role is applied to
# What the deploy stages' `pulumi up` needs on every build: the stacks' shared state backend, a
# plain node variable the CLI and infra/automation.py read, and the stacks' passphrase as a
# secret-text credential the Jenkinsfile binds to PULUMI_CONFIG_PASSPHRASE.
BACKEND_VARIABLE = "PULUMI_BACKEND_URL"
PASSPHRASE_CREDENTIAL = "modelyard-pulumi-passphrase"
PASSPHRASE_VARIABLE = "PULUMI_PASSPHRASE"  # its /run/secrets file on the controller
# The key release commits are pushed with (modelyard:platform.jenkins.gitPrivateKey): an SSH
# credential the promoting stages bind to MODELYARD_GIT_SSH_KEY.
GIT_CREDENTIAL = "modelyard-git"
GIT_KEY_VARIABLE = "GIT_PUSH_SSH_KEY"
# `${VAR}`, also inside JCasC functions such as `${base64:${VAR}}`.
_REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def kubeconfig_variable(environment: str) -> str:
    return "KUBECONFIG_" + re.sub(r"[^A-Z0-9]", "_", environment.upper())


def serving_token_credential(environment: str) -> str:
    """The credential the smoke test binds to MODELYARD_SERVING_TOKEN for `environment`."""
    return f"modelyard-serving-token-{environment}"


def serving_token_variable(environment: str) -> str:
    return "SERVING_TOKEN_" + re.sub(r"[^A-Z0-9]", "_", environment.upper())


def agent_nodes(settings: Jenkins) -> list[dict[str, Any]]:
    """One permanent SSH node per agent; the host must prove it holds its key from the
    environment file (never trust on first use, never unverified)."""
    return [
        {
            "permanent": {
                "name": agent.host,
                "labelString": AGENT_LABEL,
                "mode": "EXCLUSIVE",  # only jobs asking for the label run there
                "numExecutors": agent.executors,
                "remoteFS": AGENT_HOME,
                "retentionStrategy": "always",
                "launcher": {
                    "ssh": {
                        "host": agent.host,
                        "port": agent.port,
                        "credentialsId": AGENT_CREDENTIAL,
                        "launchTimeoutSeconds": 60,
                        "maxNumRetries": 10,
                        "retryWaitTime": 15,
                        "sshHostKeyVerificationStrategy": {
                            "manuallyProvidedKeyVerificationStrategy": {"key": agent.host_key}
                        },
                    }
                },
            }
        }
        for agent in settings.agents
    ]


def render_environment_casc(
    settings: Jenkins,
    *,
    environment: str,
    url: str,
    registry_address: str,
    mlflow_url: str,
    agent_user: str,
) -> str:
    """The environment's JCasC file. Every secret is a `${VAR}` reference, never a value."""
    credentials: list[dict[str, Any]] = [
        {
            "usernamePassword": {
                "scope": "GLOBAL",
                "id": "modelyard-registry",
                "description": f"Image registry {registry_address}",
                "username": "${REGISTRY_USERNAME}",
                "password": "${REGISTRY_PASSWORD}",
            }
        },
        {
            "usernamePassword": {
                "scope": "GLOBAL",
                "id": "modelyard-mlflow",
                "description": f"MLflow {mlflow_url}",
                "username": "${MLFLOW_TRACKING_USERNAME}",
                "password": "${MLFLOW_TRACKING_PASSWORD}",
            }
        },
    ]
    if settings.agents:
        credentials.append(
            {
                "basicSSHUserPrivateKey": {
                    "scope": "SYSTEM",  # for launching agents only: no job can bind it
                    "id": AGENT_CREDENTIAL,
                    "description": "SSH key of the build agents",
                    "username": agent_user,
                    "privateKeySource": {
                        "directEntry": {"privateKey": "${" + AGENT_KEY_VARIABLE + "}"}
                    },
                }
            }
        )
    if settings.git_private_key is not None:
        credentials.append(
            {
                "basicSSHUserPrivateKey": {
                    "scope": "GLOBAL",  # the stages that promote or roll back bind it
                    "id": GIT_CREDENTIAL,
                    "description": "Deploy key release commits are pushed with",
                    "username": "git",
                    "privateKeySource": {
                        "directEntry": {"privateKey": "${" + GIT_KEY_VARIABLE + "}"}
                    },
                }
            }
        )
    if settings.pulumi is not None:
        credentials.append(
            {
                "string": {
                    "scope": "GLOBAL",
                    "id": PASSPHRASE_CREDENTIAL,
                    "description": "Passphrase of the stacks the deploy stages update",
                    "secret": "${" + PASSPHRASE_VARIABLE + "}",
                }
            }
        )
    for target in sorted(settings.kubeconfigs):
        credentials.append(
            {
                "file": {
                    "scope": "GLOBAL",
                    "id": f"modelyard-kubeconfig-{target}",
                    "description": f"kubeconfig of the {target} cluster",
                    "fileName": "kubeconfig",
                    "secretBytes": "${base64:${" + kubeconfig_variable(target) + "}}",
                }
            }
        )
    for target in sorted(settings.serving_tokens):
        credentials.append(
            {
                "string": {
                    "scope": "GLOBAL",
                    "id": serving_token_credential(target),
                    "description": f"bearer token for the {target} model server",
                    "secret": "${" + serving_token_variable(target) + "}",
                }
            }
        )
    job = "\n".join(
        [
            f"multibranchPipelineJob('{JOB_NAME}') {{",
            f"  displayName('modelyard ({environment})')",
            "  branchSources { branchSource { source { git {",
            f"    id('{JOB_NAME}')",
            f"    remote('{settings.repository}')",
            "  } } } }",
            f"  factory {{ workflowBranchProjectFactory {{ scriptPath('{JENKINSFILE}') }} }}",
            "  triggers {",
            f"    periodicFolderTrigger {{ interval('{settings.scan_interval}') }}",
            "    computedFolderWebHookTrigger { token('${MULTIBRANCH_WEBHOOK_TOKEN}') }",
            "  }",
            "  orphanedItemStrategy { discardOldItems { numToKeep(20) } }",
            "}",
        ]
    )
    node_env = [
        {"key": variables.ENVIRONMENT, "value": environment},
        {"key": "MLFLOW_TRACKING_URI", "value": mlflow_url},
        {"key": variables.REGISTRY, "value": registry_address},
    ]
    if settings.pulumi is not None:
        node_env.append({"key": BACKEND_VARIABLE, "value": settings.pulumi.backend_url})
    document: dict[str, Any] = {
        "jenkins": {
            "systemMessage": f"modelyard {environment}: configured as code (UI edits are lost).",
            "numExecutors": settings.executors,
            "slaveAgentPort": AGENT_PORT,
            "globalNodeProperties": [{"envVars": {"env": node_env}}],
            "nodes": agent_nodes(settings),
        },
        "unclassified": {"location": {"url": url.rstrip("/") + "/"}},
        "credentials": {"system": {"domainCredentials": [{"credentials": credentials}]}},
        "jobs": [{"script": job}],
    }
    return yaml.safe_dump(document, sort_keys=False, width=120)


def referenced_variables(casc: str) -> set[str]:
    """The environment variables a JCasC document reads through `${...}`."""
    return set(_REFERENCE.findall(casc))


def controller_environment(
    settings: Jenkins,
    *,
    admin_password: Any,
    registry_username: Any,
    registry_password: Any,
    mlflow_username: Any,
    mlflow_password: Any,
    webhook_token: Any,
    kubeconfigs: Mapping[str, Any],
    agent_private_key: Any = None,
    pulumi_passphrase: Any = None,
    git_private_key: Any = None,
    serving_tokens: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every variable the two JCasC files reference, by name (values are Pulumi secrets); JCasC
    reads each from its file in /run/secrets (container_secrets.py)."""
    values: dict[str, Any] = {
        "JENKINS_ADMIN_ID": settings.admin_username,
        "JENKINS_ADMIN_PASSWORD": admin_password,
        "REGISTRY_USERNAME": registry_username,
        "REGISTRY_PASSWORD": registry_password,
        "MLFLOW_TRACKING_USERNAME": mlflow_username,
        "MLFLOW_TRACKING_PASSWORD": mlflow_password,
        "MULTIBRANCH_WEBHOOK_TOKEN": webhook_token,
    }
    for target in sorted(settings.kubeconfigs):
        values[kubeconfig_variable(target)] = kubeconfigs[target]
    for target in sorted(settings.serving_tokens):
        values[serving_token_variable(target)] = (serving_tokens or {})[target]
    if settings.agents:
        values[AGENT_KEY_VARIABLE] = agent_private_key
    if settings.pulumi is not None:
        values[PASSPHRASE_VARIABLE] = pulumi_passphrase
    if settings.git_private_key is not None:
        values[GIT_KEY_VARIABLE] = git_private_key
    return values


def inventory_path(environment: str) -> Path:
    return project_root() / "ansible" / "inventories" / environment / "hosts.yml"


def inventory_agents(environment: str) -> set[str] | None:
    """The hosts of the environment's inventory group jenkins_agents (None: no YAML inventory)."""
    path = inventory_path(environment)
    if not path.is_file():
        return None

    def find(group: Any) -> set[str]:
        if not isinstance(group, dict):
            return set()
        found: set[str] = set()
        for name, child in (group.get("children") or {}).items():
            if name == AGENT_GROUP and isinstance(child, dict):
                found |= set(child.get("hosts") or {})
            found |= find(child)
        return found

    return find(yaml.safe_load(path.read_text(encoding="utf-8")).get("all"))


@dataclass(frozen=True)
class JenkinsArgs:
    environment: str
    settings: Jenkins
    target: DockerTarget
    registry_address: pulumi.Input[str]
    registry_username: pulumi.Input[str]
    registry_password: pulumi.Input[str]
    mlflow_url: pulumi.Input[str]
    mlflow_username: pulumi.Input[str]
    mlflow_password: pulumi.Input[str]
    # Kubeconfig per deployment environment (Pulumi secrets), keyed like settings.kubeconfigs.
    kubeconfigs: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # With settings.agents: the account the agents run as (modelyard:hosts.agentUser) and the
    # controller's private key (the secret modelyard:platform.jenkins.agentPrivateKey).
    agent_user: str | None = None
    agent_private_key: pulumi.Input[str] | None = None
    # With settings.pulumi: the secret modelyard:platform.jenkins.pulumi.passphrase.
    pulumi_passphrase: pulumi.Input[str] | None = None
    # With settings.git_private_key: that secret.
    git_private_key: pulumi.Input[str] | None = None
    # Keyed like settings.serving_tokens: those secrets.
    serving_tokens: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


def _validate(args: JenkinsArgs) -> None:
    missing = sorted(set(args.settings.kubeconfigs) - set(args.kubeconfigs))
    if missing:
        raise ConfigError(
            f"environment {args.environment}: no kubeconfig secret reached Jenkins for {missing}: "
            "set modelyard:platform.jenkins.kubeconfigs.<env> as a secret"
        )
    missing = sorted(set(args.settings.serving_tokens) - set(args.serving_tokens))
    if missing:
        raise ConfigError(
            f"environment {args.environment}: no serving token reached Jenkins for {missing}: "
            "set modelyard:platform.jenkins.servingTokens.<env> as a secret"
        )
    if args.settings.git_private_key is not None and args.git_private_key is None:
        raise ConfigError(
            f"environment {args.environment}: no git key reached Jenkins for the stages that "
            "push release commits: set modelyard:platform.jenkins.gitPrivateKey as a secret"
        )
    if args.settings.pulumi is not None and args.pulumi_passphrase is None:
        raise ConfigError(
            f"environment {args.environment}: no passphrase reached Jenkins for its deploy "
            f"stages: set {PASSPHRASE_KEY} as a secret"
        )
    plain = [name for name, value in args.kubeconfigs.items() if isinstance(value, str)]
    secrets = (
        args.registry_password,
        args.mlflow_password,
        args.agent_private_key,
        args.pulumi_passphrase,
        args.git_private_key,
    )
    if plain or any(isinstance(value, str) for value in secrets):
        raise ConfigError("Jenkins credentials must be Pulumi secrets, never plain strings")
    if args.settings.agents:
        _validate_agents(args)


def _validate_agents(args: JenkinsArgs) -> None:
    where = f"environment {args.environment}: modelyard:platform.jenkins.agents"
    if args.agent_user is None or args.agent_private_key is None:
        raise ConfigError(
            f"{where} are set but Jenkins was not given the agent user (modelyard:hosts.agentUser)"
            " and the secret modelyard:platform.jenkins.agentPrivateKey"
        )
    # Jenkins must launch builds on exactly the machines Ansible prepared as agents.
    declared = {agent.host for agent in args.settings.agents}
    prepared = inventory_agents(args.environment)
    if prepared is not None and prepared != declared:
        raise ConfigError(
            f"{where} lists {sorted(declared)} but {inventory_path(args.environment)} puts "
            f"{sorted(prepared)} in its {AGENT_GROUP} group: make the two lists the same"
        )


class JenkinsController(pulumi.ComponentResource):
    """The Jenkins controller container, its image, home volume and generated secrets."""

    url: pulumi.Output[str]
    admin_username: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    webhook_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: JenkinsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        _validate(args)
        super().__init__("modelyard:platform:Jenkins", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        settings, target, engine = args.settings, args.target, args.target.host
        url = f"http://{target.address}:{settings.port}"

        admin = Password(f"{name}-admin-password", length=32, opts=child)
        token = Password(f"{name}-webhook-token", length=40, opts=child)
        casc = pulumi.Output.all(args.registry_address, args.mlflow_url).apply(
            lambda v: render_environment_casc(
                settings,
                environment=args.environment,
                url=url,
                registry_address=v[0],
                mlflow_url=v[1],
                agent_user=args.agent_user or "",
            )
        )
        env = controller_environment(
            settings,
            admin_password=pulumi.Output.secret(admin.result),
            registry_username=args.registry_username,
            registry_password=pulumi.Output.secret(args.registry_password),
            mlflow_username=args.mlflow_username,
            mlflow_password=pulumi.Output.secret(args.mlflow_password),
            webhook_token=pulumi.Output.secret(token.result),
            kubeconfigs={k: pulumi.Output.secret(v) for k, v in args.kubeconfigs.items()},
            agent_private_key=(
                pulumi.Output.secret(args.agent_private_key)
                if args.agent_private_key is not None
                else None
            ),
            pulumi_passphrase=(
                pulumi.Output.secret(args.pulumi_passphrase)
                if args.pulumi_passphrase is not None
                else None
            ),
            git_private_key=(
                pulumi.Output.secret(args.git_private_key)
                if args.git_private_key is not None
                else None
            ),
            serving_tokens={k: pulumi.Output.secret(v) for k, v in args.serving_tokens.items()},
        )

        image = local_image(f"{name}-image", "modelyard/jenkins", "jenkins", child, host=engine)
        volume = Volume(
            f"{name}-home", name=f"modelyard-{args.environment}-jenkins-home", host=engine,
            opts=child,
        )  # fmt: skip
        self.container = Container(
            f"{name}-container",
            {
                "name": f"modelyard-{args.environment}-jenkins",
                "host": engine,
                "image": image.image_name,
                "restart": "unless-stopped",
                "memory_mb": 4096,  # a runaway process is stopped, not the host
                "healthcheck": port_open(HTTP_PORT, start_period="180s"),
                "user": "1000",
                "ports": [
                    {"internal": HTTP_PORT, "external": settings.port, "ip": target.bind_address},
                    {
                        "internal": AGENT_PORT,
                        "external": settings.agent_port,
                        "ip": target.bind_address,
                    },
                ],
                "volumes": [{"volume": volume.name, "path": HOME}],
                "uploads": [
                    upload(ENVIRONMENT_CASC_PATH, casc, "0444", "1000"),
                    *secret_files(env, owner="1000"),
                ],
                "labels": {
                    "io.modelyard.environment": args.environment,
                    "io.modelyard.role": "jenkins",
                },
            },
            opts=child,
        )

        self.url = pulumi.Output.from_input(url)
        self.admin_username = pulumi.Output.from_input(settings.admin_username)
        self.admin_password = pulumi.Output.secret(admin.result)
        self.webhook_url = pulumi.Output.secret(
            pulumi.Output.concat(url, "/multibranch-webhook-trigger/invoke?token=", token.result)
        )
        self.register_outputs(
            {
                "url": self.url,
                "adminUsername": self.admin_username,
                "adminPassword": self.admin_password,
                "webhookUrl": self.webhook_url,
            }
        )
