"""The platform program under Pulumi's mock runtime, for every environment file.

Each environment is built by `build_platform` exactly as `pulumi up` would, with the mock monitor
recording every registration (type, name, parent, inputs with secrets still wrapped). Secret
config values and generated passwords are known strings, so a plain-text leak into any resource
input is found wherever it hides.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import pulumi
import pytest
import yaml
from modelyard.contracts.environment import ConfigError, environment_path, load_environment
from modelyard.contracts.environment.base import SecretValue
from modelyard.contracts.environment.loader import read_stack_file
from modelyard.contracts.environment.platform_services import JenkinsAgent
from modelyard.infra.components import jenkins, mlflow_server, registry
from modelyard.infra.components.container_secrets import SECRETS_DIR
from modelyard.infra.platform_services import build_platform
from modelyard.infra.providers.resource_types import (
    CERTIFICATE,
    CONTAINER,
    IMAGE,
    NETWORK,
    PASSWORD,
    VOLUME,
)
from pulumi.dynamic.dynamic import PROVIDER_KEY
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.config import set_all_config
from pulumi.runtime.rpc import is_rpc_secret
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from tests.helpers import edit_environment

ENVIRONMENTS = ["local", "staging", "production"]
COMPONENT_TYPES = {
    "modelyard:platform:Registry",
    "modelyard:platform:MlflowServer",
    "modelyard:platform:Jenkins",
}


@dataclass
class Registered:
    type: str
    name: str
    parent: str | None
    inputs: dict[str, Any]
    provider: str = ""


@dataclass
class Run:
    resources: list[Registered]
    secrets: set[str]
    outputs: dict[str, Any] = field(default_factory=dict)

    def one(self, type_: str, suffix: str) -> Registered:
        found = [r for r in self.resources if r.type == type_ and r.name.endswith(suffix)]
        assert len(found) == 1, f"expected one {type_} named *{suffix}, got {found}"
        return found[0]


DOCKER_TYPES = (CONTAINER, IMAGE, NETWORK, VOLUME)


def _plain_secret(text: str) -> str:
    return "plain-" + hashlib.sha256(text.encode()).hexdigest()[:24]


class _Mocks(pulumi_mocks.Mocks):
    """Outputs as the providers would compute them; every generated secret is remembered."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ == PASSWORD:
            result = _plain_secret(args.name)[: int(args.inputs["length"])]
            digest = bcrypt.hashpw(result.encode(), bcrypt.gensalt(rounds=4)).decode()
            outputs.update(result=result, bcrypt_hash=digest)
            self.secrets |= {result, digest}
        elif args.typ == CERTIFICATE:
            body = _plain_secret(args.name)
            pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"
            outputs["private_key_pem"] = pem
            outputs["cert_pem"] = (
                f"-----BEGIN CERTIFICATE-----\ncert-{args.name}\n-----END CERTIFICATE-----\n"
            )
            self.secrets.add(body)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class _Monitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: _Mocks) -> None:
        super().__init__(mocks)
        self.recorded: dict[str, Registered] = {}

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            parent = self.recorded.get(request.parent)
            self.recorded[response.urn] = Registered(
                request.type,
                request.name,
                parent.name if parent else None,
                {
                    k: v
                    for k, v in pulumi_mocks.rpc.deserialize_properties(request.object).items()
                    if k != PROVIDER_KEY
                },
                request.provider,
            )
        return response


