"""The Kubernetes `modelyard cluster up|down|status` runs on this machine.

Nodes in systemd containers, made Kubernetes nodes by Ansible's kubernetes_node role as a site's
hosts are (nodes.py), from upstream Kubernetes and etcd built by `make cluster-tools`
(tools/build-cluster.sh): no image is pulled. Staging and production are namespaces of it in
`modelyard demo --cluster` and the cluster tests.
"""
