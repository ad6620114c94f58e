# perception_nodes: every target works from a new shell on a fresh machine.
#   make demo   - set up (if needed) and run the main job
#   make test   - set up (if needed) and run the test suite (what CI runs)
#   make test-fast - the fast tier only (core, in-process node logic, message conversion;
#                 no node processes, builds or exports): minutes, for the inner loop
#   make bench  - benchmarks (tables on stdout, JSON under outputs/bench/)
#   make lint   - ruff (ruff.toml: lint + format) and hadolint; the test suite runs the same checks
SHELL := /bin/bash
ENV := source scripts/env.sh &&
PYTEST_ARGS ?=
# Test processes (pytest-xdist): two on CI's 2 cores; a module stays on one worker (its node graph
# and fixtures are set up once). PYTEST_WORKERS=0 runs the suite in this process alone.
PYTEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

.PHONY: setup demo test test-fast bench lint clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(ENV) pn-demo $(DEMO_ARGS)

test: setup
	@$(ENV) python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: setup
	@$(ENV) python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

bench: setup
	@$(ENV) bash scripts/bench_all.sh

lint: setup
	@$(ENV) ruff check . && ruff format --check . && hadolint Dockerfile

clean:
	rm -rf build outputs .pytest_cache
