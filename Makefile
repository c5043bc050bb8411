# The two commands a newcomer needs: `make run` (the service on demo models) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Material for MkDocs prints a banner about MkDocs 2.0 on every build otherwise.
export NO_MKDOCS_2_WARNING := 1

.PHONY: venv browser bench-tools test test-fast fuzz lint docs run demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to the local CPU wheel; installing it first keeps pip off the CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,docs]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's chromium for the dashboard's browser tests (Playwright's own download cannot work here),
# docker-compose to validate the compose files, and promtool to lint /metrics. Debian ships
# promtool only in the prometheus package, which also installs a Prometheus server (under
# systemd it starts on :9090; `systemctl disable --now prometheus` if unwanted).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@command -v docker-compose >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker-compose >/dev/null; }
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus >/dev/null; }

test: venv browser
	$(BIN)/lint-imports  # the layering contract (pyproject.toml)
	$(BIN)/python -m pytest

# The inner loop: every test that starts no process (tests/conftest.py decides which do), about
# a minute on two cores. `make test` runs these and the e2e tests.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not e2e and not gpu"

# A long schemathesis round against the real server's OpenAPI (`make test` runs a short one).
FUZZ_EXAMPLES ?= 400
fuzz: venv
	FORECAST_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -s --timeout=3600 tests/e2e/test_fuzz.py

lint: venv
	$(BIN)/lint-imports
	$(BIN)/ruff check forecast api tests bench docs
	$(BIN)/ruff format --check forecast api tests bench docs
	$(BIN)/mypy forecast api bench docs/gen_reference.py

# The documentation site into site/: the reference pages are rewritten from the code first (commit
# them: tests/test_docs.py, part of `make test`, compares them with the code and builds the site strictly).
docs: venv
	$(BIN)/python docs/gen_reference.py
	$(BIN)/mkdocs build --strict

# A month of hourly points for validation (interval calibration) and for the test block.
DEMO_ARGS := --horizon 24 --input-size 168 --val-size 720 --test-size 720 --max-epochs 6 --quiet

# Trains the demo models on the bundled ETTh1 data when the registry is empty, then serves them.
demo: venv
	@if [ -z "$$($(BIN)/forecast models list | grep -v '^no models')" ]; then \
	  echo "training the demo models on ETTh1 into ./models (a few minutes, once)"; \
	  $(BIN)/forecast train --data etth1 --target OT --name ett-lstm --arch lstm $(DEMO_ARGS) && \
	  $(BIN)/forecast train --data etth1 --target OT --name ett-gru --arch gru $(DEMO_ARGS); \
	fi

run: demo
	$(BIN)/forecast serve --host 127.0.0.1 --port 8000  # loopback: the demo runs open (no API keys)

# wrk is the load generator of bench/serve.py.
bench-tools:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk >/dev/null; }

bench: venv bench-tools
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/collection.py --peers-cache .bench-cache
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/serve.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
