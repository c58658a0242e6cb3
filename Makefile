# Offload: the two commands are `make up` and `make test`. Everything else is optional.
.DEFAULT_GOAL := help
SHELL := /bin/bash

UV := python3 -m uv
RUN := $(UV) run --frozen --all-packages
TEST_VHOST := offload_test
# The vhosts of the test processes side by side (scripts/test.sh): offload_test, offload_test_1, ...
TEST_VHOSTS := $(TEST_VHOST) $(foreach n,1 2 3,$(TEST_VHOST)_$(n))
DEV_DIR := .offload

.PHONY: help uv install services up down demo test test-s3 test-fast lint format bench chaos schemas clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

uv:
	@python3 -m uv --version >/dev/null 2>&1 || { echo ">> installing uv"; python3 -m pip install -q --disable-pip-version-check uv; }

install: uv ## Install the workspace (all services and dev tools) from uv.lock
	@$(UV) sync --frozen --all-packages --quiet

services: ## Start RabbitMQ and Redis if they are stopped
	@bash scripts/ensure-services.sh

up: install services ## Run the API (127.0.0.1:8000) and all workers in the foreground; Ctrl-C stops them
	@bash scripts/up.sh

down: ## Stop a `make up` running in another terminal, gracefully (as Ctrl-C does)
	@if [ -s $(DEV_DIR)/supervisor.pid ]; then \
	  kill -TERM "$$(cat $(DEV_DIR)/supervisor.pid)" && while [ -e $(DEV_DIR)/supervisor.pid ]; do sleep 0.5; done; \
	  echo "Offload stopped."; \
	else echo "make up is not running."; fi

demo: install ## Send a few jobs to the running suite and watch them finish
	@$(RUN) offload demo --key "$${OFFLOAD_DEMO_KEY:-$$(cat $(DEV_DIR)/dev-key 2>/dev/null)}"

test: install ## Lint, then the default test suite against local RabbitMQ (own vhosts) and Redis (own dbs), OFFLOAD_TEST_PROCESSES (2) side by side
	@bash scripts/ensure-services.sh $(TEST_VHOSTS)
	@$(MAKE) --no-print-directory lint
	@bash scripts/test.sh $(PYTEST_ARGS)

test-s3: install ## The media and reports suites and their system tests with storage in S3 (moto's server on loopback)
	@bash scripts/ensure-services.sh $(TEST_VHOST)
	@OFFLOAD_TEST_STORAGE=s3 $(RUN) pytest tests/media tests/reports tests/system/test_*media*.py tests/system/test_*report*.py $(PYTEST_ARGS)

chaos: install ## Fault-injection scenarios at full volume (OFFLOAD_CHAOS_SCALE, default 10) and the API fuzzers at OFFLOAD_FUZZ_EXAMPLES (default 200), then their table
	@bash scripts/ensure-services.sh $(TEST_VHOST)
	@rm -rf test-artifacts/chaos
	@OFFLOAD_CHAOS_SCALE=$${OFFLOAD_CHAOS_SCALE:-10} OFFLOAD_FUZZ_EXAMPLES=$${OFFLOAD_FUZZ_EXAMPLES:-200} \
	  $(RUN) pytest tests/chaos tests/fuzz -p no:cacheprovider --timeout 1800 $(PYTEST_ARGS); \
	  status=$$?; $(RUN) python -m tests.chaos.table || status=1; exit $$status

test-fast: install ## Only the tests that need no servers
	@$(RUN) pytest -m "not integration" $(PYTEST_ARGS)

lint: install ## ruff, ruff format --check, mypy --strict, import-linter
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) mypy shared/src services/api/src services/worker-email/src services/worker-media/src services/worker-reports/src tests bench examples
	@$(RUN) lint-imports

format: install ## Apply ruff's fixes and formatting
	@$(RUN) ruff check --fix .
	@$(RUN) ruff format .

bench: install ## Benchmarks: API vs a no-op endpoint and Fastify+BullMQ, drain vs bare Dramatiq and BullMQ, enqueue, latency, ...
	@bash scripts/ensure-services.sh offload_bench
	@$(RUN) python -m bench $(BENCH_ARGS)

schemas: install ## Regenerate the committed JSON Schemas of every job payload
	@$(RUN) offload schemas --out schemas

clean: ## Remove caches and local state
	rm -rf .pytest_cache .mypy_cache .ruff_cache $(DEV_DIR)
