"""Volumes for the local cluster: a StorageClass with no provisioner and a pool of local
PersistentVolumes made at `cluster up`, as a platform team pre-makes static volumes. A claim of
the class binds to a free one when its first pod is scheduled. The folders are the cluster's own
(this machine's, under the cluster folder) and open to every uid: a pod's `fsGroup` does not
reach a local volume. A volume whose claim was deleted is emptied and offered again at the next
`cluster up`.

Every node mounts the same folder of this machine (node_containers.py), as every node of a site
mounts one NFS export: a volume may be used from any node at once (ReadWriteMany), which the pods
of a training over several workers need."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from modelyard.contracts.environment import ConfigError
from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.settings import LOCAL_STORAGE_CLASS, ClusterPaths

POOL = 6  # the claims one machine's tests and demos make at once, with room
SIZE = "20Gi"  # what each volume says it holds (a local volume is not enforced)


def manifests(folder: str, nodes: list[str]) -> list[dict[str, Any]]:
    """The class and the pool: volume N in `folder`/N as the nodes see it, usable on `nodes`."""
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": LOCAL_STORAGE_CLASS},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Retain",
        }
    ]
    for number in range(POOL):
        objects.append({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{LOCAL_STORAGE_CLASS}-{number}"},
            "spec": {
                "capacity": {"storage": SIZE},
                "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": LOCAL_STORAGE_CLASS,
                "local": {"path": f"{folder}/{number}"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": nodes},
                ]}]}},
            },
        })  # fmt: skip
    return objects


def ensure_volumes(
    paths: ClusterPaths, binaries: Binaries, seen_at: str, nodes: tuple[str, ...]
) -> None:
    """The class and the pool, made once (applying again changes nothing). `seen_at`: where the
    `nodes` see this machine's `paths.volumes`."""
    for number in range(POOL):
        folder = paths.volumes / str(number)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o1777)  # any pod's uid writes; the sticky bit keeps files their owner's
    kubectl = [str(binaries.kubectl), f"--kubeconfig={paths.admin_kubeconfig}"]
    listing = {"apiVersion": "v1", "kind": "List",
               "items": manifests(seen_at, list(nodes))}  # fmt: skip
    applied = subprocess.run(
        [*kubectl, "apply", "-f", "-"],
        input=json.dumps(listing), capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    if applied.returncode != 0:
        raise ConfigError(
            f"the cluster's {LOCAL_STORAGE_CLASS} volumes could not be made: "
            f"{applied.stderr.strip()}. `modelyard cluster down` and `up` again; if it says the "
            "same, `modelyard cluster down --destroy` makes the cluster anew (its data is lost)"
        )
    found = subprocess.run(
        [*kubectl, "get", "persistentvolumes", "-o", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    for volume in json.loads(found.stdout)["items"]:
        if volume["spec"].get("storageClassName") != LOCAL_STORAGE_CLASS:
            continue
        if volume["status"].get("phase") != "Released":
            continue
        # The claim is gone (its namespace destroyed): nothing of it is left for the next one.
        folder = paths.volumes / volume["metadata"]["name"].rsplit("-", 1)[1]
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        subprocess.run(
            [*kubectl, "patch", "persistentvolume", volume["metadata"]["name"], "--type=json",
             '--patch=[{"op": "remove", "path": "/spec/claimRef"}]'],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
