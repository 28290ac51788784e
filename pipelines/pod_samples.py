"""The live samples of an environment's serving pods, copied where the local servers keep theirs
(`.modelyard/serving/ENV/pods/POD/`), so the drift check and the promotion's maxDrift rule read a
Kubernetes environment's traffic the way they read a local one's."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

from modelyard.contracts.environment import Environment
from modelyard.contracts.labels import SERVING_SELECTOR
from modelyard.contracts.state import serving_dir
from modelyard.pipelines.errors import PipelineError


def pods_folder(environment: str) -> Path:
    return serving_dir(environment) / "pods"


def refresh_pod_samples(environment: Environment) -> int:
    """Replace the copies with what the environment's running pods hold now; files copied."""
    return copy_pod_samples(environment.serving.namespace, pods_folder(environment.name))


def copy_pod_samples(namespace: str, dest: Path) -> int:
    """The live-sample files (samples-*.jsonl) of every running serving pod, into dest/POD/."""
    from modelyard.pipelines.deploy_targets import kubectl

    listed = subprocess.run(
        [kubectl(), "get", "pods", "-n", namespace, "-l", SERVING_SELECTOR,
         "--field-selector=status.phase=Running", "-o", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        raise PipelineError(
            f"cannot read the serving pods of namespace {namespace}: {listed.stderr.strip()} "
            "(KUBECONFIG names the environment's cluster)"
        )
    shutil.rmtree(dest, ignore_errors=True)
    copied = 0
    for pod in json.loads(listed.stdout)["items"]:
        name = pod["metadata"]["name"]
        archive = subprocess.run(
            [kubectl(), "exec", "-n", namespace, name, "--", "sh", "-c",
             "cd /tmp && find . -name 'samples-*.jsonl' | tar -cf - -T -"],
            capture_output=True, check=False,
        ).stdout  # fmt: skip
        if not archive:
            continue
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            tar.extractall(dest / name, members=members, filter="data")
            copied += len(members)
    return copied
