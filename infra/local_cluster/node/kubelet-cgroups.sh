#!/bin/bash
# The kubelet's cgroupRoot, /kubelet, in every cgroup v1 hierarchy, including those systemd
# mounted at boot. Each is bind-mounted onto itself so systemd never removes it as unused.
set -euo pipefail
for hierarchy in /sys/fs/cgroup/*; do
  [[ -L $hierarchy || $hierarchy == /sys/fs/cgroup/unified ]] && continue
  mountpoint -q "$hierarchy" || continue
  mkdir -p "$hierarchy/kubelet"
  if [[ -f $hierarchy/cpuset.cpus ]]; then
    cat "$hierarchy/cpuset.cpus" >"$hierarchy/kubelet/cpuset.cpus"
    cat "$hierarchy/cpuset.mems" >"$hierarchy/kubelet/cpuset.mems"
  fi
  mountpoint -q "$hierarchy/kubelet" || mount --bind "$hierarchy/kubelet" "$hierarchy/kubelet"
done
