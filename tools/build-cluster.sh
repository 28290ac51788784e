#!/usr/bin/env bash
# `make cluster-tools`: builds the single-node cluster's binaries pinned in tools/versions.env from published
# Go modules, once per machine, into the same cache as `make tools` (tools/lib.sh):
#   <cache>/kubernetes-<version>/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,
#                                     kube-proxy,kubectl,kubeadm}
#   <cache>/etcd-<version>/bin/etcd
#   <cache>/pause-<digest>/bin/pause     (the sandbox image's one program, tools/pause/pause.go)
#   <cache>/coredns-<version>/bin/coredns (the cluster DNS of kubeadm-made nodes)
# containerd, runc, the CNI plugins, conntrack and iptables come from Debian: installed here when missing. See
# tools/README.md.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
# shellcheck source=lib.sh
. "$here/lib.sh"

kube_components=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm)

# Stamped the way the upstream release build stamps them, so `kubectl version` and the node report 1.34.N.
build_kubernetes() {
  local minor=${KUBERNETES_VERSION#*.} flags="" pkg
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=v$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local c
  for c in "${kube_components[@]}"; do
    echo "    $c"
    (cd "$here/go/kubernetes-cluster" && go build -o "$1/bin/" -ldflags "-s -w$flags" "k8s.io/kubernetes/cmd/$c")
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

# Debian's packages: the cluster's own containerd runs beside Docker's and leaves it alone.
packages=(containerd runc containernetworking-plugins conntrack iptables)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null || { apt-get update -q && apt-get install -y -q "${missing[@]}"; }
  else
    echo "missing Debian packages; install them with: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

pinned kubernetes-cluster k8s.io/kubernetes "v$KUBERNETES_VERSION"
pinned etcd go.etcd.io/etcd/server/v3 "v$ETCD_VERSION"
pinned coredns github.com/coredns/coredns "v$COREDNS_VERSION"

step etcd "$ETCD_VERSION" build_etcd
step pause "$(cat "$here"/pause/* | sha256sum | cut -c1-10)" build_pause
step kubernetes "$KUBERNETES_VERSION" build_kubernetes
step coredns "$COREDNS_VERSION" build_coredns
echo "==> cluster tools ready in $((SECONDS - start))s"
