"""The live samples of an environment's serving pods, copied where the local servers keep theirs
(`.modelyard/serving/ENV/pods/POD/`; a model of `modelyard:models`:
`.modelyard/serving-models/ENV/MODEL/pods/POD/`), so the drift check and the promotion's maxDrift
rule read a Kubernetes environment's traffic the way they read a local one's."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

from modelyard.contracts.environment import Environment


def pods_folder(environment: str, extra: str | None = None) -> Path:
    """Where the samples of a model's pods are copied (extra None: training.model's)."""
    from modelyard.pipelines.deploy import serving_dir

    return serving_dir(environment, extra) / "pods"


def refresh_pod_samples(environment: Environment, extra: str | None = None) -> int:
    """Replace the copies with what the running pods of a served model (extra None:
    training.model) hold now; files copied."""
    model = extra or environment.served_model
    dest = pods_folder(environment.name, extra)
    return copy_pod_samples(environment.serving.namespace, dest, model)


def copy_pod_samples(namespace: str, dest: Path, model: str | None = None) -> int:
    """The live-sample files (samples-*.jsonl) of every running serving pod (of `model`, or of
    every model), into dest/POD/."""
    from modelyard.pipelines.deploy_targets import kubectl, running_serving_pods

    pods = running_serving_pods(namespace, model)
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
