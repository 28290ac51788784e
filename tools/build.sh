#!/usr/bin/env bash
# `make tools`: builds the Pulumi engine pieces pinned in tools/versions.env from published Go modules,
# once per machine, into a cache outside the checkout (so every clone on the machine shares them):
#   <cache>/<name>-<version>/bin/...  with <cache> = ${MODELYARD_TOOLS_DIR:-$HOME/.cache/modelyard/tools}
# A tool counts as built only once its .stamp exists (written last), so an interrupted build is redone.
# Then writes <cache>/env.sh (CLI and language host on PATH) and registers the resource plugins into
# PULUMI_HOME (tools/install-plugins.sh). See tools/README.md.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
# shellcheck source=lib.sh
. "$here/lib.sh"

# The CLI, built through a wrapper module: `go install pkg/v3/cmd/pulumi@V` is refused because
# pkg/go.mod has replace directives. The wrapper requires sdk/v3 at the same release instead of
# `sdk/v3 => ../sdk` and copies the other one (atotto/clipboard => tgummerer/clipboard).
build_pulumi() {
  (cd "$here/go/pulumi" && go build -tags grpcnotrace -o "$1/bin/" \
    -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
}

# The Python language host (our stand-in, see tools/go/langhost-python/main.go) plus the two Python
# launchers that ship in sdk/v3 at the same release: the program runner and the dynamic-provider plugin.
build_langhost() {
  local sdk
  (cd "$here/go/langhost-python" && go build -o "$1/bin/pulumi-language-python" \
    -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION+modelyard" .)
  sdk=$(moddir langhost-python github.com/pulumi/pulumi/sdk/v3)
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" \
    "$sdk/python/dist/pulumi-resource-pulumi-python" "$1/bin/"
}

# Provider cmd packages embed a schema-embed.json that `go generate` writes and the module zip lacks:
# copy the cmd out of the (read-only) module cache into a scratch copy of the wrapper module, run the
# provider's own generate.go there with the version, build, and drop the scratch copy.
build_kubernetes() {
  local mod=github.com/pulumi/pulumi-kubernetes/provider/v4 src work="$1/src"
  src=$(moddir kubernetes "$mod")
  mkdir -p "$work"
  cp "$here/go/kubernetes/go.mod" "$here/go/kubernetes/go.sum" "$src/cmd/pulumi-resource-kubernetes/"* "$work/"
  chmod -R u+w "$work"
  (cd "$work" && VERSION=$PULUMI_KUBERNETES_VERSION go run generate.go &&
    go build -o "$1/bin/pulumi-resource-kubernetes" \
      -ldflags "-X $mod/pkg/version.Version=$PULUMI_KUBERNETES_VERSION" .)
  rm -rf "$work"
}

pinned pulumi github.com/pulumi/pulumi/pkg/v3 "v$PULUMI_VERSION"
pinned pulumi github.com/pulumi/pulumi/sdk/v3 "v$PULUMI_VERSION"
pinned langhost-python github.com/pulumi/pulumi/sdk/v3 "v$PULUMI_VERSION"
pinned kubernetes github.com/pulumi/pulumi-kubernetes/provider/v4 "$PULUMI_KUBERNETES_MODULE"

# A pulumi already on PATH at the pinned version (and not one of ours) is used instead of building one.
found=$(command -v pulumi || true)
if [[ -n $found && $found != "$cache"/* && $("$found" version 2>/dev/null) == "v$PULUMI_VERSION" ]]; then
  echo "==> pulumi $PULUMI_VERSION: using $found"
  cli_bin=$(dirname "$found")
else
  step pulumi "$PULUMI_VERSION" build_pulumi
  cli_bin="$cache/pulumi-$PULUMI_VERSION/bin"
fi
# Keyed by its source too, so editing the stand-in host rebuilds it.
host_key=$(cat "$here"/go/langhost-python/{main.go,go.mod,go.sum} | sha256sum | cut -c1-10)
step pulumi-language-python "$PULUMI_VERSION-$host_key" build_langhost
host_bin="$cache/pulumi-language-python-$PULUMI_VERSION-$host_key/bin"
# The engine takes language hosts from next to the (symlink-resolved) pulumi binary, and warns "using
# pulumi-language-python from $PATH" about any found elsewhere: link the current host in there.
if [[ $cli_bin == "$cache"/* ]]; then
  ln -sfn "$host_bin/"* "$cli_bin/"
fi
step pulumi-resource-kubernetes "$PULUMI_KUBERNETES_VERSION" build_kubernetes

# Resource plugins stay off PATH: the engine would warn about each ambient plugin on every run, and
# would not check their versions. They are registered into PULUMI_HOME instead (below).
cat >"$cache/env.sh.tmp" <<EOF
# Written by tools/build.sh: source it to use the pinned Pulumi engine built for modelyard.
export MODELYARD_TOOLS_DIR="$cache"
export PATH="$cli_bin:$host_bin:\$PATH"
# Offline defaults (already-set values win): no update check, never download plugins.
export PULUMI_SKIP_UPDATE_CHECK="\${PULUMI_SKIP_UPDATE_CHECK:-true}"
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="\${PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION:-true}"
EOF
mv "$cache/env.sh.tmp" "$cache/env.sh"
MODELYARD_TOOLS_DIR=$cache bash "$here/install-plugins.sh" >/dev/null
echo "==> resource plugins registered in ${PULUMI_HOME:-$HOME/.pulumi} (other PULUMI_HOMEs: tools/install-plugins.sh DIR)"
echo "==> all tools ready in $((SECONDS - start))s; use them with: . $cache/env.sh"
