# One command per check. `make run` and `make test` do all set-up on a fresh Debian machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql+psycopg://tracker:tracker@127.0.0.1:5432/tracker_test
PG_BENCH_URL ?= postgresql+psycopg://tracker:tracker@127.0.0.1:5432/tracker_bench
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help run test test-unit test-pg test-sqlite test-browser lint format typecheck \
        migrate migrate-check seed bench vendor vendor-check system-deps postgres install clean

help:
	@echo "make run    - install, migrate, load demo data, start web + worker"
	@echo "make test   - install, start what tests need, run everything (PostgreSQL, SQLite, browser)"
	@echo "make bench | lint | format | typecheck | migrate-check | vendor-check | test-unit"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "installing python3-venv"; apt-get update -qq && apt-get install -y -qq python3-venv; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests need: chromium for Playwright; Node/npm for the asset check.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v pg_isready >/dev/null || missing="$$missing postgresql-client"; \
	fc-list 2>/dev/null | grep -qi "DejaVuSansMono" || missing="$$missing fonts-dejavu-core fontconfig"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi

postgres: system-deps
	bash scripts/ensure_postgres.sh

migrate: install
	$(BIN)/flask --app wsgi tracker migrate

seed: migrate
	$(BIN)/flask --app wsgi tracker seed-demo

run: seed
	bash scripts/run_dev.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy tracker labels schedules

migrate-check: install postgres
	rm -f /tmp/tracker-migrate-check.db
	TRACKER_DATABASE_URL=sqlite:////tmp/tracker-migrate-check.db $(BIN)/alembic upgrade head
	TRACKER_DATABASE_URL=sqlite:////tmp/tracker-migrate-check.db $(BIN)/alembic check

vendor: system-deps
	npm ci --no-audit --no-fund
	$(PYTHON) scripts/vendor_assets.py

vendor-check: system-deps
	npm ci --no-audit --no-fund
	$(PYTHON) scripts/vendor_assets.py --check

test-unit: install
	$(BIN)/pytest tests/unit -q

test-pg: install postgres
	TRACKER_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -m "not browser" -q

test-sqlite: install
	$(BIN)/pytest -m "not browser" -q

test-browser: install system-deps
	$(BIN)/pytest -m browser -q

test: install system-deps postgres lint typecheck vendor-check test-pg test-sqlite test-browser
	@echo "all test suites passed"

bench: install postgres
	TRACKER_BENCH_DATABASE_URL=$(PG_BENCH_URL) $(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis node_modules
