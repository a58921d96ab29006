# Telerad. Two commands set everything up on a fresh Debian/Ubuntu machine with Python 3.11+:
#   make run    the whole platform in one process (embedded: SQLite under ./var, in-process bus)
#   make test   lint, types, contracts, unit and integration tests (RabbitMQ and PostgreSQL on localhost)
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVICES := $(notdir $(patsubst %/,%,$(dir $(wildcard services/*/pyproject.toml))))
SOURCES := libs/radcommon/src $(foreach s,$(SERVICES),services/$(s)/src) src

.PHONY: run test test-unit test-integration lint contracts bench tools servers clean

$(STAMP): pyproject.toml constraints.txt libs/radcommon/pyproject.toml $(wildcard services/*/pyproject.toml)
	@if [ -z "$(PYTHON)" ]; then echo "Telerad needs Python 3.11 or newer (python3.11, python3.12 ...)"; exit 1; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e libs/radcommon $(foreach s,$(SERVICES),-e services/$(s)) -e '.[dev]'
	@touch $@

run: $(STAMP)
	TELERAD_LOG_FORMAT=$${TELERAD_LOG_FORMAT:-text} $(BIN)/telerad up

# dcmtk is the real modality in the tests; installed from Debian when missing and we are root.
tools:
	@command -v storescu >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q dcmtk || (apt-get update -q && apt-get install -y -q dcmtk)) >/dev/null; \
	  else echo "dcmtk is missing: install it (sudo apt-get install dcmtk)"; exit 1; fi; }

# The integration tests talk to RabbitMQ and PostgreSQL on localhost; start them if installed but stopped.
servers:
	@if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1; then \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true; fi
	@if command -v rabbitmqctl >/dev/null 2>&1 && ! rabbitmqctl -q status >/dev/null 2>&1; then \
	  rabbitmq-server -detached || true; rabbitmqctl -q await_startup >/dev/null 2>&1 || true; fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy $(SOURCES)

contracts: $(STAMP)
	$(BIN)/telerad contracts write

test: $(STAMP) tools servers lint
	$(BIN)/telerad contracts check
	$(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

test-integration: $(STAMP) tools servers
	$(BIN)/python -m pytest -q -m integration

bench: $(STAMP) tools servers
	@echo "benchmarks come with the DICOM archive issue (docs/benchmarks.md)"; exit 1

clean:
	rm -rf $(VENV) var
