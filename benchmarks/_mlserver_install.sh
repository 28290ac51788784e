#!/usr/bin/env bash
# Installs Seldon's MLServer (with its LightGBM runtime) for the serving benchmark (benchmarks/serving.py),
# once per machine, into a venv of its own outside the checkout:
#   <cache>/mlserver-VERSION-<hash of _mlserver_requirements.txt>, <cache> = ${MODELYARD_TOOLS_DIR:-$HOME/.cache/modelyard/tools}
# as for tools/build.sh. Not the project's venv: MLServer's pins clash with mlflow's. Every package is pinned
# in _mlserver_requirements.txt; only PyPI, through pip. Only installing needs the network.
# Idempotent: the `.stamp` is written last, so a second run returns at once and an interrupted one starts over.
# PYTHON: the interpreter the venv is made from (default python3; MLServer 1.7.1 runs on 3.9 to 3.12).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lockfile=$here/_mlserver_requirements.txt
cache=${MODELYARD_TOOLS_DIR:-$HOME/.cache/modelyard/tools}
version=$(sed -n 's/^mlserver==\(.*\)$/\1/p' "$lockfile")
lock=$(sha256sum "$lockfile" | cut -c1-10)
dir="$cache/mlserver-$version-$lock"

if [[ -f $dir/.stamp ]] && "$dir/bin/python" -c '' 2>/dev/null; then
  echo "==> mlserver $version: cached ($dir)"
  exit 0
fi
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; then
  echo "mlserver $version needs Python 3.9 to 3.12; $python is $("$python" --version 2>&1 || echo missing)." >&2
  echo "Run again with PYTHON=python3.12 (or another in that range)." >&2
  exit 1
fi
echo "==> mlserver $version: pip install into $dir"
t=$SECONDS
rm -rf "$dir"
mkdir -p "$cache"
"$python" -m venv "$dir"
# --no-deps: the file pins every package, nothing else comes in; pip check then proves it is complete.
"$dir/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$lockfile"
"$dir/bin/pip" check --disable-pip-version-check >/dev/null
"$dir/bin/python" -c 'import mlserver_lightgbm' # the runtime the benchmark starts imports
date -u +%FT%TZ >"$dir/.stamp"
echo "==> mlserver $version: installed in $((SECONDS - t))s"
