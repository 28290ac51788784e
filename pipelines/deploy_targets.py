"""Where the deploy stages deploy: as the environment's `serving.platform` says.

- `kubernetes`: `pulumi up` of the environment's stack (Automation API: one Deployment and
  Service per served model), then `kubectl rollout status` of the model's serving Deployments
  (the provider's own wait can report an update done before the Deployment controller has seen
  it); a canary is then stepped under analysis (pipelines/progressive.py); the smoke test goes
  through the model's Service (a `kubectl port-forward` to it on 127.0.0.1, as a person would
  reach a cluster from outside);
- `docker`: `pulumi up` of the stack, which replaces the model's serving container (one per
  served model, each on its own port);
- `process`: the embedded default, a local server process (pipelines/deploy.py).
The address each deploy leaves in the pipeline's context is a URL, or `k8s-service://NS/NAME`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from modelyard.contracts.environment import load_environment
from modelyard.contracts.labels import serving_selector
from modelyard.infra.pinned_tools import pinned_versions, tools_dir
from modelyard.pipelines.errors import PipelineError

SERVICE_SCHEME = "k8s-service://"
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class Deployed:
    address: str  # a URL, or k8s-service://NAMESPACE/NAME
    message: str


def deploy_environment(
    target: str, say: Callable[[str], None], model: str | None = None
) -> Deployed:
    """Serve `model` (default: training.model) where `serving.platform` says."""
    from modelyard.pipelines.deploy import deploy, other_model

    environment = load_environment(target)
    platform = environment.serving.platform
    extra = other_model(environment, model)  # one message when it is not served here
    if platform == "process":
        local = deploy(target, model=extra)
        return Deployed(local.url, local.message)
    model = extra or environment.served_model
    if platform == "docker":
        from modelyard.infra.automation import run

        result = run(target, "up", say)
        version = result.outputs["servingVersions"].get(model)
        return Deployed(
            str(result.outputs["servingUrls"][model]),
            f"pulumi up ({_summary(result.changes)}), {model} version {version}",
        )
    from modelyard.pipelines.progressive import canary_in_progress, run_canary

    namespace, service, message = _kubernetes_up(target, model, say)
    if canary_in_progress(load_environment(target), model):
        say(f"{target}: {message}")
        message = run_canary(
            target, model, namespace, lambda env: _kubernetes_up(env, model, say), say
        )
    return Deployed(f"{SERVICE_SCHEME}{namespace}/{service}", message)


def _kubernetes_up(target: str, model: str, say: Callable[[str], None]) -> tuple[str, str, str]:
    """`pulumi up` of the stack, then `model`'s rollout awaited: (namespace, its Service, what
    happened). The stack holds every model the environment serves; the others' objects are
    unchanged unless their own release keys changed."""
    from modelyard.infra.automation import run

    result = run(target, "up", say)
    version = result.outputs["servingVersions"].get(model)
    namespace = str(result.outputs["servingNamespace"])
    service = result.outputs["servingServices"][model]
    if version is not None:
        _await_rollout(namespace, target, model)
    return (
        namespace,
        str(service),
        (
            f"pulumi up ({_summary(result.changes)}): rollout of {model} version {version} ready "
            f"behind Service {namespace}/{service}"
        ),
    )


def _summary(changes: dict[str, int]) -> str:
    changed = {op: n for op, n in changes.items() if n and op != "unchanged"}
    return ", ".join(f"{n} {op}" for op, n in changed.items()) or "no changes"


def _await_rollout(
    namespace: str, target: str, model: str | None = None, timeout: str = "300s"
) -> None:
    """Wait until the serving Deployments of the namespace (of `model`'s, or of every model)
    run their current template, ready."""
    waited = subprocess.run(
        [kubectl(), "rollout", "status", "deployment", "--namespace", namespace,
         "--selector", serving_selector(model), f"--timeout={timeout}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if waited.returncode != 0:
        raise PipelineError(
            f"{target}: the serving rollout in namespace {namespace} did not finish within "
            f"{timeout}: {(waited.stderr or waited.stdout).strip()}; see `kubectl get pods "
            f"--namespace {namespace}`"
        )


def await_serving(address: str) -> None:
    """For a Service address: wait until its namespace's serving pods are all ready again (one
    killed or evicted since the deploy is being replaced), so a port-forward reaches a ready pod."""
    if address.startswith(SERVICE_SCHEME):
        namespace = address.removeprefix(SERVICE_SCHEME).partition("/")[0]
        _await_rollout(namespace, address)


@contextmanager
def reachable(address: str, timeout: float = 60.0) -> Iterator[str]:
    """A URL on this machine that answers for `address` while the block runs."""
    if not address.startswith(SERVICE_SCHEME):
        yield address
        return
    namespace, _, service = address.removeprefix(SERVICE_SCHEME).partition("/")
    with forwarded(namespace, f"service/{service}", 80, timeout) as url:
        yield url


@contextmanager
def forwarded(namespace: str, resource: str, port: int, timeout: float = 60.0) -> Iterator[str]:
    """`kubectl port-forward` of `resource` (service/NAME, pod/NAME) to a free port of
    127.0.0.1 while the block runs; its URL."""
    command = [kubectl(), "port-forward", "--address", "127.0.0.1", "--namespace", namespace,
               resource, f":{port}"]  # fmt: skip
    forward = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert forward.stdout is not None and forward.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = forward.stdout.readline()
            found = _FORWARDING.search(line)
            if found:
                yield f"http://127.0.0.1:{found[1]}"
                return
            if not line and forward.poll() is not None:
                break
        problem = forward.stderr.read().strip() if forward.poll() is not None else "no answer"
        raise PipelineError(
            f"could not reach {resource} in namespace {namespace} with `kubectl port-forward` "
            f"({problem}): check KUBECONFIG points at the environment's cluster"
        )
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def kubectl() -> str:
    """kubectl on PATH, else the one `make cluster-tools` built; KUBECONFIG says which cluster."""
    found = shutil.which("kubectl")
    if found:
        return found
    built = (
        tools_dir() / f"kubernetes-{pinned_versions()['KUBERNETES_VERSION']}" / "bin" / "kubectl"
    )
    if built.is_file():
        return str(built)
    raise PipelineError(
        "no kubectl on PATH to reach the environment's Service: install one, or run "
        "`make cluster-tools`, which builds the pinned one"
    )


def running_serving_pods(namespace: str, model: str | None = None) -> list[dict[str, Any]]:
    """The serving pods (of `model`, or of every model) of `namespace` in phase Running (a
    terminating one included: its `metadata.deletionTimestamp` says so), as `kubectl get pods
    -o json` lists them."""
    listed = subprocess.run(
        [kubectl(), "get", "pods", "--namespace", namespace, "--selector", serving_selector(model),
         "--field-selector=status.phase=Running", "--output", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        raise PipelineError(
            f"cannot read the serving pods of namespace {namespace}: {listed.stderr.strip()} "
            "(KUBECONFIG names the environment's cluster)"
        )
    pods: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return pods
