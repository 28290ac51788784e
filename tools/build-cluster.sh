#!/usr/bin/env bash
# `make cluster-tools`: builds the local cluster's programs pinned in tools/versions.env from published
# Go modules, once per machine, into the same cache as `make tools` (tools/lib.sh):
#   <cache>/kubernetes-<version>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,
#                                     kube-proxy,kubectl,kubeadm}   (KUBERNETES_VERSION and the previous one)
#   <cache>/etcd-<version>/bin/etcd
#   <cache>/pause-<digest>/bin/pause     (the sandbox image's one program, tools/pause/pause.go)
#   <cache>/coredns-<version>/bin/coredns (the cluster DNS of kubeadm-made nodes)
# The nodes' containerd, runc and CNI plugins are Debian's, installed on each node by the kubernetes_node role.
# See tools/README.md.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
# shellcheck source=lib.sh
. "$here/lib.sh"

kube_components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm)

# Stamped the way the upstream release build stamps them, so `kubectl version` and the node report 1.34.N.
# KUBE_VERSION and KUBE_MODULE (the wrapper module under tools/go) say which release.
build_kubernetes() {
  local minor=${KUBE_VERSION#*.} flags="" pkg
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=v$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local c
  for c in "${kube_components[@]}"; do
    echo "    $c"
    (cd "$here/go/$KUBE_MODULE" && go build -o "$1/bin/" -ldflags "-s -w$flags" "k8s.io/kubernetes/cmd/$c")
  done
}

build_etcd() {
  (cd "$here/go/etcd" && go build -o "$1/bin/etcd" -ldflags "-s -w" .)
}

build_coredns() {
  (cd "$here/go/coredns" && go build -o "$1/bin/coredns" -ldflags "-s -w" github.com/coredns/coredns)
}

build_pause() {
  (cd "$here/pause" && go build -o "$1/bin/pause" -ldflags "-s -w" .)
}

pinned kubernetes-cluster k8s.io/kubernetes "v$KUBERNETES_VERSION"
pinned kubernetes-cluster-previous k8s.io/kubernetes "v$KUBERNETES_PREVIOUS_VERSION"
pinned etcd go.etcd.io/etcd/server/v3 "v$ETCD_VERSION"
pinned coredns github.com/coredns/coredns "v$COREDNS_VERSION"

step etcd "$ETCD_VERSION" build_etcd
step pause "$(cat "$here"/pause/* | sha256sum | cut -c1-10)" build_pause
KUBE_VERSION=$KUBERNETES_VERSION KUBE_MODULE=kubernetes-cluster step kubernetes "$KUBERNETES_VERSION" build_kubernetes
# The release before, for `cluster up --kubernetes-version` and the upgrade test: most of its packages
# come from Go's build cache the first build filled.
KUBE_VERSION=$KUBERNETES_PREVIOUS_VERSION KUBE_MODULE=kubernetes-cluster-previous \
  step kubernetes "$KUBERNETES_PREVIOUS_VERSION" build_kubernetes
step coredns "$COREDNS_VERSION" build_coredns
echo "==> cluster tools ready in $((SECONDS - start))s"