def _stack_config(env: str) -> tuple[dict[str, str], list[str], set[str]]:
    """The stack config as the engine hands it over; each `{secure: ...}` becomes a stand-in."""
    stand_ins: set[str] = set()

    def unwrap(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"secure"}:
            plain = _plain_secret(str(value["secure"]))
            stand_ins.add(plain)
            return plain
        if isinstance(value, dict):
            return {k: unwrap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [unwrap(v) for v in value]
        return value

    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in read_stack_file(environment_path(env)).items():
        before = len(stand_ins)
        plain = unwrap(value)
        config[str(key)] = plain if isinstance(plain, str) else json.dumps(plain)
        if len(stand_ins) > before:
            secret_keys.append(str(key))
    return config, secret_keys, stand_ins


def run_platform(env: str) -> Run:
    environment = load_environment(env)
    mocks = _Mocks()
    monitor = _Monitor(mocks)
    pulumi_mocks.set_mocks(mocks, project="modelyard", stack=env, preview=False, monitor=monitor)
    config, secret_keys, stand_ins = _stack_config(env)
    set_all_config(config, secret_keys)
    outputs: dict[str, Any] = {}

    def program() -> None:
        platform = build_platform(environment)
        platform.export()
        for key in ("registry_address", "mlflow_url", "mlflow_internal_url", "network"):
            getattr(platform, key).apply(lambda v, k=key: outputs.__setitem__(k, v))
        if platform.jenkins is not None:
            platform.jenkins.url.apply(lambda v: outputs.__setitem__("jenkins_url", v))
        platform.registry_password.apply(lambda v: outputs.__setitem__("registry_password", v))

    _sync_await(run_pulumi_func(program))
    return Run(list(monitor.recorded.values()), mocks.secrets | stand_ins, outputs)


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def run(request: pytest.FixtureRequest) -> tuple[str, Run]:
    return request.param, run_platform(request.param)


# The environments whose stack runs Jenkins (local leaves it out: its image needs the internet).
WITH_JENKINS = ["staging", "production"]


@pytest.fixture(scope="module", params=WITH_JENKINS)
def jenkins_run(request: pytest.FixtureRequest) -> tuple[str, Run]:
    return request.param, run_platform(request.param)


def _leaks(value: Any, secrets: set[str], path: str = "") -> list[str]:
    """Paths of plain (unwrapped) strings that contain a secret."""
    if is_rpc_secret(value):
        return []
    if isinstance(value, dict):
        return [leak for k, v in value.items() for leak in _leaks(v, secrets, f"{path}.{k}")]
    if isinstance(value, list):
        return [leak for i, v in enumerate(value) for leak in _leaks(v, secrets, f"{path}[{i}]")]
    if isinstance(value, str) and any(secret in value for secret in secrets):
        return [path]
    return []


def _unwrap(value: Any) -> Any:
    if is_rpc_secret(value):
        return _unwrap(value["value"])
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def test_every_child_is_parented_and_named_after_its_component(run: tuple[str, Run]) -> None:
    env, result = run
    components = {r.name: r for r in result.resources if r.type in COMPONENT_TYPES}
    for resource in result.resources:
        # The network is shared by the components, so it belongs to none of them.
        if resource.type in COMPONENT_TYPES or resource.type.startswith(
            ("pulumi:providers:", NETWORK)
        ):
            assert resource.parent is None, resource
            continue
        assert resource.parent in components, f"{resource.name} ({resource.type}) has no component"
        assert resource.name.startswith(f"{resource.parent}-"), resource.name
    jenkins_component = {f"{env}-jenkins"} if env in WITH_JENKINS else set()
    assert set(components) == {f"{env}-registry", f"{env}-mlflow", *jenkins_component}


def test_no_plain_text_secret_in_any_resource_input(run: tuple[str, Run]) -> None:
    _, result = run
    assert result.secrets, "the run generated no secrets: the check would prove nothing"
    leaks = [
        f"{r.name}{leak}" for r in result.resources for leak in _leaks(r.inputs, result.secrets)
    ]
    assert leaks == []


def test_no_container_gets_a_secret_in_its_environment(run: tuple[str, Run]) -> None:
    """`docker inspect` shows a container's environment: secrets go in as 0400 files."""
    _, result = run
    containers = [r for r in result.resources if r.type == CONTAINER]
    assert containers
    for container in containers:
        envs = container.inputs.get("envs", [])
        assert not is_rpc_secret(envs), container.name
        assert not [e for e in _unwrap(envs) if e.split("=", 1)[1] in result.secrets]
        for upload in _unwrap(container.inputs.get("uploads", [])):
            if upload["file"].startswith(SECRETS_DIR):
                assert upload["permissions"] == "0400", (container.name, upload["file"])
    assert result.outputs["registry_password"] in result.secrets


def test_local_platform_runs_on_this_engine_bound_to_loopback() -> None:
    result = run_platform("local")
    containers = [r for r in result.resources if r.type == CONTAINER]
    assert {c.name for c in containers} == {"local-registry-container", "local-mlflow-container"}
    for container in containers:
        for port in _unwrap(container.inputs["ports"]):
            assert port["ip"] == "127.0.0.1"
        assert _unwrap(container.inputs["user"]) not in ("", "0", "root")
        # on the platform's network, where serving reaches MLflow by name
        assert _unwrap(container.inputs["networks"]) == ["modelyard-local"]
        assert container.inputs.get("host") is None  # this machine's engine
    assert result.outputs["registry_address"] == "127.0.0.1:5443"
    assert result.outputs["mlflow_url"] == "http://127.0.0.1:5500"
    assert result.outputs["mlflow_internal_url"] == "http://modelyard-local-mlflow:5000"
    # Jenkins is left out of the local stack by its one documented key
    assert "jenkins_url" not in result.outputs
    assert not [r for r in result.resources if "jenkins" in r.name]


PULUMI_SETTINGS = {"backendUrl": "s3://state-bucket", "passphrase": {"secure": "v1:stand-in"}}


def test_jenkins_joins_a_stack_by_its_key(environments: Path) -> None:
    edit_environment(
        environments,
        "local",
        {"platform.jenkins.enabled": True, "platform.jenkins.pulumi": PULUMI_SETTINGS},
    )
    result = run_platform("local")
    assert result.outputs["jenkins_url"] == "http://127.0.0.1:8080"
    assert result.one(CONTAINER, "jenkins-container")


def test_the_pipelines_pulumi_settings_reach_jenkins_as_a_variable_and_a_secret_file(
    jenkins_run: tuple[str, Run],
) -> None:
    env, result = jenkins_run
    settings = load_environment(env).platform.jenkins  # type: ignore[union-attr]
    assert settings.pulumi is not None
    raw = result.one(CONTAINER, "jenkins-container").inputs
    uploads = {u["file"]: u for u in _unwrap(raw["uploads"])}
    casc = uploads[jenkins.ENVIRONMENT_CASC_PATH]["content"]
    # the passphrase as the engine decrypts it from the file (this harness's stand-in)
    assert settings.pulumi.passphrase is not None
    passphrase = _plain_secret(settings.pulumi.passphrase.ciphertext)
    secret_file = uploads[f"{SECRETS_DIR}/{jenkins.PASSPHRASE_VARIABLE}"]
    assert (secret_file["content"], secret_file["permissions"]) == (passphrase, "0400")
    assert not _leaks(raw, {passphrase})  # wrapped as a secret all the way to the container
    assert passphrase not in casc
    document = yaml.safe_load(casc)
    [node_env] = document["jenkins"]["globalNodeProperties"]
    assert {"key": jenkins.BACKEND_VARIABLE, "value": settings.pulumi.backend_url} in node_env[
        "envVars"
    ]["env"]
    [credential] = [
        c["string"]
        for c in document["credentials"]["system"]["domainCredentials"][0]["credentials"]
        if "string" in c and c["string"]["id"] == jenkins.PASSPHRASE_CREDENTIAL
    ]
    assert credential["secret"] == "${" + jenkins.PASSPHRASE_VARIABLE + "}"


def test_the_smoke_tests_serving_token_reaches_jenkins_as_a_credential_and_a_secret_file(
    jenkins_run: tuple[str, Run],
) -> None:
    env, result = jenkins_run
    settings = load_environment(env).platform.jenkins  # type: ignore[union-attr]
    assert set(settings.serving_tokens) == {"staging"}  # the smoke test scores staging
    raw = result.one(CONTAINER, "jenkins-container").inputs
    uploads = {u["file"]: u for u in _unwrap(raw["uploads"])}
    token = _plain_secret(settings.serving_tokens["staging"].ciphertext)
    secret_file = uploads[f"{SECRETS_DIR}/{jenkins.serving_token_variable('staging')}"]
    assert (secret_file["content"], secret_file["permissions"]) == (token, "0400")
    assert not _leaks(raw, {token})
    casc = uploads[jenkins.ENVIRONMENT_CASC_PATH]["content"]
    [credential] = [
        c["string"]
        for c in yaml.safe_load(casc)["credentials"]["system"]["domainCredentials"][0][
            "credentials"
        ]
        if "string" in c and c["string"]["id"] == jenkins.serving_token_credential("staging")
    ]
    assert credential["secret"] == "${" + jenkins.serving_token_variable("staging") + "}"
    assert token not in casc


@pytest.mark.parametrize("env", ["staging", "production"])
def test_remote_platforms_use_the_remote_engine_for_everything(env: str) -> None:
    result = run_platform(env)
    host = load_environment(env).platform.docker.host  # type: ignore[union-attr]
    docker_resources = [r for r in result.resources if r.type.startswith(DOCKER_TYPES)]
    assert docker_resources
    # every container, volume, network and image build goes through that engine
    assert {_unwrap(r.inputs["host"]) for r in docker_resources} == {host}


def test_registry_config_htpasswd_tls_deletes_and_storage(run: tuple[str, Run]) -> None:
    env, result = run
    settings = load_environment(env).platform.registry  # type: ignore[union-attr]
    container = _unwrap(result.one(CONTAINER, "registry-container").inputs)
    uploads = {u["file"]: u for u in container["uploads"]}
    config = yaml.safe_load(uploads[registry.CONFIG_PATH]["content"])
    assert config["storage"]["delete"]["enabled"] is True
    assert config["storage"]["filesystem"]["rootdirectory"] == registry.DATA_DIR
    assert config["auth"]["htpasswd"]["path"] == registry.HTPASSWD_PATH
    assert config["http"]["tls"] == {"certificate": registry.CERT_PATH, "key": registry.KEY_PATH}
    user, digest = uploads[registry.HTPASSWD_PATH]["content"].strip().split(":", 1)
    assert user == settings.username and digest.startswith("$2")
    assert uploads[registry.KEY_PATH]["permissions"] == "0400"
    assert {v["path"] for v in container["volumes"]} == {registry.DATA_DIR}
    assert container["ports"][0]["external"] == settings.port
    key_resources = [r for r in result.resources if r.type == CERTIFICATE]
    if settings.tls.source == "generated":
        assert len(key_resources) == 1
    else:
        assert key_resources == []
        assert uploads[registry.CERT_PATH]["content"] == settings.tls.certificate
    # garbage collection runs only in read-only mode, and no environment asks for it now
    assert not [r for r in result.resources if r.name.endswith("garbage-collect")]


def test_mlflow_auth_backend_artifacts_and_allowed_hosts(run: tuple[str, Run]) -> None:
    env, result = run
    settings = load_environment(env).platform  # type: ignore[union-attr]
    assert settings is not None
    raw = result.one(CONTAINER, "mlflow-container").inputs
    assert "envs" not in raw  # every secret is a file (container_secrets.py)
    container = _unwrap(raw)
    command = container["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == mlflow_server.ARTIFACTS_DIR
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    for host in settings.mlflow.allowed_hosts:
        assert host in hosts
    assert f"{settings.docker.address}:{settings.mlflow.port}" in hosts
    uploads = {u["file"]: u for u in container["uploads"]}
    secret_files = {path for path, u in uploads.items() if path.startswith(SECRETS_DIR)}
    assert secret_files == {f"{SECRETS_DIR}/MLFLOW_BACKEND_STORE_URI",
                            f"{SECRETS_DIR}/MLFLOW_FLASK_SERVER_SECRET_KEY"}  # fmt: skip
    assert all(uploads[path]["permissions"] == "0400" for path in secret_files)
    backend = uploads[f"{SECRETS_DIR}/MLFLOW_BACKEND_STORE_URI"]["content"]
    ini = uploads[mlflow_server.AUTH_INI_PATH]["content"]
    [password] = [line.split(" = ", 1)[1] for line in ini.splitlines()
                  if line.startswith("admin_password")]  # fmt: skip
    assert password in result.secrets and password != mlflow_server.DEFAULT_ADMIN_PASSWORD
    if settings.mlflow.backend == "postgresql":
        assert env != "local"
        assert backend.startswith("postgresql://") and "sslmode=" in backend
        assert "database_uri = postgresql://" in ini
    else:
        assert backend == f"sqlite:///{mlflow_server.DATA_DIR}/mlflow.db"
        assert "database_uri = sqlite:///" in ini


def test_jenkins_casc_and_environment_match(jenkins_run: tuple[str, Run]) -> None:
    env, result = jenkins_run
    settings = load_environment(env).platform  # type: ignore[union-attr]
    assert settings is not None
    raw = result.one(CONTAINER, "jenkins-container").inputs
    container = _unwrap(raw)
    casc = container["uploads"][0]["content"]
    # JCasC resolves ${NAME} from the file /run/secrets/NAME by itself.
    provided = {
        u["file"].removeprefix(f"{SECRETS_DIR}/")
        for u in container["uploads"]
        if u["file"].startswith(SECRETS_DIR)
    }
    base = jenkins.BASE_CASC.read_text()
    assert jenkins.referenced_variables(casc) | jenkins.referenced_variables(base) <= provided
    document = yaml.safe_load(casc)
    assert document["jenkins"]["numExecutors"] == (1 if env == "local" else 0)
    [node_env] = document["jenkins"]["globalNodeProperties"]
    pipeline_env = {e["key"]: e["value"] for e in node_env["envVars"]["env"]}
    assert pipeline_env["MLFLOW_TRACKING_URI"] == load_environment(env).mlflow.tracking_uri
    assert pipeline_env["MODELYARD_REGISTRY"] == registry.registry_address(
        settings.docker, settings.registry
    )
    ids = {
        next(iter(c.values()))["id"]
        for c in document["credentials"]["system"]["domainCredentials"][0]["credentials"]
    }
    kubeconfigs = {f"modelyard-kubeconfig-{k}" for k in settings.jenkins.kubeconfigs}
    agents = {jenkins.AGENT_CREDENTIAL} if settings.jenkins.agents else set()
    passphrase = {jenkins.PASSPHRASE_CREDENTIAL}  # every Jenkins the files enable deploys
    # ... and pushes the release commits of its promotions where promotion.git is on
    pushes = {jenkins.GIT_CREDENTIAL} if load_environment(env).promotion.git.enabled else set()
    # ... and smoke-tests staging, whose model server asks for a bearer token
    tokens = {jenkins.serving_token_credential(k) for k in settings.jenkins.serving_tokens}
    assert ids == (
        {"modelyard-registry", "modelyard-mlflow"}
        | kubeconfigs
        | agents
        | passphrase
        | pushes
        | tokens
    )
    assert settings.jenkins.pulumi is not None
    assert pipeline_env[jenkins.BACKEND_VARIABLE] == settings.jenkins.pulumi.backend_url
    assert [n["permanent"]["name"] for n in document["jenkins"]["nodes"]] == [
        a.host for a in settings.jenkins.agents
    ]
    job = document["jobs"][0]["script"]
    assert jenkins.JENKINSFILE in job and settings.jenkins.repository in job
    assert "periodicFolderTrigger" in job and "computedFolderWebHookTrigger" in job


def test_executors_on_a_remote_controller_are_refused(environments: Any) -> None:
    path = environments / "Pulumi.staging.yaml"
    path.write_text(path.read_text().replace("executors: 0", "executors: 1"))
    with pytest.raises(ConfigError, match="executors must be 0"):
        load_environment("staging")


def test_garbage_collection_runs_only_in_read_only_mode(environments: Any) -> None:
    path = environments / "Pulumi.local.yaml"
    text = path.read_text().replace(
        "      tls:\n        source: generated\n",
        "      readOnly: true\n      garbageCollect: true\n",
        1,
    )
    path.write_text(text)
    result = run_platform("local")
    collector = _unwrap(result.one(CONTAINER, "registry-garbage-collect").inputs)
    assert collector["command"] == registry.garbage_collect_arguments()
    uploads = {u["file"]: u for u in collector["uploads"]}
    config = yaml.safe_load(uploads[registry.CONFIG_PATH]["content"])
    assert config["storage"]["maintenance"]["readonly"]["enabled"] is True
    served = _unwrap(result.one(CONTAINER, "registry-container").inputs)
    assert {v["volume"] for v in collector["volumes"]} == {v["volume"] for v in served["volumes"]}


def test_garbage_collection_needs_read_only(environments: Any) -> None:
    path = environments / "Pulumi.local.yaml"
    text = path.read_text().replace(
        "      tls:\n        source: generated\n", "      garbageCollect: true\n", 1
    )
    path.write_text(text)
    with pytest.raises(ConfigError, match="readOnly"):
        load_environment("local")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_generated_certificates_name_the_registry(env: str) -> None:
    platform = load_environment(env).platform
    assert platform is not None
    result = run_platform(env)
    certs = [r for r in result.resources if r.type == CERTIFICATE]
    if platform.registry.tls.source == "provided":
        assert certs == []
        return
    [cert] = certs
    host = registry.registry_host(platform.docker, platform.registry)
    names = _unwrap(cert.inputs)["dns_names"] + _unwrap(cert.inputs)["ip_addresses"]
    assert host in names and "127.0.0.1" in names


def _attempt(create: Any) -> tuple[list[Registered], Exception | None]:
    """Run `create` under the mock runtime: what it registered, and what it raised."""
    mocks = _Mocks()
    monitor = _Monitor(mocks)
    pulumi_mocks.set_mocks(
        mocks, project="modelyard", stack="local", preview=False, monitor=monitor
    )
    error: Exception | None = None
    try:
        _sync_await(run_pulumi_func(create))
    except Exception as exc:
        error = exc
    return list(monitor.recorded.values()), error


def _local_platform() -> Any:
    platform = load_environment("local").platform
    assert platform is not None
    return platform


def test_components_refuse_bad_arguments_before_creating_anything() -> None:
    platform = _local_platform()
    secret = pulumi.Output.secret("s3cret")
    provided = platform.registry.model_copy(
        update={"tls": platform.registry.tls.model_copy(update={"source": "provided"})}
    )
    postgres = platform.mlflow.model_copy(update={"backend": "postgresql"})
    with_kube = platform.jenkins.model_copy(update={"kubeconfigs": {"staging": "x"}})
    jenkins_args = {
        "environment": "local", "target": platform.docker, "registry_address": "r:5443",
        "registry_username": "u", "registry_password": secret, "mlflow_url": "http://m",
        "mlflow_username": "admin", "mlflow_password": secret,
    }  # fmt: skip
    cases = [
        lambda: registry.ImageRegistry(
            "local-registry", registry.RegistryArgs("local", provided, platform.docker)
        ),
        lambda: mlflow_server.TrackingServer(
            "local-mlflow", mlflow_server.MlflowServerArgs("local", postgres, platform.docker)
        ),
        lambda: jenkins.JenkinsController(
            "local-jenkins", jenkins.JenkinsArgs(settings=with_kube, **jenkins_args)
        ),
        lambda: jenkins.JenkinsController(
            "local-jenkins",
            jenkins.JenkinsArgs(
                settings=platform.jenkins, **{**jenkins_args, "registry_password": "plain"}
            ),
        ),
    ]
    for create in cases:
        registered, error = _attempt(create)
        assert isinstance(error, ConfigError), error
        assert registered == []
    # the same harness does see what a valid component registers
    registered, error = _attempt(
        lambda: mlflow_server.TrackingServer(
            "local-mlflow",
            mlflow_server.MlflowServerArgs("local", platform.mlflow, platform.docker),
        )
    )
    assert error is None and len(registered) > 3


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMp6gSUU4e2mKBi0IuVYxOmmrBhAvzW4x5i6OEq5QxcF"
AGENT_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nsentinel-agent-key\n-----END OPENSSH PRIVATE KEY-----"
)


def _staging_jenkins(hosts: list[str], **overrides: Any) -> Any:
    """A Jenkins controller for staging with SSH agents on `hosts`, under the mock runtime."""
    platform = load_environment("staging").platform
    assert platform is not None
    agents = [JenkinsAgent(host=host, host_key=HOST_KEY) for host in hosts]
    settings = platform.jenkins.model_copy(
        update={"agents": agents, "agent_private_key": SecretValue("v1:x"), "kubeconfigs": {}}
    )
    secret = pulumi.Output.secret("s3cret")
    args = {
        "environment": "staging", "settings": settings, "target": platform.docker,
        "registry_address": "r:5443", "registry_username": "u", "registry_password": secret,
        "mlflow_url": "http://m", "mlflow_username": "admin", "mlflow_password": secret,
        "agent_user": "jenkins", "agent_private_key": pulumi.Output.secret(AGENT_KEY),
        "pulumi_passphrase": pulumi.Output.secret("stand-in passphrase"),
        "git_private_key": pulumi.Output.secret("stand-in git key"),
        "serving_tokens": {"staging": pulumi.Output.secret("stand-in serving token")},
        **overrides,
    }  # fmt: skip
    return lambda: jenkins.JenkinsController("staging-jenkins", jenkins.JenkinsArgs(**args))


def _inventory_agents() -> list[str]:
    inventory = yaml.safe_load(jenkins.inventory_path("staging").read_text())
    return sorted(inventory["all"]["children"]["jenkins_agents"]["hosts"])


def test_agents_reach_jenkins_as_nodes_and_their_key_as_a_secret_file() -> None:
    hosts = _inventory_agents()
    registered, error = _attempt(_staging_jenkins(hosts))
    assert error is None, error
    [container] = [r for r in registered if r.type == CONTAINER]
    uploads = {u["file"]: u for u in _unwrap(container.inputs["uploads"])}
    key_file = f"{SECRETS_DIR}/{jenkins.AGENT_KEY_VARIABLE}"
    assert uploads[key_file]["content"] == AGENT_KEY and uploads[key_file]["permissions"] == "0400"
    assert not _leaks(container.inputs, {"sentinel-agent-key"})  # wrapped as a secret throughout
    casc = yaml.safe_load(uploads[jenkins.ENVIRONMENT_CASC_PATH]["content"])
    assert [n["permanent"]["name"] for n in casc["jenkins"]["nodes"]] == hosts
    assert (
        "${" + jenkins.AGENT_KEY_VARIABLE + "}" in uploads[jenkins.ENVIRONMENT_CASC_PATH]["content"]
    )


@pytest.mark.parametrize(
    ("hosts", "overrides", "message"),
    [
        (["build-9.staging.example.internal"], {}, r"jenkins_agents group"),
        (None, {"agent_private_key": None}, r"agentPrivateKey"),
        (None, {"agent_user": None}, r"agentUser"),
        (None, {"agent_private_key": "plain key"}, r"never plain strings"),
    ],
    ids=["not the inventory's agents", "no key", "no user", "a plain key"],
)
def test_jenkins_with_agents_refuses_what_would_not_connect(
    hosts: list[str] | None, overrides: dict[str, Any], message: str
) -> None:
    registered, error = _attempt(_staging_jenkins(hosts or _inventory_agents(), **overrides))
    assert isinstance(error, ConfigError), error
    assert re.search(message, str(error)), error
    assert registered == []


@pytest.mark.parametrize(
    ("passphrase", "message"),
    [(None, r"no passphrase reached Jenkins.*modelyard:platform\.jenkins\.pulumi\.passphrase"),
     ("modelyard-example", r"never plain strings")],
    ids=["missing", "plain"],
)  # fmt: skip
def test_jenkins_refuses_a_passphrase_that_is_missing_or_not_a_secret(
    passphrase: str | None, message: str
) -> None:
    registered, error = _attempt(
        _staging_jenkins(_inventory_agents(), pulumi_passphrase=passphrase)
    )
    assert isinstance(error, ConfigError), error
    assert re.search(message, str(error)), error
    assert "modelyard-example" not in str(error)
    assert registered == []
