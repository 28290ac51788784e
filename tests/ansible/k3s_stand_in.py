#!/usr/bin/python3
"""Stand-in for the k3s binary, which cannot be downloaded on the test machines.

It is the small local artifact the k3s_node role installs after checking its sha256. It keeps
only the contract the role and its unit rely on: tell systemd it is ready (Type=notify), and as a
server write /etc/rancher/k3s/k3s.yaml pointing at https://127.0.0.1:6443 (mode 0600, from
`write-kubeconfig-mode`), then keep running. It serves no Kubernetes API.
"""

import os
import socket
import sys
import time
from pathlib import Path

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: c3RhbmQtaW4tY2E=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    client-certificate-data: c3RhbmQtaW4tY2VydA==
    client-key-data: c3RhbmQtaW4ta2V5
"""


def main() -> None:
    if sys.argv[1:2] == ["server"]:
        path = Path("/etc/rancher/k3s/k3s.yaml")
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(KUBECONFIG)
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"READY=1", "\0" + address[1:] if address.startswith("@") else address)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
