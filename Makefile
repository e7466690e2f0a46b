# vcgate -- the two commands a newcomer needs:
#   make demo   create .venv, install vcgate, run the end-to-end demo on embedded defaults
#               (in-process EVM, a model server on 127.0.0.1, the OpenAI SDK as the agent)
#   make test   install everything the tests need (Python, npm, Debian packages), run the suite
#   make chain-tools   anvil (npm, for `vcgate chain dev`), solc and OpenZeppelin; needs npm

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NODE_DIR := tests/integration/node
# @digitalbazaar/vc and its Data Integrity suites, for the Data Integrity interop tests.
NODE_DI_DIR := tests/integration/node-di
CHAIN_TOOLS := tools/chain
# @kubernetes-models/istio: Istio's CRD schemas for the deploy/kubernetes/istio checks.
DEPLOY_CHECK := tools/deploy-check

.PHONY: demo test install dev-install node-deps chain-tools system-deps chain-artifact bench conformance clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[demo]'

demo: install
	$(BIN)/python examples/demo.py

# xds-protos (the server extra) ships an old copy of opentelemetry/proto that, installed after
# opentelemetry-proto, breaks the OTLP exporter (ImportError: InstrumentationScope); whichever
# pip installs last wins, so opentelemetry-proto is put back last (docs/observability.md).
dev-install: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --force-reinstall --no-deps \
	  "opentelemetry-proto==$$($(BIN)/python -c 'from importlib.metadata import version; print(version("opentelemetry-proto"))')"

# npm packages from their lock files: did-jwt-vc and friends for the interoperability tests;
# solc, OpenZeppelin and anvil for the registry contract and the local development chain.
node-deps: chain-tools
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	npm ci --prefix $(NODE_DI_DIR) --no-audit --no-fund --loglevel=error
	npm ci --prefix $(DEPLOY_CHECK) --no-audit --no-fund --loglevel=error

# `make install` is Python only; `vcgate chain dev` needs anvil from npm: this target.
chain-tools:
	npm ci --prefix $(CHAIN_TOOLS) --no-audit --no-fund --loglevel=error

# Rebuild the committed ABI + bytecode from the Solidity source (pinned solc, evmVersion cancun).
chain-artifact:
	node $(CHAIN_TOOLS)/build.mjs

# Debian packages for integration tests against real servers (installed only when missing).
system-deps:
	bash scripts/system-deps.sh

test: system-deps dev-install node-deps
	$(BIN)/python -m pytest

# The W3C test suites (VC-API suites against `vcgate serve --vc-api`, vc-jose-cose through
# `vcgate conformance jose`): one line per suite, the failing positive tests, and exit 1 when
# a test listed in scripts/conformance/expected.json fails. Needs node >= 20 and the offline
# kit (W3C_KIT, default ../shared/w3c). UPDATE=1 rewrites expected.json. docs/conformance.md.
conformance: dev-install
	bash scripts/conformance/run.sh

bench: system-deps dev-install node-deps
	$(BIN)/python benchmarks/verify.py
	$(BIN)/python benchmarks/sdjwt.py
	$(BIN)/python benchmarks/revocation.py
	$(BIN)/python benchmarks/session.py
	$(BIN)/python benchmarks/policy.py
	$(BIN)/python benchmarks/audit.py
	$(BIN)/python benchmarks/gate.py
	$(BIN)/python benchmarks/http_gate.py
	$(BIN)/python benchmarks/gateway.py

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules $(NODE_DI_DIR)/node_modules $(CHAIN_TOOLS)/node_modules $(DEPLOY_CHECK)/node_modules .pytest_cache demo-out .conformance
