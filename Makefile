# Every target bootstraps what it needs: on a fresh machine `make demo` and `make test` just work.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup checkov demo demo-cluster test test-fast lint bench clean tools cluster-tools jenkinsfile-tools monitoring-tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## setup: create .venv with the `modelyard` command and everything the kit needs
setup: $(STAMP)

# checkov pins versions the kit's own dependencies clash with: it gets a venv of its own.
CHECKOV_STAMP := .venv-checkov/.installed-stamp
$(CHECKOV_STAMP):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet 'checkov==3.3.30'
	touch $(CHECKOV_STAMP)

## checkov: the Kubernetes manifest scanner the infra tests run (tests/infra/test_render.py)
checkov: $(CHECKOV_STAMP)

## demo: the whole loop on this machine (the embedded default)
demo: setup
	$(BIN)/modelyard demo $(if $(KEEP),--keep-serving)

## demo-cluster: the production path on this machine: the platform in Docker, staging and production
## on the local Kubernetes, each deployed by `pulumi up` (needs `make tools cluster-tools`)
demo-cluster: setup
	$(BIN)/modelyard demo --cluster $(if $(KEEP),--keep-serving)

## test: the whole suite, as CI runs it: two workers, the cluster's tests in order on one of them
## (tests/conftest.py says how the units are made)
test: setup checkov
	$(BIN)/pytest -n 2 --dist loadgroup --no-loadscope-reorder --durations=30

## test-fast: the quick loop (no slow, Docker, engine or cluster tests)
test-fast: setup
	$(BIN)/pytest -m "not slow and not docker and not engine and not cluster" -x -q

## lint: ruff, mypy and yamllint
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# mypy cannot follow the editable install's mapping: it reads the folders through a
	@# `modelyard/` tree of links, so imports between the parts are checked for real.
	@mkdir -p build/typecheck/modelyard
	@for folder in contracts infra ml pipelines; do ln -sfn ../../../$$folder build/typecheck/modelyard/$$folder; done
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p modelyard
	$(BIN)/yamllint -s environments

## bench: the performance figures the issues ask for
bench: setup bench-tools
	$(BIN)/python -m benchmarks

## bench-tools: MLServer, pinned in benchmarks/_mlserver_requirements.txt, for the serving benchmark: a venv of
## its own (its pins clash with mlflow's), once per machine into ~/.cache/modelyard/tools (benchmarks/_mlserver_install.sh)
.PHONY: bench-tools
bench-tools:
	PYTHON=$(PYTHON) bash benchmarks/_mlserver_install.sh

clean:
	rm -rf .modelyard build .pytest_cache .mypy_cache .ruff_cache

## tools: the pinned Pulumi engine (tools/versions.env), built from Go modules once per machine
## into ~/.cache/modelyard/tools (tools/README.md); `modelyard infra ...` finds it there
tools:
	bash tools/build.sh

## cluster-tools: the local Kubernetes (1.34 line: the pinned release and the one before it), etcd and
## CoreDNS pinned in tools/versions.env, built from Go modules once per machine into the same cache
## (tools/README.md); `modelyard cluster up` puts them on its nodes
cluster-tools:
	bash tools/build-cluster.sh

## jenkinsfile-tools: Groovy 2.4 and npm-groovy-lint for the offline Jenkinsfile checks (tools/jenkinsfile-check)
jenkinsfile-tools:
	bash tools/jenkinsfile-check/install.sh

## monitoring-tools: Debian's Prometheus 2.42 (prometheus, promtool) and node-exporter 1.5, for the
## monitoring/ checks (tests/monitoring/test_prometheus.py); apt-get only when one is missing
MONITORING_PACKAGES := prometheus prometheus-node-exporter
monitoring-tools:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null \
	    || ! command -v prometheus-node-exporter >/dev/null; then \
	  if [[ $$(id -u) -ne 0 ]]; then \
	    echo "Prometheus tools missing: run 'sudo apt-get install -y $(MONITORING_PACKAGES)', then this target again" >&2; \
	    exit 1; \
	  fi; \
	  echo "==> $(MONITORING_PACKAGES): apt-get install"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q $(MONITORING_PACKAGES) >/dev/null \
	    || { apt-get update -q >/dev/null && apt-get install -y -q $(MONITORING_PACKAGES) >/dev/null; }; \
	else \
	  echo "==> promtool, prometheus, prometheus-node-exporter: installed"; \
	fi
