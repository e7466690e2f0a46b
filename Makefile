# vcgate -- the two commands a newcomer needs:
#   make demo   create .venv, install vcgate, run the end-to-end demo on embedded defaults
#   make test   install everything the tests need (Python, npm, Debian packages), run the suite

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NODE_DIR := tests/integration/node

.PHONY: demo test install dev-install node-deps system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

demo: install
	$(BIN)/python examples/demo.py

dev-install: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'

# npm packages for the interoperability tests (did-jwt-vc and friends), from the lock file.
node-deps:
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error

# Debian packages for integration tests against real servers (installed only when missing).
system-deps:
	bash scripts/system-deps.sh

test: system-deps dev-install node-deps
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/verify.py

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .pytest_cache demo-out
