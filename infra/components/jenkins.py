"""Jenkins controller: pinned plugins, Configuration as Code, secrets injected from Pulumi."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import yaml
from modelyard.contracts import variables
from modelyard.contracts.environment import ConfigError
from modelyard.contracts.environment.platform_services import DockerTarget, Jenkins
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
# `${VAR}`, also inside JCasC functions such as `${base64:${VAR}}`.
_REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def kubeconfig_variable(environment: str) -> str:
    return "KUBECONFIG_" + re.sub(r"[^A-Z0-9]", "_", environment.upper())


def render_environment_casc(
    settings: Jenkins, *, environment: str, url: str, registry_address: str, mlflow_url: str
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
    document: dict[str, Any] = {
        "jenkins": {
            "systemMessage": f"modelyard {environment}: configured as code (UI edits are lost).",
            "numExecutors": settings.executors,
            "slaveAgentPort": AGENT_PORT,
            "globalNodeProperties": [
                {
                    "envVars": {
                        "env": [
                            {"key": variables.ENVIRONMENT, "value": environment},
                            {"key": "MLFLOW_TRACKING_URI", "value": mlflow_url},
                            {"key": variables.REGISTRY, "value": registry_address},
                        ]
                    }
                }
            ],
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
    return values


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


def _validate(args: JenkinsArgs) -> None:
    missing = sorted(set(args.settings.kubeconfigs) - set(args.kubeconfigs))
    if missing:
        raise ConfigError(
            f"environment {args.environment}: no kubeconfig secret reached Jenkins for {missing}: "
            "set modelyard:platform.jenkins.kubeconfigs.<env> as a secret"
        )
    plain = [name for name, value in args.kubeconfigs.items() if isinstance(value, str)]
    if plain or isinstance(args.registry_password, str) or isinstance(args.mlflow_password, str):
        raise ConfigError("Jenkins credentials must be Pulumi secrets, never plain strings")


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
