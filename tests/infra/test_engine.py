"""The real Pulumi engine (built by `make tools`) applies a copy of the shipped `local` stack to
this machine's Docker engine, through `modelyard infra ...` as a platform engineer types it: on
free ports, under an environment name of its own, with its own state folder and backend."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelyard.contracts.tags import Gate, Lineage
from modelyard.pipelines.local_mlflow import free_port

from tests.docker_helpers import RUN_ID, docker, docker_result
from tests.helpers import MODELYARD, REPO

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.engine]
PASSPHRASE = "modelyard-example"  # the shipped stack files' example passphrase (README)


class Stack:
    """A project folder holding the program (linked) and a copy of the local environment."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = f"local-{RUN_ID}"
        self.ports = {"registry": free_port(), "mlflow": free_port(), "serving": free_port()}

    def create(self) -> None:
        # The program's folders as copies, committed below: `infra diff` renders the program and
        # the file of a revision. The virtualenv and the tools as links.
        for part in ("contracts", "infra", "ml"):
            shutil.copytree(REPO / part, self.folder / part, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        for part in (".venv", "tools"):
            (self.folder / part).symlink_to(REPO / part)
        shutil.copy(REPO / "Pulumi.yaml", self.folder)
        (self.folder / "environments").mkdir()
        document = yaml.safe_load((REPO / "environments" / "Pulumi.local.yaml").read_text())
        config = document["config"]
        config["modelyard:mlflow"]["trackingUri"] = f"http://127.0.0.1:{self.ports['mlflow']}"
        config["modelyard:serving"]["localPort"] = self.ports["serving"]
        config["modelyard:platform"]["registry"]["port"] = self.ports["registry"]
        config["modelyard:platform"]["mlflow"]["port"] = self.ports["mlflow"]
        self.env_file.write_text(yaml.safe_dump(document, sort_keys=False))
        for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "the stack"]):
            subprocess.run(
                ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *command],
                cwd=self.folder, check=True,
            )  # fmt: skip

    @property
    def env_file(self) -> Path:
        return self.folder / "environments" / f"Pulumi.{self.env}.yaml"

    @property
    def state(self) -> Path:
        return self.folder / "pulumi-state"

    def variables(self) -> dict[str, str]:
        return {
            **os.environ,
            "PULUMI_BACKEND_URL": self.state.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "MODELYARD_STATE_DIR": str(self.folder / "state"),
        }

    def cli(self, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MODELYARD, *args], cwd=self.folder, env=self.variables(), capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def pulumi(self, *args: str, stdin: str | None = None) -> str:
        from modelyard.infra.automation import pulumi_command

        done = subprocess.run([pulumi_command().command, *args], cwd=self.folder, input=stdin,
                              env=self.variables(), capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, f"pulumi {args[:3]}: {done.stderr}"
        return done.stdout

    def set_secret(self, key: str, value: str) -> None:
        """`pulumi config set --secret --path`, the value on stdin, as a platform engineer does."""
        self.pulumi("config", "set", "--secret", "--path", "--stack", self.env, f"modelyard:{key}",
                    stdin=value)  # fmt: skip

    def exported_state(self) -> str:
        return self.pulumi("stack", "export", "--stack", self.env)

    def infra(self, operation: str, *flags: str) -> dict[str, Any]:
        done = self.cli("infra", operation, self.env, "--json", *flags)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        self.engine_output = done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result


@pytest.fixture(scope="module")
def stack(
    engine: None, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    created = Stack(tmp_path_factory.mktemp("engine"))
    created.create()
    yield created
    created.cli("infra", "destroy", created.env)


@pytest.fixture(scope="module")
def first_up(stack: Stack) -> dict[str, Any]:
    return stack.infra("up", "--show-secrets")


def _status(url: str, auth: tuple[str, str] | None = None, context: Any = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _ready(base: str) -> dict[str, Any] | None:
    """/version of a server all of whose workers have loaded the model, or None. Each worker
    answers from its own state and listens before its model is loaded (the server's readiness
    across workers is its status file's, not one request's); 20 ready answers in a row come from
    every worker of the two with near certainty (2**-20 to miss one)."""
    answers = [_json(f"{base}/version") for _ in range(20)]
    return answers[0] if all(answer.get("ready") for answer in answers) else None


def _wait(check: Any, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
            if found:
                return found
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {check}")
        time.sleep(2)


def test_up_from_nothing_brings_the_platform_up_with_auth_everywhere(
    stack: Stack, first_up: dict[str, Any]
) -> None:
    assert first_up["outcome"] == "succeeded"
    assert first_up["changes"]["created"] >= 15 and first_up["changes"]["deleted"] == 0
    outputs = first_up["outputs"]
    # The registry: TLS with the generated certificate, and only the generated credentials.
    tls = ssl.create_default_context(cadata=outputs["registryCaCertificate"])
    registry = f"https://127.0.0.1:{stack.ports['registry']}/v2/"
    # `up` returned once the registry and MLflow answer: no waiting here.
    assert _status(registry, context=tls) == 401
    login = (outputs["registryUsername"], outputs["registryPassword"])
    assert _status(registry, login, tls) == 200
    assert _status(registry, (login[0], "not-the-password"), tls) == 401
    # MLflow: anonymous calls refused, the generated admin password accepted.
    search = f"{outputs['mlflowUrl']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _status(search) == 401
    assert _status(search, (outputs["mlflowUsername"], outputs["mlflowPassword"])) == 200
    # Serving: up before any model, and says it is not ready.
    health = f"http://127.0.0.1:{stack.ports['serving']}/health"
    assert _wait(lambda: _status(health) == 503)


def test_the_real_docker_client_pushes_with_the_generated_credentials(
    stack: Stack, first_up: dict[str, Any], tmp_path: Path
) -> None:
    outputs = first_up["outputs"]
    address = f"127.0.0.1:{stack.ports['registry']}"
    certs = Path("/etc/docker/certs.d") / address  # how the Docker engine trusts a registry CA
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "ca.crt").write_text(outputs["registryCaCertificate"])
    config = ("--config", str(tmp_path))
    try:
        refused = docker_result(*config, "pull", f"{address}/modelyard/anything:1")
        assert refused.returncode != 0  # anonymous: the registry answers 401 (tested above)
        login = docker_result(*config, "login", address, "-u", outputs["registryUsername"],
                              "--password-stdin", input=outputs["registryPassword"].encode())  # fmt: skip
        assert login.returncode == 0, login.stderr.decode()
        tag = f"{address}/modelyard/base:{RUN_ID}"
        assert docker_result("tag", "debian:bookworm-slim", tag).returncode == 0
        pushed = docker_result(*config, "push", tag)
        assert pushed.returncode == 0, pushed.stderr.decode()
    finally:
        docker_result("rmi", f"{address}/modelyard/base:{RUN_ID}")
        shutil.rmtree(certs, ignore_errors=True)


def test_a_second_up_changes_nothing(stack: Stack, first_up: dict[str, Any]) -> None:
    again = stack.infra("up")
    assert again["changes"]["unchanged"] == sum(first_up["changes"].values())
    assert {k: v for k, v in again["changes"].items() if k != "unchanged" and v} == {}
    preview = stack.infra("preview")
    assert {k: v for k, v in preview["changes"].items() if k != "unchanged" and v} == {}


def test_no_secret_in_plain_text_in_state_output_or_containers(
    stack: Stack, first_up: dict[str, Any]
) -> None:
    outputs = first_up["outputs"]
    secrets = [outputs["registryPassword"], outputs["mlflowPassword"]]
    state = "".join(p.read_text() for p in stack.state.rglob("*.json"))
    masked = stack.infra("up")  # without --show-secrets
    assert masked["outputs"]["mlflowPassword"] == "[secret]"
    inspected = "".join(
        docker_result("inspect", f"modelyard-{stack.env}-{role}").stdout.decode()
        for role in ("registry", "mlflow", "serving")
    )
    for secret in secrets:
        assert len(secret) >= 32
        assert secret not in state, "a secret is in the state file in plain text"
        assert secret not in stack.engine_output + json.dumps(masked)
        assert secret not in inspected, "a secret is in a container's inspect output"


def test_a_promotion_then_up_serves_the_promoted_version(
    stack: Stack, first_up: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform's MLflow holds a registered version; `modelyard promote` writes it to the
    environment file; the engine's preview names the serving change; `up` rolls it out, and the
    container downloads the version from MLflow with its credentials file."""
    from mlflow import MlflowClient

    from tests.serving.helpers import records, register, train_booster

    outputs = first_up["outputs"]
    credentials = {"MLFLOW_TRACKING_URI": outputs["mlflowUrl"],
                   "MLFLOW_TRACKING_USERNAME": outputs["mlflowUsername"],
                   "MLFLOW_TRACKING_PASSWORD": outputs["mlflowPassword"]}  # fmt: skip
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    booster, features = train_booster(rounds=10)
    version = register(booster, features, "churn")
    client = MlflowClient()
    run_id = client.get_model_version("churn", version).run_id
    assert run_id is not None
    client.log_metric(run_id, "roc_auc", 0.9)
    lineage = Lineage(stack.env, "0" * 40, "engine-test", "d" * 64, "churn.csv").to_tags()
    for key, value in {**lineage, **Gate("roc_auc >= 0.5", "0.9", passed=True).to_tags()}.items():
        client.set_model_version_tag("churn", version, key, value)

    promoted = stack.cli("promote", "churn", "--to", stack.env, "--version", version)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    preview = stack.infra("preview")
    # Exactly the serving container changes: it is replaced to run the promoted version.
    assert {k: v for k, v in preview["changes"].items() if v and k != "unchanged"} == {
        "replaced": 1
    }
    assert preview["resources"] == {"replaced": [f"{stack.env}-serving-server"]}
    assert f"{stack.env}-serving-server" in stack.engine_output
    # The auditors' offline diff against the commit before the promotion names the same.
    diffed = stack.cli("infra", "diff", stack.env, "--base", "HEAD", "--format", "json")
    assert diffed.returncode == 0, diffed.stdout + diffed.stderr
    audit = json.loads(diffed.stdout)
    changed = [c["name"] for c in audit["changes"]]
    assert changed == preview["resources"]["replaced"], audit["changes"]
    assert audit["servingVersion"] == {"before": ["none"], "after": [f"v{version}"]}
    rolled = stack.infra("up")
    assert rolled["outcome"] == "succeeded" and rolled["outputs"]["servingVersion"] == int(version)

    base = f"http://127.0.0.1:{stack.ports['serving']}"
    identity = _wait(lambda: _ready(base))
    assert (identity["model_name"], str(identity["model_version"])) == ("churn", version)
    rows = records(features.head(5))
    request = urllib.request.Request(
        f"{base}/invocations", data=json.dumps({"dataframe_records": rows}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        predictions = json.loads(response.read())["predictions"]
    assert predictions == pytest.approx(list(booster.predict(features.head(5))), rel=1e-9)


def test_tokens_set_as_secrets_guard_the_serving_container(
    stack: Stack, first_up: dict[str, Any]
) -> None:
    """`modelyard:serving.auth` on Docker: two scoring tokens and Prometheus's, stored with
    `pulumi config set --secret`, reach the container as 0400 files, never as variables, and
    the server asks for them."""
    from tests.serving.helpers import records, train_booster

    row = json.dumps({"dataframe_records": records(train_booster(rounds=10)[1].head(1))}).encode()
    tokens = {"ci": secrets.token_urlsafe(24), "web": secrets.token_urlsafe(24)}
    scraping = secrets.token_urlsafe(24)
    for key, value in [
        *((f"tokens.{n}", t) for n, t in tokens.items()),
        ("metricsToken", scraping),
    ]:
        stack.set_secret(f"serving.auth.{key}", value)
    rolled = stack.infra("up")
    # The tokens' volume, and the container replaced to mount it.
    assert rolled["resources"] == {"created": [f"{stack.env}-serving-auth"],
                                   "replaced": [f"{stack.env}-serving-server"]}, rolled  # fmt: skip
    base = f"http://127.0.0.1:{stack.ports['serving']}"
    _wait(lambda: _ready(base))

    def score(token: str | None) -> int:
        request = urllib.request.Request(
            f"{base}/invocations", data=row,
            headers={"Content-Type": "application/json",
                     **({"Authorization": f"Bearer {token}"} if token else {})},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert score(None) == 401 and score("wrong") == 401 and score(scraping) == 401
    assert score(tokens["ci"]) == 200 and score(tokens["web"]) == 200
    metrics = urllib.request.Request(
        f"{base}/metrics", headers={"Authorization": f"Bearer {scraping}"}
    )
    with urllib.request.urlopen(metrics, timeout=10) as response:
        assert b"modelyard_unauthorized_requests_total" in response.read()
    assert _status(f"{base}/metrics") == 401
    inspected = docker("inspect", f"modelyard-{stack.env}-serving")
    for token in (*tokens.values(), scraping):
        assert token not in inspected and token not in stack.exported_state()
        assert token not in stack.env_file.read_text()


def test_a_second_model_gets_its_own_container_and_a_promotion_of_it_replaces_only_that(
    stack: Stack, first_up: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`modelyard:models` on Docker: `up` adds the second model's container on its own port (not
    ready before its first promotion); promoting it replaces that container alone; taking it out
    of the file and `up` removes it. The first model's container answers throughout."""
    from mlflow import MlflowClient

    from tests.serving.helpers import register, train_booster

    outputs = first_up["outputs"]
    for key, value in {"MLFLOW_TRACKING_URI": outputs["mlflowUrl"],
                       "MLFLOW_TRACKING_USERNAME": outputs["mlflowUsername"],
                       "MLFLOW_TRACKING_PASSWORD": outputs["mlflowPassword"]}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    churn_url = f"http://127.0.0.1:{stack.ports['serving']}"
    churn_before = _identity(churn_url)
    port, original = free_port(), stack.env_file.read_text()
    document = yaml.safe_load(original)
    document["config"]["modelyard:models"] = {"segment": {"localPort": port}}
    stack.env_file.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        added = stack.infra("up")
        assert added["outputs"]["servingUrls"]["segment"] == f"http://127.0.0.1:{port}"
        assert not added["changes"].get("replaced") and not added["changes"].get("updated")
        segment_url = f"http://127.0.0.1:{port}"
        assert _wait(lambda: _json(f"{segment_url}/version"))["ready"] is False

        booster, features = train_booster(rounds=10)
        version = register(booster, features, "segment")
        client = MlflowClient()
        run_id = client.get_model_version("segment", version).run_id
        assert run_id is not None
        client.log_metric(run_id, "roc_auc", 0.9)
        lineage = Lineage(stack.env, "0" * 40, "engine-test", "d" * 64, "segment.csv").to_tags()
        gate = Gate("roc_auc >= 0.5", "0.9", passed=True).to_tags()
        for key, value in {**lineage, **gate}.items():
            client.set_model_version_tag("segment", version, key, value)
        promoted = stack.cli("promote", "segment", "--to", stack.env, "--version", version)
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        preview = stack.infra("preview")
        assert preview["resources"] == {"replaced": [f"{stack.env}-serving-segment-server"]}
        rolled = stack.infra("up")
        assert rolled["outputs"]["servingVersions"]["segment"] == int(version)
        identity = _wait(lambda: _ready(segment_url))
        assert (identity["model_name"], str(identity["model_version"])) == ("segment", version)
        assert _identity(churn_url) == churn_before
    finally:
        stack.env_file.write_text(original)
    removed = stack.infra("up")
    assert (
        "servingUrls" in removed["outputs"] and "segment" not in removed["outputs"]["servingUrls"]
    )
    assert (
        docker("ps", "-a", "-q", "--filter", f"name=^modelyard-{stack.env}-serving-segment$") == ""
    )
    assert _identity(churn_url) == churn_before


def _identity(url: str) -> dict[str, Any]:
    """What a server says it serves (/version), less which of its workers answered and which
    predictor scores (the compiled model takes over seconds after a version loads)."""
    said = {k: v for k, v in _json(f"{url}/version").items() if k != "worker_pid"}
    for slot in ("stable", "candidate"):
        if said.get(slot):
            said[slot] = {k: v for k, v in said[slot].items() if k != "predictor"}
    return said


def test_an_up_killed_midway_converges_on_the_next_and_keeps_the_volumes(
    stack: Stack, first_up: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`kill -9` of the whole `modelyard infra up` while it replaces the MLflow container; the
    next `up` releases the dead process's lock, settles the pending operations and converges;
    the runs and models in MLflow's volume are still there."""
    from mlflow import MlflowClient

    outputs = first_up["outputs"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outputs["mlflowUrl"])
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", outputs["mlflowUsername"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", outputs["mlflowPassword"])
    experiment = MlflowClient().create_experiment(f"kept-{RUN_ID}")
    document = yaml.safe_load(stack.env_file.read_text())
    document["config"]["modelyard:platform"]["mlflow"]["workers"] = 2  # replaces the container
    stack.env_file.write_text(yaml.safe_dump(document, sort_keys=False))

    up = subprocess.Popen(
        [MODELYARD, "infra", "up", stack.env], cwd=stack.folder, env=stack.variables(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert up.stdout is not None
    for line in up.stdout:  # killed as soon as the engine starts on the MLflow container
        if "mlflow-container" in line and ("deleting" in line or "creating" in line):
            break
    before = _engine_plugins()
    os.killpg(up.pid, signal.SIGKILL)
    up.wait(timeout=30)
    # The engine starts its plugins in process groups of their own: a kill -9 of `up` leaves
    # them running, orphaned, as it would for a user. This test cleans up what it caused.
    for pid in _engine_plugins() - before:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    again = stack.infra("up")
    assert again["outcome"] == "succeeded"
    assert "removed the lock" in stack.engine_output
    health = f"{outputs['mlflowUrl']}/health"
    assert _wait(lambda: _status(health) == 200)
    assert _wait(lambda: MlflowClient().get_experiment(experiment).name == f"kept-{RUN_ID}")
    assert MlflowClient().get_registered_model("churn").name == "churn"
    settled = stack.infra("preview")
    assert {k: v for k, v in settled["changes"].items() if v and k != "unchanged"} == {}


def test_refresh_notices_a_container_removed_by_hand_and_up_brings_it_back(
    stack: Stack, first_up: dict[str, Any]
) -> None:
    docker("rm", "-f", f"modelyard-{stack.env}-serving")
    refreshed = stack.infra("refresh")
    assert refreshed["changes"]["deleted"] == 1
    restored = stack.infra("up")
    assert restored["changes"]["created"] == 1
    assert docker("ps", "-q", "--filter", f"name=modelyard-{stack.env}-serving") != ""


def _engine_plugins() -> set[int]:
    """Orphaned (parent: init) language-host and provider processes of a Pulumi engine."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if fields[1] == "1" and b"pulumi" in command:
            found.add(int(stat.parent.name))
    return found


def _json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def test_destroy_leaves_nothing_of_the_stack_behind(stack: Stack, first_up: dict[str, Any]) -> None:
    done = stack.infra("destroy")
    assert done["changes"]["deleted"] >= 15
    name = f"modelyard-{stack.env}"
    assert docker("ps", "-aq", "--filter", f"name={name}") == ""
    assert [v for v in docker("volume", "ls", "-q").split() if v.startswith(name)] == []
    assert docker("network", "ls", "-q", "--filter", f"name={name}") == ""
