#!/usr/bin/env bash
# Offline checks of a Jenkinsfile (default pipelines/Jenkinsfile), with what install.sh installs:
#   check.sh parse [FILE]  Groovy 2.4 parses it; prints its statement tree as JSON (jenkinsfile_tree.groovy)
#   check.sh lint [FILE]   npm-groovy-lint (CodeNarc) with .groovylintrc.json, failing on any finding
#   check.sh [FILE]        both
#   check.sh groovy SCRIPT runs a Groovy script with the same Groovy (tests run Jenkinsfile snippets)
# The declarative rules themselves are checked on the tree by tests/pipelines/test_jenkinsfile_checks.py.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command=all
if [[ ${1:-} == parse || ${1:-} == lint || ${1:-} == groovy ]]; then
  command=$1
  shift
fi
file=${1:-$(cd "$here/../.." && pwd)/pipelines/Jenkinsfile}
cache=${MODELYARD_TOOLS_DIR:-$HOME/.cache/modelyard/tools}
version=$(sed -n 's/.*"npm-groovy-lint": "\([^"]*\)".*/\1/p' "$here/package.json")
lint="$cache/npm-groovy-lint-$version-$(sha256sum "$here/package-lock.json" | cut -c1-10)/node_modules/.bin/npm-groovy-lint"

run_groovy() {
  command -v groovy >/dev/null || { echo "no groovy: run tools/jenkinsfile-check/install.sh" >&2; exit 3; }
  # Debian's groovy needs JAVA_HOME when /usr/lib/jvm/default-java is absent: take the java on PATH.
  if [[ -z ${JAVA_HOME:-} ]]; then
    JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")
    export JAVA_HOME
  fi
  groovy "$@"
}

parse() {
  run_groovy "$here/jenkinsfile_tree.groovy" "$file"
}

run_lint() {
  [[ -x $lint ]] || { echo "no npm-groovy-lint $version: run tools/jenkinsfile-check/install.sh" >&2; exit 3; }
  # --noserver: no CodeNarc server left running after the check.
  "$lint" --noserver --failon info --config "$here/.groovylintrc.json" --output txt "$file"
}

case $command in
  groovy) run_groovy "$file" ;;
  parse) parse ;;
  lint) run_lint ;;
  all) parse >/dev/null && echo "==> $file: parsed by Groovy $(run_groovy --version | awk '{print $3}')" && run_lint ;;
esac
