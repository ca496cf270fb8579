# dydx-exporter: every entry point a user or CI needs. `make test` and `make demo` work on a fresh
# Debian machine: they install what is missing (the Python environment, Prometheus, Alertmanager).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv tools lint typecheck check test test-fast demo run simulate bench soak dashboards dashboards-render docs image helm clean

help:
	@echo "make demo       simulator + exporter + Prometheus + Alertmanager (+ Grafana if installed), URLs printed"
	@echo "make test       lint, type-check and the whole test suite (installs everything it needs)"
	@echo "make run        the exporter against dYdX mainnet"
	@echo "make simulate   the embedded dYdX v4 indexer simulator alone"
	@echo "make bench      the benchmark suite (table + bench/results/*.json)"
	@echo "make soak       the long soak test (SOAK_SECONDS, default 1800)"
	@echo "make dashboards regenerate grafana/dashboards/*.json from code"
	@echo "make docs       regenerate the metrics tables in README.md and docs/metrics.md"
	@echo "make image      build the container image (docker where a daemon answers, podman otherwise)"
	@echo "make helm       regenerate the Helm chart's rules, dashboards and values schema from the repo"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The real Prometheus, promtool, Alertmanager and amtool, from Debian, when missing.
tools:
	@./scripts/ensure-tools.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

check: lint typecheck

test: venv tools check
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/pytest -m "not e2e and not slow" $(PYTEST_ARGS)

demo: venv tools
	$(BIN)/python -m scripts.demo

run: venv
	$(BIN)/dydx-exporter

simulate: venv
	$(BIN)/dydx-exporter simulate

bench: venv
	$(BIN)/python -m bench

soak: venv
	$(BIN)/python -m tests.soak --seconds $${SOAK_SECONDS:-1800}

dashboards: venv
	$(BIN)/python -m grafana.build

# Draws every dashboard to PNG (the README's pictures, with docs/img/dashboards.sha256) from a running
# Prometheus, such as the one `make demo` starts: let it gather the RENDER_RANGE of data first.
PROMETHEUS_URL ?= http://127.0.0.1:9090
RENDER_RANGE ?= 15m
RENDER_MARKET ?= BTC-USD
dashboards-render: venv
	$(BIN)/python -m grafana.render --prometheus $(PROMETHEUS_URL) --out docs/img --range $(RENDER_RANGE) --var market=$(RENDER_MARKET)

# The metrics reference table in README.md and docs/metrics.md, from exporter/metrics/catalog.py.
docs: venv
	$(BIN)/python -m exporter.metrics.catalog --write README.md docs/metrics.md

# The container image: docker where a daemon answers, podman otherwise (ENGINE=... to choose). Extra
# build flags in IMAGE_BUILD_ARGS, e.g. --build-arg PYTHON_IMAGE=... for another base.
IMAGE ?= dydx-exporter:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
ENGINE ?= $(shell docker info >/dev/null 2>&1 && echo docker || echo podman)
IMAGE_BUILD_ARGS ?=
image:
	$(ENGINE) build $(if $(findstring podman,$(ENGINE)),--format docker) $(IMAGE_BUILD_ARGS) -t $(IMAGE) .

# deploy/helm/dydx-exporter: the PrometheusRule rules, the dashboard ConfigMaps and the values schema's
# exporter options, generated from prometheus/rules/, grafana/dashboards/ and exporter/config.py.
helm: venv
	$(BIN)/python -m deploy.helm.generate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench/results
