"""The live samples of an environment's serving pods, copied where the local servers keep theirs
(`.modelyard/serving/ENV/pods/POD/`), so the drift check and the promotion's maxDrift rule read a
Kubernetes environment's traffic the way they read a local one's."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

from modelyard.contracts.environment import Environment
from modelyard.contracts.state import serving_dir


def pods_folder(environment: str) -> Path:
    return serving_dir(environment) / "pods"


def refresh_pod_samples(environment: Environment) -> int:
    """Replace the copies with what the environment's running pods hold now; files copied."""
    return copy_pod_samples(environment.serving.namespace, pods_folder(environment.name))


def copy_pod_samples(namespace: str, dest: Path) -> int:
    """The live-sample files (samples-*.jsonl) of every running serving pod, into dest/POD/."""
    from modelyard.pipelines.deploy_targets import kubectl, running_serving_pods

    pods = running_serving_pods(namespace)
    shutil.rmtree(dest, ignore_errors=True)
    copied = 0
    for pod in pods:
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
