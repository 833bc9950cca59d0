# Two commands set up a machine: `make up` (install and start the platform) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_ARGS ?=

.PHONY: install system-deps services up test test-fast bench clean

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

test: install system-deps services
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

bench: install system-deps services
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
