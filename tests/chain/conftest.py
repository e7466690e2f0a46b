"""Fixtures for the chain tests: one embedded chain and registry per module, funded accounts.

Imports of vcgate.chain stay inside the fixtures: without the chain extra the test modules
skip themselves (tests.chain.helpers.require_chain_stack), and this file must still import.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

ETHER = 10**18


@pytest.fixture(scope="module")
def chain() -> Any:
    from vcgate.chain import connect

    return connect("embedded")


def _funded(chain: Any) -> Any:
    from vcgate.chain import eth_account_from_key
    from vcgate.keys import PrivateKey

    account = eth_account_from_key(PrivateKey.generate("ES256K"))
    chain.fund(account.address, 10 * ETHER)
    return account


@pytest.fixture(scope="module")
def owner(chain: Any) -> Any:
    """The issuer: owns its namespace."""
    return _funded(chain)


@pytest.fixture(scope="module")
def delegate(chain: Any) -> Any:
    return _funded(chain)


@pytest.fixture(scope="module")
def stranger(chain: Any) -> Any:
    return _funded(chain)


@pytest.fixture(scope="module")
def relayer(chain: Any) -> Any:
    """Submits signed (EIP-712) writes for others and pays their gas."""
    return _funded(chain)


@pytest.fixture(scope="module")
def registry(chain: Any, owner: Any) -> Any:
    from vcgate.chain import RegistryClient, deploy_registry

    return RegistryClient(chain, deploy_registry(chain, owner))


@pytest.fixture
def list_id() -> bytes:
    """A fresh revocation list per test, so tests sharing a registry do not see each other."""
    return os.urandom(32)


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)
