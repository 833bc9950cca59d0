# Two commands set up a machine: `make up` (install and start the platform) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_ARGS ?=

.PHONY: install system-deps services up lint test test-fast bench builder clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

system-deps:
	@bash deploy/system-deps.sh

services:
	@bash deploy/services.sh

up: install system-deps
	$(VENV)/bin/cxmpute up

# Lint and format are checked before the suite runs (settings: tool.ruff in pyproject.toml); `ruff format .`
# and `ruff check --fix .` mend most findings.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install system-deps services lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

bench: install system-deps services
	$(PY) -m bench

# Rebuilds the committed browser bundles (web/static/builder, web/static/console) and their source digests;
# needs Node and npm.
builder: install
	cd web/builder && npm ci --no-audit --no-fund && npx vite build
	cd web/console && npm ci --no-audit --no-fund && npx vite build
	$(PY) -m web.bundles

clean:
	rm -rf $(VENV) .pytest_cache
