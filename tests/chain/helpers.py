"""Shared helpers for the chain tests (imported by test modules, never by conftest at import)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools" / "chain"
CHAIN_SRC = REPO / "src" / "vcgate" / "chain"
NPM_HINT = "install the pinned npm tools with: npm ci --prefix tools/chain"
PY_HINT = "install the chain extra: pip install -e '.[chain]' (web3, eth-account, eth-tester[py-evm])"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_chain_stack() -> None:
    """Module level: skip the module without web3 / eth-tester -- fail instead under CI=true."""
    missing = [m for m in ("web3", "eth_account", "eth_tester", "eth") if importlib.util.find_spec(m) is None]
    if not missing:
        return
    message = f"Python packages missing: {', '.join(missing)}; {PY_HINT}"
    if in_ci():
        pytest.fail(message + " (CI=true: a missing real part is a failure)", pytrace=False)
    pytest.skip(message, allow_module_level=True)
