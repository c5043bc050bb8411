# The two commands a newcomer needs: `make run` (the service on demo models) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv browser test lint run demo serve bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to the local CPU wheel; installing it first keeps pip off the CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian's chromium for the dashboard's browser tests (Playwright's own download cannot work here).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	@command -v docker-compose >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq docker-compose >/dev/null; }

test: venv browser
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check forecast api tests bench
	$(BIN)/ruff format --check forecast api tests bench
	$(BIN)/mypy forecast api

# Trains the demo models on the bundled ETTh1 data when the registry is empty, then serves them.
demo: venv
	@if [ -z "$$($(BIN)/forecast models list | grep -v '^no models')" ]; then \
	  $(BIN)/forecast train --data etth1 --target OT --name ett-lstm --arch lstm --horizon 24 --input-size 168 --max-epochs 8 --quiet; \
	  $(BIN)/forecast train --data etth1 --target OT --name ett-gru --arch gru --horizon 24 --input-size 168 --max-epochs 8 --quiet; \
	fi

run: demo
	$(BIN)/forecast serve --host 0.0.0.0 --port 8000

bench: venv
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/serve.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
