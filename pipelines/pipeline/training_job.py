"""The train stage as a Kubernetes Job (pipeline.trainIn `kubernetes`).

The Job runs the model's training image with this checkout's code baked in, pushed to the package
registry and pulled by digest, in serving's namespace under its restricted Pod Security. Its state
(checkpoints, the staged data, the run's context) lives on the namespace's training volume, so a
pod that is killed or replaced resumes from its last checkpoint. A data file on this machine goes
onto that volume once per digest, streamed into the pod's first container; a --data URI
(runs:/..., s3://...) is fetched by that container itself, so the data never passes through here.
The stage follows the pods' logs and ends with the Job; the result comes back as the train container's termination message. Started
again (the monitor, Jenkins' retry), the stage follows the Job of its run instead of making one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelyard.contracts import training_job, variables
from modelyard.contracts.digests import file_digest, tree_digest
from modelyard.contracts.environment import Environment, environments_dir, project_root
from modelyard.contracts.labels import ENVIRONMENT_LABEL
from modelyard.contracts.quantities import cpu_millis, memory_bytes
from modelyard.ml.data import source
from modelyard.ml.lineage import git_commit
from modelyard.ml.spec import load_model_spec
from modelyard.pipelines.docker_cli import engine_problem, stream
from modelyard.pipelines.errors import PipelineError
from modelyard.pipelines.pipeline.context import PipelineContext
from modelyard.pipelines.pipeline.packaging import push_image
from modelyard.pipelines.pipeline.training_image import ensure_image

Say = Callable[[str], None]
SOURCE_ROOT = "/opt/modelyard-src"  # on PYTHONPATH: the `modelyard` namespace package below it
CODE_PARTS = ("contracts", "infra", "ml", "pipelines")
LAST_LINES = 20
LOG_DRAIN_SECONDS = 30  # for `kubectl logs --follow` to end once its container has
# How long the data container waits for the stage to stream the data before it gives up.
DATA_WAIT_SECONDS = 900
# A container that cannot start for one of these reasons will not start by waiting.
_STUCK = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}


def job_name(run_id: str) -> str:
    """One Job per pipeline run: a DNS label, unique within the namespace."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_id.lower()).strip("-")
    return f"train-{slug}"[:63].rstrip("-")


class Kube:
    """kubectl in the environment's namespace (KUBECONFIG says which cluster)."""

    def __init__(self, namespace: str) -> None:
        from modelyard.pipelines.deploy_targets import kubectl

        self.tool, self.namespace = kubectl(), namespace

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.tool, "--namespace", self.namespace, *args], input=input, capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def json(self, *args: str) -> Any:
        done = self.run(*args, "-o", "json")
        if done.returncode != 0:
            if "NotFound" in done.stderr:
                return None
            raise PipelineError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def delete_pods(self, job: str) -> None:
        self.run("delete", "pods", "--selector", f"job-name={job}", "--wait=false")

    def pods(self, job: str) -> list[dict[str, Any]]:
        found = self.json("get", "pods", "--selector", f"job-name={job}") or {"items": []}
        return sorted(found["items"], key=lambda pod: pod["metadata"]["creationTimestamp"])


def train_on_kubernetes(ctx: PipelineContext, environment: Environment, say: Say) -> None:
    """Run the train stage as a Job and wait for it; its results land in the run's context."""
    namespace = environment.serving.namespace
    kube = Kube(namespace)
    # A URI the pods fetch themselves; a file on this machine, streamed onto the Job's volume.
    data = None if source.is_uri(ctx.data) else _Data(Path(ctx.data))
    _check_data(environment, ctx.data)
    name = job_name(ctx.run_id)
    if kube.json("get", "job", name) is None:
        _check_before_any_pod(kube, environment)
        image = _push_code_image(ctx, environment, say)
        manifest = job_manifest(ctx, environment, image, name, data.staged if data else None)
        made = kube.run("create", "-f", "-", input=json.dumps(manifest))
        if made.returncode != 0:
            raise PipelineError(f"the training Job {name} was refused: {made.stderr.strip()}")
        say(f"training Job {name} in namespace {namespace} (image {image})")
    else:
        say(f"following training Job {name}, started before in namespace {namespace}")
    result = _follow(kube, name, data, environment, say)
    ctx.training_run_id, ctx.metrics = result["training_run_id"], result["metrics"]


