#!/usr/bin/env bash
# Builds the local stand-in for debian:bookworm-slim that every image in infra/images starts
# from. Registries cannot be pulled from on these machines, so the base comes from Debian's
# packages through debootstrap. Does nothing when the image already exists.
set -euo pipefail
image=${1:-debian:bookworm-slim}
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "building $image with debootstrap (about 30 s)" >&2
debootstrap --variant=minbase bookworm "$root" >/dev/null
# A slim image: no apt lists or caches, like the official one.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$image" >/dev/null
echo "built $image" >&2
