"""Shared fixtures: an issuer and a holder with did:key identities, and a fixed clock."""

from __future__ import annotations

import pytest

from tests.support import NOW, Party, make_party


@pytest.fixture
def issuer() -> Party:
    return make_party("EdDSA")


@pytest.fixture
def holder() -> Party:
    return make_party("EdDSA")


@pytest.fixture
def clock():
    return lambda: NOW
