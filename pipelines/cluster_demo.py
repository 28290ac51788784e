"""`modelyard demo --cluster` (`make demo-cluster`): the production path on one machine.

The platform (registry, MLflow) by `pulumi up` of the `demo` stack in Docker, staging and production
as namespaces of the local Kubernetes deployed by `pulumi up` of their stacks, the whole pipeline
from data to production pods, a drifted load sent to production through its Service, the promotion
history. Everything lives in .modelyard/demo-cluster (ignored by git). Without --keep-serving the
cluster stops and the platform's containers stop at the end; the next run starts them again, so a
second run trains again and either promotes or says why production keeps what it has.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

import yaml
from modelyard.contracts import variables
from modelyard.contracts.atomic_file import write_atomic
from modelyard.contracts.environment import project_root
from modelyard.contracts.state import state_dir
from modelyard.pipelines.cluster_load import LoadPod
from modelyard.pipelines.demo import sample_data, show_history
from modelyard.pipelines.deploy_targets import SERVICE_SCHEME
from modelyard.pipelines.errors import PipelineError
from rich.console import Console

# The platform and training environment (its Docker objects: modelyard-<name>-*).
PLATFORM = os.environ.get(variables.DEMO_STACK, "demo")
SERVED = ("staging", "production")
DEMO_TOKEN = "demo"  # the name of the scoring token the demo's callers send
PASSPHRASE = "modelyard-example"  # the example passphrase the shipped stack files use (README)
DRIFT_ROWS = 1_500


def run_cluster_demo(keep_serving: bool, console: Console) -> None:
    from modelyard.infra.local_cluster import runtime

    folder = (state_dir() / "demo-cluster").resolve()
    _check_tools(console)
    project = _project(folder, console)
    # The engine reads stack files from the project it runs: the demo's own, whose environments/
    # are copies the promotions may write to. Its state folder and backend are its own too.
    os.chdir(project)
    os.environ.pop(variables.ENVIRONMENTS_DIR, None)
    os.environ[variables.STATE_DIR] = str(folder)
    os.environ.setdefault("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    os.environ["PULUMI_BACKEND_URL"] = (folder / "pulumi-state").as_uri()
    (folder / "pulumi-state").mkdir(parents=True, exist_ok=True)
    environments = project / "environments"

    console.rule("[bold]local Kubernetes")
    # One cluster per machine: one another project started (the checkout's, say) is used and
    # left running; the demo's own (its folder's) stops at the end as before.
    found = runtime.current_paths()
    theirs = (runtime.status(found).state == "running"
              and found.root.resolve() != (folder / "cluster").resolve())  # fmt: skip
    status = runtime.up(lambda line: console.print(f"  {line}", highlight=False), found)
    os.environ["KUBECONFIG"] = status.kubeconfig
    console.rule("[bold]platform: pulumi up of the demo stack (registry, MLflow)")
    _start_platform_containers()
    outputs = _provision_platform(environments, found, console)
    try:
        data = sample_data(folder, console)
        served = _pipeline(data, console)
        _drift(folder, served.get("production"), console)
        show_history(console)
        _where_to_look(outputs, served, status.kubectl, status.kubeconfig, keep_serving, console)
    finally:
        if not keep_serving:
            stop_serving(console, stop_cluster=not theirs)


def _check_tools(console: Console) -> None:
    """Everything the path needs, named with the command that provides it, before any work."""
    from modelyard.infra.automation import pulumi_command
    from modelyard.infra.local_cluster.binaries import Binaries
    from modelyard.pipelines.docker_cli import engine_problem

    problem = engine_problem()
    if problem:
        raise PipelineError(
            f"the cluster demo builds images and runs the platform in Docker: {problem}"
        )
    pulumi_command()  # raises with `make tools` in its message
    Binaries.find()  # raises with `make cluster-tools` in its message
    console.print(
        "builds on the first run: the cluster's three nodes (Ansible: about 2 minutes), the "
        "platform's images (registry, MLflow: about 2 minutes) and the serving image (about 30 s); "
        "later runs start the nodes again and reuse Docker's layer cache"
    )


# What the demo's project folder links from the checkout: the program, the pipeline's code and
# tests (the unit-tests stage runs them), the tools and the virtualenv the program runs in.
# The Ansible roles too: they make the cluster's nodes trust the platform's registry.
_LINKED = ("ansible", "contracts", "infra", "ml", "pipelines", "tests", "tools", ".venv")


def _project(folder: Path, console: Console) -> Path:
    """A project folder made once: Pulumi.yaml, links to the checkout's code, and copies of the
    shipped environment files. `demo` is `local` with its ports published on this machine's
    address (pods reach the platform there); staging and production are namespaces of the local
    cluster. Promotions write to these copies, never to yours."""
    from modelyard.infra.local_cluster.runtime import node_ip
    from modelyard.pipelines.local_mlflow import free_port

    project = folder / "project"
    environments = project / "environments"
    root = project_root()
    project.mkdir(parents=True, exist_ok=True)
    added = []
    for name in _LINKED:  # each run: a project made by an older checkout gets new links too
        link = project / name
        if not link.is_symlink():
            link.symlink_to(root / name)
            added.append(name)
    if environments.is_dir():
        if added:
            _commit(project, f"link the kit's {', '.join(added)}")
        return project
    shutil.copy(root / "Pulumi.yaml", project / "Pulumi.yaml")
    staging_dir = project / "environments.new"
    shutil.rmtree(staging_dir, ignore_errors=True)
    staging_dir.mkdir(parents=True)
    shipped = root / "environments"
    address, registry_port, mlflow_port = node_ip(), free_port(), free_port()
    registry = f"{address}:{registry_port}"
    tracking = f"http://{address}:{mlflow_port}"
    platform = _load(shipped / "Pulumi.local.yaml")
    _set(platform, {
        "mlflow.trackingUri": tracking,
        "serving.platform": "process", "serving.imageRepository": "modelyard-serving",
        "platform.docker.bindAddress": address, "platform.docker.address": address,
        "platform.registry.port": registry_port, "platform.mlflow.port": mlflow_port,
        "platform.mlflow.allowedHosts": [address], "notify": None,
    })  # fmt: skip
    _write(staging_dir / f"Pulumi.{PLATFORM}.yaml", platform)
    repository = f"{registry}/modelyard-serving"
    for env in SERVED:
        document = _load(shipped / f"Pulumi.{env}.yaml")
        for section in ("platform", "hosts", "notify"):
            document["config"].pop(f"modelyard:{section}", None)
        _set(document, {
            "mlflow.trackingUri": tracking,
            "serving.namespace": f"modelyard-{env}",
            "serving.kubeconfig": None,  # KUBECONFIG: the local cluster's
            "serving.imageRepository": repository,
            # Never pulled: the pipeline promotes (writing `image`) before it deploys.
            "serving.bootstrapImage": f"{repository}:none@sha256:{'0' * 64}",
            "serving.resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                  "limits": {"cpu": "1", "memory": "768Mi"}},
            "serving.network.egressPorts": [registry_port, mlflow_port],
            "monitoring.sampleRate": 1.0,
            # Promotions are commits pushed to the demo's own repository (_repository).
            "promotion.git.remote": str(folder / "repository.git"),
        })  # fmt: skip
        _write(staging_dir / f"Pulumi.{env}.yaml", document)
    staging = _load(staging_dir / "Pulumi.staging.yaml")
    _set(staging, {"promotion.trainedFor": [PLATFORM], "serving.replicas": 1})
    _write(staging_dir / "Pulumi.staging.yaml", staging)
    production = _load(staging_dir / "Pulumi.production.yaml")
    _set(production, {
        "promotion.soakMinutes": 0, "promotion.approvals.required": 0,
        # Drift evidence is read from local servers' samples; the pods' are not read by the gate yet.
        "promotion.maxDrift": None,
        "serving.replicas": 2, "serving.autoscaling.maxReplicas": 3,
        # A canary the demo can watch: short steps, judged on its callers' requests (a latency
        # limit a busy 2-core machine keeps while the pipeline runs beside the pods).
        "monitoring.canaryStepSeconds": 5, "monitoring.canaryMinRequests": 30,
        "promotion.rollout.maxLatencyP99Ms": 500,
    })  # fmt: skip
    _write(staging_dir / "Pulumi.production.yaml", production)
    staging_dir.rename(environments)
    _repository(project, folder / "repository.git")
    console.print(
        f"demo project in {project}: the platform publishes on {address} (the pods reach it "
        "there), staging and production are namespaces of the local cluster, production's soak "
        "and approvals are waived"
    )
    return project


def _provision_platform(environments: Path, paths: Any, console: Console) -> dict[str, Any]:
    from modelyard.infra.automation import run, select_stack
    from modelyard.infra.local_cluster.registry_trust import trust_registry
    from pulumi import automation as auto

    result = run(PLATFORM, "up", lambda line: None, show_secrets=True)
    console.print(f"  {result.summary}")
    outputs = result.outputs
    address = str(outputs["registryAddress"])
    trust_registry(address, str(outputs["registryCaCertificate"]), paths)
    # Pushes, pulls and model downloads use the platform's generated users, stored as Pulumi
    # secrets in the environment files (encrypted with the stack's passphrase).
    settings = {
        PLATFORM: {"pipeline.package.registry": address,
                   "pipeline.package.username": outputs["registryUsername"]},
        **{env: {"serving.pullCredentials.username": outputs["registryUsername"],
                 "serving.mlflowCredentials.username": outputs["mlflowUsername"]}
           for env in SERVED},
    }  # fmt: skip
    secrets = {
        PLATFORM: {"pipeline.package.password": outputs["registryPassword"]},
        **{env: {"serving.pullCredentials.password": outputs["registryPassword"],
                 "serving.mlflowCredentials.password": outputs["mlflowPassword"]}
           for env in SERVED},
    }  # fmt: skip
    # The model servers' bearer tokens: the demo's own, made on its first run (the shipped
    # files hold random ones nobody knows); one scoring token for both environments, which the
    # demo's callers send. A later run reads it back from the stack's config.
    known = _demo_token()
    os.environ[variables.SERVING_TOKEN] = known or token_urlsafe(32)
    if known is None:
        for env in SERVED:
            secrets[env].update({
                f"serving.auth.tokens.{DEMO_TOKEN}": os.environ[variables.SERVING_TOKEN],
                "serving.auth.metricsToken": token_urlsafe(32),
            })  # fmt: skip
    for env, values in settings.items():
        # The secrets first (the file is valid without them), then the keys that need them.
        stack = select_stack(env, lambda line: None)
        for key, value in secrets[env].items():
            stack.set_config(
                f"modelyard:{key}", auto.ConfigValue(str(value), secret=True), path=True
            )
        path = environments / f"Pulumi.{env}.yaml"
        document = _load(path)
        _set(document, values)
        _write(path, document)
    _commit(environments.parent, "the platform's users for pushes, pulls and model downloads")
    os.environ["MLFLOW_TRACKING_URI"] = str(outputs["mlflowUrl"])
    os.environ["MLFLOW_TRACKING_USERNAME"] = str(outputs["mlflowUsername"])
    os.environ["MLFLOW_TRACKING_PASSWORD"] = str(outputs["mlflowPassword"])
    os.environ["MODELYARD_SECRET_PIPELINE_PACKAGE_PASSWORD"] = str(outputs["registryPassword"])
    console.print(f"  MLflow {outputs['mlflowUrl']}, registry {address} (auth and TLS)")
    return dict(outputs)


def _demo_token() -> str | None:
    """The scoring token an earlier run of the demo stored (decrypted), if any."""
    from modelyard.infra.automation import select_stack
    from pulumi import automation as auto

    stack = select_stack("staging", lambda line: None)
    try:
        return stack.get_config(f"modelyard:serving.auth.tokens.{DEMO_TOKEN}", path=True).value
    except auto.errors.CommandError:
        return None


def _start_platform_containers() -> None:
    """A run without --keep-serving stopped them: the same containers start again, data kept."""
    names = subprocess.run(
        ["docker", "ps", "--all", "--quiet", "--filter", f"name=^modelyard-{PLATFORM}-",
         "--filter", "status=exited"],
        capture_output=True, text=True, check=False,
    ).stdout.split()  # fmt: skip
    if names:
        subprocess.run(["docker", "start", *names], capture_output=True, check=False)


def _pipeline(data: Path, console: Console) -> dict[str, str]:
    """The pipeline as Jenkins runs it; the deploy stages `pulumi up` staging and production.
    Once production serves, callers inside the cluster send it requests all along: a canary is
    judged on them, and they show whether anyone saw a failed request."""
    from modelyard.pipelines.demo import run_demo_pipeline

    callers = _production_callers(console)
    try:
        served, _ = run_demo_pipeline(PLATFORM, data, console)
    finally:
        if callers is not None:
            counted = callers.stop()
            answered = ", ".join(f"v{v}: {n}" for v, n in sorted(counted["versions"].items()))
            console.print(
                f"production's callers during the run: {counted['sent']} requests, "
                f"{counted['failed']} failed; answered by {answered or 'nobody'}"
            )
    for env in SERVED:  # a refused promotion leaves production's Service as it was
        served.setdefault(env, f"{SERVICE_SCHEME}modelyard-{env}/{env}-serving")
    return served


def _production_callers(console: Console) -> LoadPod | None:
    from modelyard.contracts.environment import load_environment
    from modelyard.ml.data.sample import generate_churn
    from modelyard.pipelines.cluster_load import start_load

    serving = load_environment("production").serving
    if serving.desired_version is None or serving.image is None:
        return None  # the first run: production serves nothing yet
    rows = generate_churn(20, seed=3).drop(columns=["churned"]).to_json(orient="records")
    callers = start_load(serving.namespace, "production-serving", serving.image, json.loads(rows))
    console.print(f"callers inside the cluster send production v{serving.desired_version} requests")
    return callers


def _drift(folder: Path, address: str | None, console: Console) -> None:
    """Drifted traffic through production's Service; the pods' live samples are then copied
    out of the pods and judged against the training profile."""
    import requests
    from modelyard.contracts.environment import load_environment
    from modelyard.ml.data.sample import generate_churn
    from modelyard.ml.monitoring.check import check_drift
    from modelyard.pipelines.deploy_targets import reachable
    from modelyard.pipelines.pod_samples import pods_folder, refresh_pod_samples
    from modelyard.pipelines.serving_auth import bearer_headers

    console.rule("[bold]drifted traffic to production")
    if not address:
        console.print("production is not serving: no drift check")
        return
    frame = generate_churn(DRIFT_ROWS, seed=99, drift=0.8).drop(columns=["churned"])
    with reachable(address) as url:
        session = requests.Session()
        session.headers.update(bearer_headers(load_environment("production")))
        for start in range(0, DRIFT_ROWS, 50):
            batch = json.loads(frame.iloc[start : start + 50].to_json(orient="split", index=False))
            session.post(f"{url}/invocations", json={"dataframe_split": batch},
                         timeout=30).raise_for_status()  # fmt: skip
    console.print(f"{DRIFT_ROWS} rows from a drifted population sent to {address}")
    production = load_environment("production")
    time.sleep(2)  # the servers write their samples in the background
    copied = refresh_pod_samples(production)
    report = folder / "reports" / "drift-production.html"
    check = check_drift(production, pods_folder("production"), report)
    drifted = [f.name for f in check.result.drifted_features]
    verdict = f"DRIFT caught in {', '.join(drifted)}" if check.result.drifted else "no drift found"
    console.print(f"{verdict} ({copied} sample files from the pods); report {check.report}")


def _where_to_look(
    outputs: dict[str, Any], served: dict[str, str], kubectl: str, kubeconfig: str,
    keep_serving: bool, console: Console,
) -> None:  # fmt: skip
    console.rule("[bold]where to look")
    state = "" if keep_serving else " (stopped at the end; --keep-serving keeps it running)"
    console.print(f"MLflow UI:     {outputs['mlflowUrl']} (user {outputs['mlflowUsername']}; "
                  f"password: `modelyard infra up {PLATFORM} --json --show-secrets` run in "
                  f"{Path.cwd()} with PULUMI_BACKEND_URL={os.environ['PULUMI_BACKEND_URL']}){state}")  # fmt: skip
    console.print(f"pods:          {kubectl} --kubeconfig {kubeconfig} get pods -A{state}")
    for env in SERVED:
        console.print(f"{env + ':':<14} {served.get(env, '-')} "
                      f"(kubectl port-forward -n modelyard-{env} service/{env}-serving 8080:80)")  # fmt: skip
    console.print("history:       modelyard history churn")


def stop_serving(console: Console, stop_cluster: bool) -> None:
    from modelyard.infra.local_cluster import runtime

    if stop_cluster:
        runtime.down(lambda line: None)
    ids = subprocess.run(["docker", "ps", "--quiet", "--filter", f"name=^modelyard-{PLATFORM}-"],
                         capture_output=True, text=True, check=False).stdout.split()  # fmt: skip
    if ids:
        subprocess.run(["docker", "stop", *ids], capture_output=True, check=False)
    stopped = "the cluster and the platform's containers" if stop_cluster else (
        "the platform's containers (the cluster is another project's: it keeps running)")  # fmt: skip
    console.print(
        f"stopped {stopped} (their data stays for the next run; --keep-serving keeps them running)"
    )


# Who commits the demo's own changes of settings (promotions commit as the environment says).
_IDENTITY = {"GIT_AUTHOR_NAME": "modelyard demo", "GIT_AUTHOR_EMAIL": "demo@modelyard.invalid",
             "GIT_COMMITTER_NAME": "modelyard demo",
             "GIT_COMMITTER_EMAIL": "demo@modelyard.invalid"}  # fmt: skip


def _git(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True,
                          env={**os.environ, **_IDENTITY}, check=True)  # fmt: skip


def _repository(project: Path, remote: Path) -> None:
    """The demo project as a team has it: a repository whose `main` on a remote (a bare one
    beside it) is where staging's and production's promotions land as commits."""
    (project / ".gitignore").write_text("/.venv\n")
    _git(project.parent, "init", "-q", "--bare", "-b", "main", str(remote))
    _git(project, "init", "-q", "-b", "main")
    _git(project, "remote", "add", "origin", str(remote))
    _commit(project, "the demo project")


def _commit(project: Path, message: str) -> None:
    """Commit and push the demo's own edits of its environment files, as an engineer would."""
    if not (project / ".git").is_dir():
        return  # a project an older kit made: promotions write its files alone
    _git(project, "add", "-A")
    if _git(project, "status", "--porcelain").stdout.strip():
        _git(project, "commit", "-q", "-m", message)
    _git(project, "push", "-q", "origin", "HEAD:refs/heads/main")


def edit_environment_file(path: Path, changes: dict[str, Any]) -> None:
    """Set `modelyard:<section>.<path>` keys of a demo environment file (None removes one),
    committed and pushed like any change of settings."""
    document = _load(path)
    _set(document, changes)
    _write(path, document)
    _commit(path.parent.parent, f"edit {path.name}")


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def _write(path: Path, document: dict[str, Any]) -> None:
    write_atomic(path, yaml.safe_dump(document, sort_keys=False))


def _set(document: dict[str, Any], changes: dict[str, Any]) -> None:
    """`modelyard:<section>.<path>` keys; None removes one."""
    config = document["config"]
    for dotted, value in changes.items():
        section, *rest = dotted.split(".")
        key = f"modelyard:{section}"
        if not rest:
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
            continue
        node = config.setdefault(key, {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(rest[-1], None)
        else:
            node[rest[-1]] = value
