"""Hosts in containers, reached over SSH on 127.0.0.1 as Ansible reaches a site's machines: the
network they share (fixed addresses, for the routes between nodes), starting one with the admin's
key installed, and waiting for its sshd. The local cluster's nodes and the Ansible tests' hosts
are made with these."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from modelyard.contracts.environment import ConfigError

SSH_TIMEOUT = 90.0
# Containers get new host keys each time they are made.
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]


def create_network(name: str, first_two_octets: str) -> str:
    """The Docker network `name` on the first free FIRST_TWO_OCTETS.N.0/24; returns its prefix
    (the first three octets)."""
    subprocess.run(["docker", "network", "rm", name], capture_output=True, check=False)
    made = None
    for third in range(256):
        prefix = f"{first_two_octets}.{third}"
        made = subprocess.run(["docker", "network", "create", "--subnet", f"{prefix}.0/24", name],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if made.returncode == 0:
            return prefix
    raise ConfigError(
        f"no free {first_two_octets}.N.0/24 for the network {name}: {made and made.stderr.strip()}"
    )


def start_host(
    image: str, container: str, hostname: str, network: str, public_key: str, flags: list[str]
) -> int:
    """Run the host container, install the admin's public key (what cloud-init does on a fresh
    machine) and return the port its sshd is published on."""
    subprocess.run(
        ["docker", "run", "-d", "--name", container, "--hostname", hostname, "--network", network,
         "--network-alias", hostname, "-p", "127.0.0.1::22", *flags, image],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    subprocess.run(
        ["docker", "exec", container, "bash", "-c",
         "install -d -m 0700 -o admin -g admin ~admin/.ssh && "
         f"echo '{public_key}' > ~admin/.ssh/authorized_keys && "
         "chown admin:admin ~admin/.ssh/authorized_keys && chmod 0600 ~admin/.ssh/authorized_keys"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return published_port(container)


def published_port(container: str, port: str = "22/tcp") -> int:
    """The port on 127.0.0.1 Docker published the container's `port` on (sshd by default; a
    port Docker picks is new at each start)."""
    mapping = subprocess.run(["docker", "port", container, port], check=True,
                             capture_output=True, text=True).stdout.split()[0]  # fmt: skip
    return int(mapping.rsplit(":", 1)[1])


def ssh_command(port: int, key: Path, user: str = "admin") -> list[str]:
    """`ssh` to USER on the host whose sshd is published on `port`, with `key`, never prompting;
    the command to run follows."""
    return ["ssh", "-p", str(port), *SSH_OPTIONS, "-o", "ConnectTimeout=5", "-o", "BatchMode=yes",
            "-i", str(key), f"{user}@127.0.0.1"]  # fmt: skip


def wait_for_ssh(name: str, port: int, key: Path) -> None:
    deadline = time.monotonic() + SSH_TIMEOUT
    while time.monotonic() < deadline:
        probe = subprocess.run([*ssh_command(port, key), "true"], capture_output=True,
                               check=False, timeout=30)  # fmt: skip
        if probe.returncode == 0:
            return
        time.sleep(1)
    raise ConfigError(f"{name}: sshd did not answer within {SSH_TIMEOUT:.0f} s")
