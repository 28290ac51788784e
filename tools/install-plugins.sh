#!/usr/bin/env bash
# Registers the resource plugins that tools/build.sh built into a PULUMI_HOME (default: $PULUMI_HOME, else
# ~/.pulumi), as `pulumi plugin install resource NAME VERSION --file BINARY`, i.e. without any download.
# Needed where the engine must find plugins by name and version (PULUMI_IGNORE_AMBIENT_PLUGINS=true, or a
# PATH without <cache>/env.sh); with env.sh sourced the engine already finds them on PATH.
# Usage: tools/install-plugins.sh [PULUMI_HOME]
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
cache=${MODELYARD_TOOLS_DIR:-$HOME/.cache/modelyard/tools}
[[ -f $cache/env.sh ]] || { echo "run 'make tools' first" >&2; exit 1; }
# shellcheck source=/dev/null
. "$cache/env.sh"
if [[ $# -gt 0 ]]; then
  export PULUMI_HOME=$1
fi

# NAME:VERSION of each resource plugin build.sh makes.
plugins=("kubernetes:$PULUMI_KUBERNETES_VERSION")
for plugin in "${plugins[@]}"; do
  name=${plugin%%:*} version=${plugin#*:}
  bin="$cache/pulumi-resource-$name-$version/bin/pulumi-resource-$name"
  pulumi plugin install resource "$name" "$version" --file "$bin"
done
pulumi plugin ls
