"""Shared fixtures: an issuer and a holder with did:key identities, and a fixed clock.

Every ``vcgate issue`` a test runs (in-process or as a child process) records into one
throwaway issuer's record for the session, never the user's ~/.local/share/vcgate.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

from tests.support import NOW, Party, make_party


_RECORD_DIR = tempfile.mkdtemp(prefix="vcgate-test-record-")
atexit.register(shutil.rmtree, _RECORD_DIR, True)
os.environ.setdefault("VCGATE_ISSUER_RECORD", os.path.join(_RECORD_DIR, "issued.sqlite3"))


@pytest.fixture
def issuer() -> Party:
    return make_party("EdDSA")


@pytest.fixture
def holder() -> Party:
    return make_party("EdDSA")


@pytest.fixture
def clock():
    return lambda: NOW
