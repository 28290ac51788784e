#!/bin/bash
# Runs before systemd in a node container started with a private cgroup namespace: Docker mounts
# each cgroup v1 hierarchy read-only; systemd and the kubelet need to write them. Mounts become
# shared so the kubelet's volume mounts reach the pods.
set -euo pipefail
for hierarchy in /sys/fs/cgroup/*; do
  if mountpoint -q "$hierarchy"; then
    mount -o remount,bind,rw "$hierarchy"
  fi
done
mount --make-rshared /
mkdir -p /lib/modules
exec /lib/systemd/systemd
