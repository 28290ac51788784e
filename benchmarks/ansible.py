"""First and second run of the full site playbook against the test hosts (issue 7).

Three fresh systemd hosts in Docker (tests/ansible/lab.py: `platform` with base, node_exporter,
docker_host, jenkins_agent; `cp` and `w1` with base, node_exporter, kubernetes_node as a
control plane and a worker), configured by `modelyard configure` twice. The first run installs and configures everything (packages come
from apt's cache in the test image, so the mirror's speed is not measured); the second finds
nothing to change, so it measures the cost of checking: fact gathering, SSH round trips and each
task's probe. The load average is printed with it: on a shared machine wall time also measures
the neighbours. Needs Docker and `make cluster-tools`; says so and returns otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from modelyard.infra.local_cluster.binaries import Binaries, ClusterToolsMissing
from modelyard.infra.local_cluster.node_containers import build_node_image

from tests.ansible.lab import REPO, build_host_image, docker, open_lab


def main() -> None:
    if shutil.which("docker") is None or docker("info", check=False).returncode != 0:
        print("skipped: no Docker engine answers (the benchmark runs the roles in containers)")
        return
    try:
        binaries = Binaries.find()
    except ClusterToolsMissing as exc:
        print(f"skipped: {exc}")
        return
    subprocess.run([str(REPO / "infra/images/base/build-base-image.sh")], check=True)
    image = build_host_image()
    node_image = build_node_image()
    try:
        with tempfile.TemporaryDirectory(prefix="modelyard-bench-ansible-") as work:
            print(f"load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            with open_lab(image, node_image, binaries, Path(work)) as lab:
                first = lab.cli()
                if first.rc:
                    print(f"first run failed:\n{first.output[-3000:]}")
                    return
                second = lab.library()
            print(f"{'run':<8} {'seconds':>8} {'changed tasks':>14}  result")
            print(
                f"{'first':<8} {first.seconds:>8.1f} {len(first.changed_tasks):>14}  rc={first.rc}"
            )
            print(
                f"{'second':<8} {second.seconds:>8.1f} {len(second.changed_tasks):>14}  "
                f"rc={second.rc} ({'idempotent' if not second.changed_tasks else 'NOT idempotent'})"
            )
            print(f"second/first: {second.seconds / first.seconds:.2f}")
    finally:
        docker("rmi", image, check=False)
