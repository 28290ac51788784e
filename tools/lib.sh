# Shared by tools/build.sh and tools/build-cluster.sh: the cache folder, the Go settings and the
# build steps. Sourced after `here` (the tools folder) is set.
# shellcheck shell=bash
cache=${MODELYARD_TOOLS_DIR:-$HOME/.cache/modelyard/tools}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
# Static binaries; go.sum in tools/go/* is the lock, so never rewrite it; the machine's own Go.
# GOCACHE/GOMODCACHE stay at their defaults so rebuilds after a pin bump reuse the compiled packages.
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local
export PULUMI_SKIP_UPDATE_CHECK=true

start=$SECONDS

# step NAME VERSION FUNCTION: FUNCTION DIR builds into DIR/bin unless DIR/.stamp says it is done.
step() {
  local name=$1 version=$2 dir="$cache/$1-$2" t=$SECONDS
  if [[ -f $dir/.stamp ]]; then
    echo "==> $name $version: cached ($dir)"
    return
  fi
  echo "==> $name $version: cold build into $dir"
  rm -rf "$dir"
  mkdir -p "$dir/bin"
  "$3" "$dir"
  date -u +%FT%TZ >"$dir/.stamp"
  echo "==> $name $version: built in $((SECONDS - t))s"
}

# pinned DIR MODULE VERSION: fails unless tools/go/DIR/go.mod requires exactly that module version.
pinned() {
  grep -Eq "^[[:space:]]*(require )?$2 $3( |$)" "$here/go/$1/go.mod" || {
    echo "tools/go/$1/go.mod does not pin $2 $3 (tools/versions.env); update it with:" >&2
    echo "  cd tools/go/$1 && GOFLAGS=-mod=mod go get $2@$3 && go mod tidy" >&2
    exit 1
  }
}

# Where the module cache holds MODULE (at the version the wrapper module DIR pins), downloading it if needed.
moddir() {
  (cd "$here/go/$1" && go mod download "$2" && go list -m -f '{{.Dir}}' "$2")
}

