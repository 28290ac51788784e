#!/usr/bin/env bash
# Installs what checks pipelines/Jenkinsfile offline (check.sh, tests/pipelines/test_jenkinsfile_checks.py):
#   - Debian's `groovy` (2.4: the Groovy line Jenkins pipelines run on), to parse it;
#   - npm-groovy-lint (CodeNarc, run with this machine's Java 17+), pinned by package-lock.json, into
#     <cache>/npm-groovy-lint-VERSION-<lock hash>, <cache> = ${MODELYARD_TOOLS_DIR:-$HOME/.cache/modelyard/tools}
#     as for tools/build.sh. Only installing needs the network; the checks run offline.
# Idempotent: a second run finds both and returns in well under a second.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MODELYARD_TOOLS_DIR:-$HOME/.cache/modelyard/tools}

if ! command -v groovy >/dev/null; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "groovy is missing: run 'sudo apt-get install -y groovy', then this script again" >&2
    exit 1
  fi
  echo "==> groovy: apt-get install"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q groovy >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q groovy >/dev/null; }
fi

version=$(sed -n 's/.*"npm-groovy-lint": "\([^"]*\)".*/\1/p' "$here/package.json")
lock=$(sha256sum "$here/package-lock.json" | cut -c1-10)
dir="$cache/npm-groovy-lint-$version-$lock"
if [[ -f $dir/.stamp ]]; then
  echo "==> npm-groovy-lint $version: cached ($dir)"
  exit 0
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ((node_major < 20)); then
  echo "npm-groovy-lint $version needs Node.js 20 or later with npm (found: ${node_major/#0/none})" >&2
  exit 1
fi
echo "==> npm-groovy-lint $version: npm ci into $dir"
rm -rf "$dir"
mkdir -p "$dir"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
# The lock pins every package and its integrity hash; the package runs no install scripts.
(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
date -u +%FT%TZ >"$dir/.stamp"