class _Data:
    """The data file a Job trains on, hashed at most once per stage run: when the Job is made,
    or when a pod of a followed Job waits for it (one whose data is on its volume never does)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = file_digest(self.path)
        return self._digest

    @property
    def staged(self) -> str:
        """Where the Job reads it: on its volume, named by the file's content digest."""
        return f"{training_job.STATE_MOUNT}/{training_job.DATASETS}/{self.digest}{self.path.suffix}"


def _check_data(environment: Environment, location: str) -> None:
    """Before any pod: a URI the pods will fetch is there, a path is one file."""
    if source.is_uri(location):
        size = source.check_readable(location, environment.mlflow)
        if size > memory_bytes(environment.training.kubernetes.storage):
            raise PipelineError(
                f"--data {location} is {size / 2**30:.1f} GiB, more than the Job's volume holds "
                f"(modelyard:training.kubernetes.storage in {environment.path} is "
                f"{environment.training.kubernetes.storage}): raise it and run `modelyard infra "
                f"up {environment.name}`"
            )
    elif not Path(location).is_file():
        raise PipelineError(
            f"{location}: training on Kubernetes streams one data file to the Job; give --data a "
            "file (Parquet or CSV), not a folder, or the URI of one (runs:/..., s3://...)"
        )
    if environment.training.kubernetes.workers > 1:
        from modelyard.ml.training.training_data import check_parquet

        check_parquet(location, environment.training.kubernetes.workers)


