"""Test support: parties with keys and DIDs, a fixed time, require_real, token forging."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from vcgate.did import DID, did_key_from_public_key
from vcgate.keys import PrivateKey, b64url_encode

#: A fixed "now" for every time-dependent test: 2026-06-01T00:00:00Z.
NOW = 1_780_272_000.0


def require_real(what: str, hint: str) -> None:
    """Skip a test whose real part is missing -- or fail it under CI, where it must be there."""
    message = f"{what} is not available: {hint}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI=true: a missing real part is a failure)")
    pytest.skip(message)


@dataclass(frozen=True)
class Party:
    key: PrivateKey
    did: DID

    @property
    def kid(self) -> str:
        return f"{self.did}#{self.did.method_specific_id}"


def make_party(alg: str = "EdDSA") -> Party:
    key = PrivateKey.generate(alg)
    return Party(key, did_key_from_public_key(key.public_key))



def b64json(obj: object) -> str:
    """base64url of compact JSON; a str is taken as already-serialised JSON (for duplicates)."""
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return b64url_encode(text.encode())


def forge(header: object, payload: object, key: PrivateKey | None = None, signature: bytes | None = None) -> str:
    """Build a compact JWS by hand, signed with ``key`` unless ``signature`` is given."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    if signature is None:
        signature = key.sign(signing_input.encode()) if key is not None else b""
    return f"{signing_input}.{b64url_encode(signature)}"
