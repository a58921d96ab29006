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

.PHONY: run test test-unit test-integration lint contracts bench tools servers viewer fuzz clean

$(STAMP): pyproject.toml constraints.txt libs/radcommon/pyproject.toml $(wildcard services/*/pyproject.toml)
	@if [ -z "$(PYTHON)" ]; then echo "Telerad needs Python 3.11 or newer (python3.11, python3.12 ...)"; exit 1; fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e libs/radcommon $(foreach s,$(SERVICES),-e services/$(s)) -e '.[dev]'
	@touch $@

run: $(STAMP) viewer
	TELERAD_LOG_FORMAT=$${TELERAD_LOG_FORMAT:-text} $(BIN)/telerad up

# dcmtk is the real modality in the tests; Orthanc the archive `make bench` compares against (we run our own
# `Orthanc <config>`, never the system service). Installed from Debian when missing and we are root.
tools:
	@command -v storescu >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q dcmtk || (apt-get update -q && apt-get install -y -q dcmtk)) >/dev/null; \
	  else echo "dcmtk is missing: install it (sudo apt-get install dcmtk)"; exit 1; fi; }
	@{ command -v Orthanc && test -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q orthanc orthanc-dicomweb || (apt-get update -q && apt-get install -y -q orthanc orthanc-dicomweb)) >/dev/null; \
	  else echo "Orthanc is missing: install it (sudo apt-get install orthanc orthanc-dicomweb)"; exit 1; fi; }
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q chromium chromium-driver || (apt-get update -q && apt-get install -y -q chromium chromium-driver)) >/dev/null; \
	  else echo "Chromium is missing (the viewer's end-to-end test): sudo apt-get install chromium chromium-driver"; exit 1; fi; }

# The OHIF viewer the gateway serves at /viewer/: the prebuilt @ohif/app from npm, pinned, checked against the
# registry's dist.integrity and prepared for /viewer/ by gateway.viewer under var/ohif; no node at run time.
OHIF_VERSION := 3.13.2
OHIF_INTEGRITY := sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==
OHIF_TARBALL := var/ohif/app-$(OHIF_VERSION).tgz

viewer: var/ohif/viewer/.ohif-$(OHIF_VERSION)

var/ohif/viewer/.ohif-$(OHIF_VERSION): | $(STAMP)
	@mkdir -p var/ohif
	@test -s $(OHIF_TARBALL) || { curl -fsSL --retry 3 -o $(OHIF_TARBALL).part \
	  https://registry.npmjs.org/@ohif/app/-/app-$(OHIF_VERSION).tgz && mv $(OHIF_TARBALL).part $(OHIF_TARBALL) \
	  || { rm -f $(OHIF_TARBALL).part; echo "could not download @ohif/app $(OHIF_VERSION) from the npm registry"; exit 1; }; }
	$(BIN)/python -m gateway.viewer prepare $(OHIF_TARBALL) var/ohif/viewer --integrity $(OHIF_INTEGRITY) \
	  --version $(OHIF_VERSION) || { rm -f $(OHIF_TARBALL); exit 1; }
	@touch $@

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

test: $(STAMP) tools servers viewer lint
	$(BIN)/telerad contracts check
	$(BIN)/python -m pytest -q

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration"

test-integration: $(STAMP) tools servers viewer
	$(BIN)/python -m pytest -q -m integration

# Telerad against Orthanc on this machine, side by side, into docs/benchmarks.md (ingest alone: 20-30 min);
# BENCH_QUICK=1 for a smoke test of a minute, BENCH_ONLY=ingest, BENCH_RUNS=N (see bench/config.py).
bench: $(STAMP) tools servers
	$(BIN)/python -m bench

# Coverage-guided fuzzing of dicom-ingest's parsing path with atheris (issue 4), FUZZ_SECONDS per target; new
# inputs go to var/fuzz/<target>/corpus, a crash stops the run in var/fuzz/<target>/ (see tests/fuzz/README.md).
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= read_instance stow multipart
fuzz: $(STAMP)
	@for target in $(FUZZ_TARGETS); do echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
	  $(BIN)/python -m tests.fuzz.fuzz_$$target -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; done

clean:
	rm -rf $(VENV) var