def _check_before_any_pod(kube: Kube, environment: Environment) -> None:
    """What would only fail once a pod exists, said before one does."""
    where = f"{environment.path}: modelyard:training.kubernetes"
    problem = engine_problem()
    if problem:
        raise PipelineError(
            f"{environment.path}: modelyard:pipeline.trainIn is `kubernetes`, which builds the "
            f"training image here, but {problem}. Start Docker on this agent."
        )
    claim = kube.json("get", "persistentvolumeclaim", training_job.STATE_CLAIM)
    if claim is None:
        raise PipelineError(
            f"namespace {kube.namespace} has no training volume ({training_job.STATE_CLAIM}): "
            f"run `modelyard infra up {environment.name}` once modelyard:pipeline.trainIn is "
            "`kubernetes`, so the stack makes it"
        )
    workers = environment.training.kubernetes.workers
    wanted = training_job.access_mode(workers)
    modes = claim["spec"].get("accessModes", [])
    if wanted not in modes:
        raise PipelineError(
            f"{where}.workers is {workers}, but the training volume in namespace "
            f"{kube.namespace} is {', '.join(modes)}, not "
            f"{wanted}: run `modelyard infra up {environment.name}` to make it anew"
        )
    requests = environment.training.kubernetes.resources.requests
    listed = kube.run("get", "nodes", "-o", "json")
    if listed.returncode != 0:
        return  # a deployer that may not list nodes: the scheduling timeout says it instead
    nodes = json.loads(listed.stdout)
    room = [
        (cpu_millis(node["status"]["allocatable"]["cpu"]),
         memory_bytes(node["status"]["allocatable"]["memory"]))
        for node in nodes["items"]
        if not node["spec"].get("unschedulable")
    ]  # fmt: skip
    cpu, memory = cpu_millis(requests.cpu), memory_bytes(requests.memory)
    if not any(free_cpu >= cpu and free_memory >= memory for free_cpu, free_memory in room):
        largest = max(room, default=(0, 0))
        raise PipelineError(
            f"{where}.resources.requests (cpu {requests.cpu}, memory {requests.memory}) fit no "
            f"node of the cluster: the largest schedulable one offers cpu {largest[0]}m, memory "
            f"{largest[1] // 2**20}Mi. Lower the requests, or add a larger node."
        )
    held = sum(min(free_cpu // cpu, free_memory // memory) for free_cpu, free_memory in room)
    if held < workers:
        raise PipelineError(
            f"{where}.workers is {workers}, but the cluster's schedulable nodes hold {held} pod(s) "
            f"of {where}.resources.requests (cpu {requests.cpu}, memory {requests.memory}): the "
            "workers train together, so all of them must run at once. Lower the requests or the "
            "workers, or add nodes."
        )


def _push_code_image(ctx: PipelineContext, environment: Environment, say: Say) -> str:
    """The training image with this checkout's code and environment files, pushed; by digest."""
    spec = load_model_spec(ctx.model)
    base = ensure_image(spec, say)
    registry = environment.pipeline.package.registry
    assert registry is not None  # Environment.cross_section_problems
    with tempfile.TemporaryDirectory(prefix="modelyard-train-code-") as folder:
        context = Path(folder)
        code_context(context, base)
        tag = f"{registry}/modelyard-train-{spec.name.lower()}:{tree_digest(context)[:12]}"
        code_built, tail = stream(["build", "-t", tag, str(context)], say, lambda _: False)
    if code_built != 0:
        raise PipelineError(f"the training image {tag} did not build:\n" + "\n".join(tail[-8:]))
    digest = push_image(environment, tag)
    say(f"pushed {tag} ({digest})")
    return f"{tag}@{digest}"


def code_context(context: Path, base: str) -> None:
    """The code image's build context: this checkout's code and environment files over `base`,
    readable by the unprivileged user the pods run as, whatever the checkout's modes (a umask
    of 077; the environment files hold only ciphertext)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", "tests")
    code = context / "modelyard"
    for part in CODE_PARTS:
        shutil.copytree(project_root() / part, code / part, ignore=ignore)
    shutil.copytree(environments_dir(), code / "environments", ignore=ignore)
    shutil.copy(project_root() / "Pulumi.yaml", code / "Pulumi.yaml")
    for path in [code, *code.rglob("*")]:
        runs = path.is_dir() or path.stat().st_mode & stat.S_IXUSR
        path.chmod(0o755 if runs else 0o644)
    (context / "Dockerfile").write_text(
        f"FROM {base}\n"
        f"COPY modelyard {SOURCE_ROOT}/modelyard\n"
        f"WORKDIR {SOURCE_ROOT}/modelyard\n"
        f"ENV PYTHONPATH={SOURCE_ROOT}\n"
    )


def job_manifest(
    ctx: PipelineContext, environment: Environment, image: str, name: str, staged: str | None
) -> dict[str, Any]:
    """The Job; `staged`: where the stage streams the data file onto the volume, or None when
    --data is a URI, which the pods' data container fetches onto it."""
    serving, settings = environment.serving, environment.training.kubernetes
    labels = {**training_job.LABELS, ENVIRONMENT_LABEL: environment.name}
    locked = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    state = {"name": "state", "mountPath": training_job.STATE_MOUNT}
    env = {
        variables.STATE_DIR: training_job.STATE_MOUNT,
        variables.PIPELINE_RUN_ID: ctx.run_id,
        variables.TRAINING_RESULT_FILE: training_job.RESULT_FILE,
        # The checkout is not in the image: the commit it was built from is.
        "GIT_COMMIT": ctx.git_commit or git_commit(project_root()),
    }
    if os.environ.get(variables.PIPELINE_REASON):
        env[variables.PIPELINE_REASON] = os.environ[variables.PIPELINE_REASON]
    workers = settings.workers
    # Several workers (ml/training/distributed.py): each pod's rank, its Job and its address, as
    # Kubernetes knows them.
    from_pod: dict[str, str] = {}
    if workers > 1:
        env[variables.TRAINING_WORKERS] = str(workers)
        env[variables.TRAINING_LISTEN] = f"$(POD_IP):{training_job.NETWORK_PORT}"
        from_pod = {
            "POD_IP": "status.podIP",
            variables.TRAINING_RANK: f"metadata.annotations['{training_job.INDEX_ANNOTATION}']",
            variables.TRAINING_JOB: "metadata.labels['batch.kubernetes.io/controller-uid']",
        }
    mounts: list[dict[str, Any]] = [state, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        {"name": "state", "persistentVolumeClaim": {"claimName": training_job.STATE_CLAIM}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
    ]
    if serving.mlflow_credentials is not None:
        env["HOME"] = training_job.HOME
        mounts.append({"name": "mlflow", "mountPath": f"{training_job.HOME}/.mlflow",
                       "readOnly": True})  # fmt: skip
        volumes.append({"name": "mlflow", "secret": {"secretName": training_job.MLFLOW_SECRET,
                                                     "defaultMode": 0o440}})  # fmt: skip
    # POD_IP first: TRAINING_LISTEN refers to it.
    container_env = [
        {"name": k, "valueFrom": {"fieldRef": {"fieldPath": path}}} for k, path in from_pod.items()
    ] + [{"name": k, "value": v} for k, v in env.items()]
    # OpenMP (LightGBM's threads) counts the node's cores, not the pod's share: as many threads
    # as the container's CPU limit (rounded up), or they spin against their own throttling and
    # against the other workers on the node.
    container_env.append({"name": "OMP_NUM_THREADS", "valueFrom": {"resourceFieldRef": {
        "containerName": "train", "resource": "limits.cpu", "divisor": "1"}}})  # fmt: skip
    if staged is None:
        # The data container fetches the URI onto the volume (ml/data/source.py: once per run,
        # whole or not at all), with MLflow's client and credentials: more memory than a wait.
        data_container: dict[str, Any] = {
            "args": ["data", "fetch", environment.name, "--data", ctx.data],
            "env": container_env,
            "volumeMounts": mounts,
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                          "limits": {"cpu": "1", "memory": "768Mi"}},
        }  # fmt: skip
    else:
        wait_for_data = (
            f'for _ in $(seq {DATA_WAIT_SECONDS}); do [ -f "{staged}" ] && exit 0; sleep 1; '
            f'done; echo "no data at {staged} after {DATA_WAIT_SECONDS}s: the stage streaming it '
            'stopped"; exit 1'
        )
        data_container = {
            "command": ["sh", "-c", wait_for_data],
            "volumeMounts": [state],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                          "limits": {"cpu": "500m", "memory": "128Mi"}},
        }  # fmt: skip
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": training_job.SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": training_job.UID,
            "runAsGroup": training_job.UID,
            "fsGroup": training_job.UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Puts the data on the volume, or waits until the stage has streamed it in through it.
        "initContainers": [
            {
                "name": "data",
                "image": image,
                **data_container,
                "securityContext": locked,
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "containers": [
            {
                "name": "train",
                "image": image,
                "args": [
                    "pipeline",
                    "stage",
                    "train",
                    environment.name,
                    "--data",
                    staged or ctx.data,
                    "--run-id",
                    ctx.run_id,
                    "--model",
                    ctx.model,
                ],
                "env": container_env,
                "resources": {
                    "requests": settings.resources.requests.model_dump(),
                    "limits": settings.resources.limits.model_dump(),
                },
                "securityContext": locked,
                "volumeMounts": mounts,
                # A container that fails without writing its result reports its last log lines.
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": volumes,
    }
    if serving.pull_credentials is not None:
        pod["imagePullSecrets"] = [{"name": training_job.PULL_SECRET}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": serving.namespace, "labels": labels},
        "spec": {
            "completions": workers,
            "parallelism": workers,
            "completionMode": "Indexed",  # the index is the worker's rank
            # A killed or evicted pod is replaced and resumes; a mistake the kit reported (bad
            # data, a gate not met) fails the Job at once: another try would say the same. A
            # worker lost mid-fit fails the others' fit too: a restart costs up to every pod.
            "backoffLimit": environment.pipeline.max_restarts * workers,
            "podFailurePolicy": {
                "rules": [
                    *[
                        {
                            "action": "FailJob",
                            "onExitCodes": {
                                "containerName": container,
                                "operator": "In",
                                "values": [training_job.USER_ERROR_EXIT],
                            },
                        }
                        for container in ("data", "train")
                    ],
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            # The stage removes the pods once it has their result; a Job whose stage never came
            # back goes with its pods after a day, so no finished pod pins the volume for long.
            "ttlSecondsAfterFinished": 24 * 3600,
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _follow(
    kube: Kube, name: str, data: _Data | None, environment: Environment, say: Say
) -> dict[str, Any]:
    """Stream the leading pod's logs (rank 0; every pod of a single-worker Job) until the Job
    ends; its result, or PipelineError with the failed pod's last lines."""
    followed: set[str] = set()  # leading pods whose logs were streamed
    started: set[str] = set()  # pods whose start was said
    staged = False  # the data went onto the volume in this stage run: every pod finds it there
    logs: threading.Thread | None = None  # streams the leading pod's log while the Job is watched
    timeout = environment.training.kubernetes.schedule_timeout_seconds
    while True:
        job = kube.json("get", "job", name)
        if job is None:
            raise PipelineError(f"the training Job {name} was deleted while it ran")
        conditions = {c["type"]: c for c in job["status"].get("conditions", [])
                      if c["status"] == "True"}  # fmt: skip
        pods = kube.pods(name)
        if logs and ("Complete" in conditions or "Failed" in conditions):
            logs.join(timeout=LOG_DRAIN_SECONDS)  # its last lines, before the verdict
        if "Complete" in conditions:
            return _keep_result(kube, job, pods)
        if "Failed" in conditions:
            lines = _last_lines(kube, pods)
            kube.delete_pods(name)
            raise PipelineError(
                f"the training Job {name} failed ({conditions['Failed'].get('message', '')}); "
                f"its last failed pod's last lines:\n{lines}"
            )
        for pod in pods:
            if pod["status"].get("phase") in ("Pending", "Running"):
                _unless_stuck(kube, name, pod, timeout, environment)
        waiting = [pod for pod in pods if "running" in _state(pod, "data", init=True)]
        if waiting and data is not None and not staged:
            staged = _stream_data(kube, waiting[0]["metadata"]["name"], data, say)
            continue
        for pod in pods:
            if pod["metadata"]["name"] not in started and _state(pod, "train"):
                started.add(pod["metadata"]["name"])
                if worker_rank(pod) > 0:
                    say(f"worker {worker_rank(pod)} started in {pod['metadata']['name']} on node "
                        f"{pod['spec'].get('nodeName', '?')}")  # fmt: skip
        leader = next((pod for pod in reversed(pods) if worker_rank(pod) == 0), None)
        if leader and leader["metadata"]["name"] not in followed and _state(leader, "train"):
            followed.add(leader["metadata"]["name"])
            if logs:
                logs.join(timeout=LOG_DRAIN_SECONDS)  # the pod before ended: so does its log
            logs = threading.Thread(target=_stream_logs, daemon=True,
                                    args=(kube, leader["metadata"]["name"], say))  # fmt: skip
            logs.start()
        time.sleep(1)


def worker_rank(pod: dict[str, Any]) -> int:
    """A training Job's pod's rank: its index in the Indexed Job (0, the leader, when alone)."""
    return int(pod["metadata"].get("annotations", {}).get(training_job.INDEX_ANNOTATION, 0))


def _state(pod: dict[str, Any], container: str, init: bool = False) -> dict[str, Any]:
    """The container's state (`running`, `terminated` or `waiting`); empty before it starts."""
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in pod["status"].get(key, []):
        if status["name"] == container:
            state: dict[str, Any] = status.get("state", {})
            return {} if "waiting" in state else state
    return {}


def _unless_stuck(
    kube: Kube, name: str, pod: dict[str, Any], timeout: int, environment: Environment
) -> None:
    """A pod the cluster cannot place or start, after `timeout` seconds: the Job is deleted (no
    pod ever trained) and the stage says why."""
    created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"])
    if (datetime.now(UTC) - created).total_seconds() < timeout:
        return
    why = ""
    for condition in pod["status"].get("conditions", []):
        if condition["type"] == "PodScheduled" and condition["status"] == "False":
            why = f"not scheduled: {condition.get('message', condition.get('reason', ''))}"
    statuses = [*pod["status"].get("initContainerStatuses", []),
                *pod["status"].get("containerStatuses", [])]  # fmt: skip
    for status in statuses:
        waiting = status.get("state", {}).get("waiting", {})
        if waiting.get("reason") in _STUCK:
            why = (
                f"{status['name']} cannot start: {waiting['reason']}: {waiting.get('message', '')}"
            )
    if why:
        kube.run("delete", "job", name, "--wait=false")
        raise PipelineError(
            f"the training Job {name} did not start within {timeout}s "
            f"(modelyard:training.kubernetes.scheduleTimeoutSeconds in {environment.path}); "
            f"its pod was {why}. The Job is deleted; nothing was trained."
        )


def _stream_data(kube: Kube, pod: str, data: _Data, say: Say) -> bool:
    """The data file into the waiting container, checked against its digest on arrival; whether
    it arrived."""
    staged, digest = data.staged, data.digest
    script = (
        f'set -e; mkdir -p "$(dirname {staged})"; cat > "{staged}.part"; '
        f'echo "{digest}  {staged}.part" | sha256sum -c - >/dev/null; mv "{staged}.part" "{staged}"'
    )
    size = data.path.stat().st_size / 2**20
    say(f"streaming {data.path} ({size:.1f} MiB) onto the Job's volume")
    with data.path.open("rb") as handle:
        done = subprocess.run(
            [kube.tool, "--namespace", kube.namespace, "exec", "-i", pod, "-c", "data", "--",
             "sh", "-c", script],
            stdin=handle, capture_output=True, timeout=1800, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        # The container may have found the file itself meanwhile (a rerun); the Job goes on.
        reason = done.stderr.decode(errors="replace").strip()
        say(f"streaming the data into {pod} did not finish ({reason}); checking the Job again")
    return done.returncode == 0


def _stream_logs(kube: Kube, pod: str, say: Say) -> None:
    say(f"--- pod {pod} ---")
    process = subprocess.Popen(
        [kube.tool, "--namespace", kube.namespace, "logs", "--follow", pod, "-c", "train"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    for line in process.stdout:
        say(line.rstrip("\n"))
    process.wait()


def _last_lines(kube: Kube, pods: list[dict[str, Any]]) -> str:
    if not pods:
        return "(its pods are gone: the output of the stage that followed it has their logs)"
    failed = [pod for pod in pods
              if _state(pod, "train").get("terminated", {}).get("exitCode", 0) != 0
              or _state(pod, "data", init=True).get("terminated", {}).get("exitCode", 0) != 0]  # fmt: skip
    pod = (failed or pods)[-1]
    # The data container's, when the train container never started.
    container = "train" if _state(pod, "train") else "data"
    done = kube.run("logs", pod["metadata"]["name"], "-c", container, f"--tail={LAST_LINES}")
    return (done.stdout or done.stderr).rstrip()


def _keep_result(kube: Kube, job: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    """The finished Job's result, kept on the Job; then its pods go, so none pins the volume."""
    name = job["metadata"]["name"]
    kept = job["metadata"].get("annotations", {}).get(training_job.RESULT_ANNOTATION)
    result: dict[str, Any] = json.loads(kept) if kept else _reported(pods, name)
    if not kept:
        noted = kube.run(
            "annotate", "job", name, f"{training_job.RESULT_ANNOTATION}={json.dumps(result)}"
        )
        if noted.returncode != 0:
            raise PipelineError(f"could not note the result on Job {name}: {noted.stderr.strip()}")
    kube.delete_pods(name)
    return result


def _reported(pods: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """What the train container that succeeded wrote as its termination message."""
    for pod in reversed(pods):
        for status in pod["status"].get("containerStatuses", []):
            ended = status.get("state", {}).get("terminated", {})
            if status["name"] == "train" and ended.get("exitCode") == 0:
                result: dict[str, Any] = json.loads(ended.get("message") or "{}")
                if "training_run_id" in result:
                    return result
    raise PipelineError(f"the training Job {name} succeeded but no pod reported its result")
