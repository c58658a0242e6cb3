# Offload: the two commands are `make up` and `make test`. Everything else is optional.
.DEFAULT_GOAL := help
SHELL := /bin/bash

UV := python3 -m uv
RUN := $(UV) run --frozen --all-packages
TEST_VHOST := offload_test
DEV_DIR := .offload

.PHONY: help uv install services up demo test test-fast lint format bench chaos schemas clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

uv:
	@python3 -m uv --version >/dev/null 2>&1 || { echo ">> installing uv"; python3 -m pip install -q --disable-pip-version-check uv; }

install: uv ## Install the workspace (all services and dev tools) from uv.lock
	@$(UV) sync --frozen --all-packages --quiet

services: ## Start RabbitMQ and Redis if they are stopped
	@bash scripts/ensure-services.sh

up: install services ## Run the API (127.0.0.1:8000) and all workers in the foreground; Ctrl-C stops them
	@bash scripts/up.sh

demo: install ## Send a few jobs to the running suite and watch them finish
	@$(RUN) offload demo --key "$${OFFLOAD_DEMO_KEY:-$$(cat $(DEV_DIR)/dev-key 2>/dev/null)}"

test: install ## Lint, then the default test suite against local RabbitMQ (own vhost) and Redis (own db)
	@bash scripts/ensure-services.sh $(TEST_VHOST)
	@$(MAKE) --no-print-directory lint
	@$(RUN) pytest $(PYTEST_ARGS)

chaos: install ## Fault-injection scenarios at full volume (OFFLOAD_CHAOS_SCALE, default 10), then their table
	@bash scripts/ensure-services.sh $(TEST_VHOST)
	@rm -rf test-artifacts/chaos
	@OFFLOAD_CHAOS_SCALE=$${OFFLOAD_CHAOS_SCALE:-10} $(RUN) pytest tests/chaos -p no:cacheprovider $(PYTEST_ARGS)
	@$(RUN) python -m tests.chaos.table

test-fast: install ## Only the tests that need no servers
	@$(RUN) pytest -m "not integration" $(PYTEST_ARGS)

lint: install ## ruff, ruff format --check, mypy --strict, import-linter
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy shared/src services/api/src services/worker-email/src services/worker-media/src services/worker-reports/src tests bench
	@$(RUN) lint-imports

format: install ## Apply ruff's fixes and formatting
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

bench: install ## Benchmarks: API enqueue vs a no-op endpoint, drain vs bare Dramatiq, enqueue→start latency
	@bash scripts/ensure-services.sh offload_bench
	@$(RUN) python -m bench $(BENCH_ARGS)

schemas: install ## Regenerate the committed JSON Schemas of every job payload
	@$(RUN) offload schemas --out schemas

clean: ## Remove caches and local state
	rm -rf .pytest_cache .mypy_cache .ruff_cache $(DEV_DIR)
