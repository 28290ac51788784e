"""Users inside the cluster: a pod that keeps sending scoring requests to an environment's Service
and counts what comes back (the role Flagger's load tester plays during a canary).

It runs where real callers run, behind the Service's cluster address (kube-proxy picks a pod per
connection), so a rollout's pod changes are seen as callers see them; a port-forward from outside
would pin one pod. The demo sends production its traffic with it; the cluster tests count failed
requests with it. It prints a JSON summary every second: `summary()` reads the last one.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from modelyard.contracts import variables
from modelyard.contracts.serving_options import AUTH_SECRET_SUFFIX
from modelyard.pipelines.errors import PipelineError

# Stdlib only: it runs in the serving image with its read-only root. Keep-alive connections,
# reopened when the server answers `Connection: close` (a draining pod does).
_CLIENT = """
import http.client, json, os, sys, time, collections
host, seconds, rows = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
token = os.environ.get(sys.argv[4])  # the variable's name; its value bound from a Secret
auth = {"Authorization": "Bearer " + token} if token else {}
bodies = [json.dumps({"dataframe_records": [row]}).encode() for row in rows]
statuses, versions, failures = collections.Counter(), collections.Counter(), []
deadline, shown, sent, connection = time.time() + seconds, 0.0, 0, None
def show():
    print(json.dumps({"sent": sent, "statuses": statuses, "versions": versions,
                      "failures": failures[:20], "failed": len(failures)}), flush=True)
while time.time() < deadline:
    try:
        if connection is None:
            connection = http.client.HTTPConnection(host, 80, timeout=10)
        connection.request("POST", "/invocations", body=bodies[sent % len(bodies)],
                           headers={"Content-Type": "application/json", **auth})
        response = connection.getresponse()
        payload = response.read()
        statuses[str(response.status)] += 1
        if response.status == 200:
            versions[str(json.loads(payload)["model_version"])] += 1
        else:
            failures.append(f"{response.status}: {payload[:200]!r}")
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
            connection = None
    except (OSError, http.client.HTTPException) as exc:
        statuses["no answer"] += 1
        failures.append(f"{type(exc).__name__}: {exc}")
        if connection is not None:
            connection.close()
        connection = None
    sent += 1
    if time.time() - shown >= 1:
        show()
        shown = time.time()
    time.sleep(0.02)
show()
"""


@dataclass(frozen=True)
class LoadPod:
    kubectl: str
    namespace: str
    name: str

    def summary(self) -> dict[str, Any]:
        """What the pod counted so far: requests sent, answers by status and by model version,
        the first failures."""
        logs = subprocess.run(
            [self.kubectl, "logs", "--namespace", self.namespace, self.name, "--tail", "5"],
            capture_output=True, text=True, check=False,
        ).stdout.splitlines()  # fmt: skip
        counted = [line for line in logs if line.startswith("{")]
        return json.loads(counted[-1]) if counted else {"sent": 0, "failed": 0, "versions": {}}

    def stop(self) -> dict[str, Any]:
        last = self.summary()
        subprocess.run(
            [self.kubectl, "delete", "pod", "--namespace", self.namespace, self.name,
             "--grace-period=0", "--wait=false"],
            capture_output=True, check=False,
        )  # fmt: skip
        return last


def start_load(
    namespace: str, service: str, image: str, rows: list[dict[str, Any]], seconds: float = 1800,
    token: str | None = None, node: str | None = None,
) -> LoadPod:  # fmt: skip
    """Start a load pod against `service` (with the image and the image pull secret the serving
    pods use) and wait until it sends; stop() ends it. When the model asks for bearer tokens,
    the pod sends the one named `token` (default: the first) from the serving pods' own Secret,
    bound as a variable: its value is in no spec, log or command line. `node` pins the pod to one
    node (a control-plane node too), e.g. one that a fault being measured leaves alone."""
    from modelyard.pipelines.deploy_targets import kubectl

    tool = kubectl()
    secrets = json.loads(subprocess.run(
        [tool, "get", "secrets", "--namespace", namespace, "--output", "json"],
        capture_output=True, text=True, check=True,
    ).stdout)["items"]  # fmt: skip
    pulls = [
        s["metadata"]["name"] for s in secrets if s["type"] == "kubernetes.io/dockerconfigjson"
    ]
    tokens = {s["metadata"]["name"]: sorted(s.get("data") or {}) for s in secrets}.get(
        service + AUTH_SECRET_SUFFIX, []
    )
    scoring = [key for key in tokens if key.startswith(variables.AUTH_SCORING_PREFIX)]
    if token is not None:
        scoring = [key for key in scoring if key == variables.AUTH_SCORING_PREFIX + token]
        if not scoring:
            raise PipelineError(f"{namespace}/{service} has no scoring token named {token!r}")
    bound = [{"name": variables.SERVING_TOKEN, "valueFrom": {"secretKeyRef": {
        "name": service + AUTH_SECRET_SUFFIX, "key": scoring[0]}}}] if scoring else []  # fmt: skip
    address = json.loads(subprocess.run(
        [tool, "get", "service", "--namespace", namespace, service, "--output", "json"],
        capture_output=True, text=True, check=True,
    ).stdout)["spec"]["clusterIP"]  # fmt: skip
    name = f"load-{int(time.time() * 1000) % 10**9}"
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                  "readOnlyRootFilesystem": True}  # fmt: skip
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "modelyard-load"},
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "load",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": [
                        "python3",
                        "-c",
                        _CLIENT,
                        address,
                        str(seconds),
                        json.dumps(rows),
                        variables.SERVING_TOKEN,
                    ],
                    "env": bound,
                    "securityContext": restricted,
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "500m", "memory": "128Mi"},
                    },
                }
            ],
        },
    }
    if pulls:
        pod["spec"]["imagePullSecrets"] = [{"name": name} for name in pulls]
    if node is not None:
        pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
        pod["spec"]["tolerations"] = [{"key": "node-role.kubernetes.io/control-plane",
                                       "operator": "Exists", "effect": "NoSchedule"}]  # fmt: skip
    created = subprocess.run([tool, "apply", "-f", "-"], input=json.dumps(pod),
                             capture_output=True, text=True, check=False)  # fmt: skip
    if created.returncode != 0:
        raise PipelineError(f"could not start a load pod in {namespace}: {created.stderr.strip()}")
    load = LoadPod(tool, namespace, name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if load.summary().get("sent"):
            return load
        time.sleep(1)
    load.stop()
    raise PipelineError(f"the load pod {namespace}/{name} sent nothing within 120 s")
