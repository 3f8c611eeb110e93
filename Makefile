# The two commands a new user needs are `make demo` and `make test`; both set up
# everything from nothing (virtualenv, packages, the browser for the UI tests).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA ?= .serve
LISTEN ?= 127.0.0.1:7443

.PHONY: help demo test lint proto proto-check bench serve browser haproxy clean

help:
	@echo "make demo    - run the registry, sample platforms and the carrier app"
	@echo "make test    - run every test (PostgreSQL too when NUMBIND_TEST_DATABASE_URL is set)"
	@echo "make lint    - ruff, mypy --strict (packages, bench, tests) and the import-layer contracts"
	@echo "make proto   - regenerate the committed gRPC stubs"
	@echo "make bench   - benchmarks, each beside its physical floor"
	@echo "make serve   - the registry alone, data in $(DATA)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,otel]'
	@touch $(STAMP)

# Debian's chromium (and a CJK font, so screenshots show Chinese) for the Playwright
# tests; never a browser download.
browser:
	@command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi "noto sans cjk" || { \
	  echo "installing Debian chromium and fonts-noto-cjk for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium fonts-noto-cjk >/dev/null) \
	  || echo "could not install chromium; browser tests will skip (fail under CI=true)"; }

# Debian's haproxy for the load-balancer tests (three registries behind it); never a
# download of its own.
haproxy:
	@command -v haproxy >/dev/null 2>&1 || { \
	  echo "installing Debian haproxy for the load-balancer tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    haproxy >/dev/null) \
	  || echo "could not install haproxy; load-balancer tests will skip (fail under CI=true)"; }

# Two pytest-xdist workers, a test file each at a time (module fixtures stay shared); each
# worker has its own PostgreSQL database (tests/conftest.py). PYTEST_WORKERS=0 runs serially.
# The slowest tests are listed at the end: the suite is kept under 15 minutes.
PYTEST_WORKERS ?= 2
test: $(STAMP) browser haproxy
	$(PY) -m pytest -q -rs -n $(PYTEST_WORKERS) --dist loadfile --durations=25

lint: $(STAMP)
	$(VENV)/bin/ruff check proto registry clients tests bench
	$(VENV)/bin/ruff format --check proto registry clients tests bench
	$(VENV)/bin/mypy -p numbind.protocol -p numbind.registry -p numbind.sdk -p numbind.cli -p numbind.carrier_app -p numbind.demo
	$(VENV)/bin/mypy bench
	$(VENV)/bin/mypy tests
	$(VENV)/bin/lint-imports

proto: $(STAMP)
	PYTHON=$(PY) ./proto/gen_proto.sh

bench: $(STAMP)
	$(PY) bench/run_all.py

serve: $(STAMP)
	$(PY) -m numbind.cli serve --data-dir $(DATA) --listen $(LISTEN) --init

demo: $(STAMP)
	$(PY) -m numbind.demo

clean:
	rm -rf $(VENV) .demo .serve .pytest_cache .mypy_cache .ruff_cache
