"""The command line of each program of the cluster, in the order `up` starts them."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.infra.local_cluster.binaries import Binaries
from modelyard.infra.local_cluster.settings import (
    API_PORT,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    NODE_NAME,
    POD_SUBNET,
    SERVICE_SUBNET,
    ClusterPaths,
)


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    # An HTTP(S) endpoint on loopback that answers 200 once the program is up.
    health_url: str


def components(paths: ClusterPaths, binaries: Binaries, node_ip: str) -> list[Component]:
    pki = paths.pki
    conf = paths.kubeconfigs
    etcd_url = f"http://127.0.0.1:{ETCD_CLIENT_PORT}"

    def kube(name: str, *flags: str) -> list[str]:
        return [str(binaries.kube(name)), *flags]

    # Controllers and the scheduler authenticate the API server's health probes with their own
    # kubeconfigs; nothing listens beyond loopback except the API server and the kubelet.
    def delegated(kubeconfig: str) -> list[str]:
        return [
            f"--kubeconfig={conf / kubeconfig}",
            f"--authentication-kubeconfig={conf / kubeconfig}",
            f"--authorization-kubeconfig={conf / kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]

    return [
        Component(
            "containerd",
            [str(binaries.debian["containerd"]), "--config", str(paths.config / "containerd.toml")],
            "",  # answers on its socket: `up` waits for that instead
        ),
        Component(
            "etcd",
            [
                str(binaries.etcd),
                f"--name={NODE_NAME}",
                f"--data-dir={paths.etcd_data}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
                f"--initial-cluster={NODE_NAME}=http://127.0.0.1:{ETCD_PEER_PORT}",
                "--listen-metrics-urls=http://127.0.0.1:2381",
            ],
            "http://127.0.0.1:2381/health",
        ),
        Component(
            "kube-apiserver",
            kube(
                "kube-apiserver",
                f"--etcd-servers={etcd_url}",
                f"--advertise-address={node_ip}",
                "--bind-address=0.0.0.0",
                f"--secure-port={API_PORT}",
                f"--service-cluster-ip-range={SERVICE_SUBNET}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=false",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-username-headers=X-Remote-User",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            ),
            f"https://127.0.0.1:{API_PORT}/readyz",
        ),
        Component(
            "kube-controller-manager",
            kube(
                "kube-controller-manager",
                *delegated("controller-manager.conf"),
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=true",
                f"--cluster-cidr={POD_SUBNET}",
                f"--service-cluster-ip-range={SERVICE_SUBNET}",
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            ),
            "https://127.0.0.1:10257/healthz",
        ),
        Component(
            "kube-scheduler",
            kube("kube-scheduler", *delegated("scheduler.conf")),
            "https://127.0.0.1:10259/healthz",
        ),
        Component(
            "kubelet",
            kube(
                "kubelet",
                f"--config={paths.config / 'kubelet.yaml'}",
                f"--kubeconfig={conf / 'kubelet.conf'}",
                f"--root-dir={paths.kubelet_root}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={node_ip}",
            ),
            "http://127.0.0.1:10248/healthz",
        ),
        Component(
            "kube-proxy",
            kube("kube-proxy", f"--config={paths.config / 'kube-proxy.yaml'}"),
            "http://127.0.0.1:10256/healthz",
        ),
    ]
