"""The single-node Kubernetes `modelyard cluster up|down|status` runs on this machine.

Upstream Kubernetes and etcd built by `make cluster-tools` (tools/build-cluster.sh), containerd, runc
and the CNI plugins from Debian, as plain processes this package starts and stops: no image is pulled,
Docker's own containerd is left alone. Staging and production are namespaces of it in
`modelyard demo --cluster` and the cluster tests.
"""
