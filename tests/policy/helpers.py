"""Shared pieces for the policy tests: DIDs, a credential builder, a policy header."""

from __future__ import annotations

from typing import Any

from tests.support import NOW
from vcgate.credentials.models import VerifiedCredential

ISSUER = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
#: Trusted only for ModelAccessCredential.
NARROW = "did:web:narrow.example.com"
UNTRUSTED = "did:web:evil.example.com"
HOLDER = "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH"
OTHER_HOLDER = "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG"

CLAIMS: dict[str, Any] = {
    "tier": "gold",
    "level": 3,
    "beta": True,
    "agent": "agent-7",
    "limits": {"rpm": 50},
    "groups": ["ml", "ops"],
    "models": ["gpt-4o", "llama-3"],
}

_counter = iter(range(1_000_000))


def cred(
    *,
    issuer: str = ISSUER,
    subject: str | None = HOLDER,
    types: tuple[str, ...] = ("ModelAccessCredential",),
    claims: dict[str, Any] | None = None,
    valid_from: float | None = NOW - 3600,
    valid_until: float | None = None,
    status: tuple[dict[str, Any], ...] = (),
    payload: dict[str, Any] | None = None,
    **claim_overrides: Any,
) -> VerifiedCredential:
    """A credential as the verifier would return it (the engine never looks at keys)."""
    body = dict(CLAIMS if claims is None else claims)
    body.update(claim_overrides)
    n = next(_counter)
    return VerifiedCredential(
        format="vc-jose",
        issuer=issuer,
        subject=subject,
        types=("VerifiableCredential", *types),
        claims=body,
        valid_from=valid_from,
        valid_until=valid_until,
        status=status,
        id=f"urn:uuid:test-{n}",
        kid=f"{issuer}#key-1",
        issuer_key=None,  # type: ignore[arg-type]
        payload=payload or {},
        token=f"token-{n}",
    )


STATUS_ENTRY = {"type": "BitstringStatusListEntry", "statusListIndex": "7"}


def header(extra_issuers: str = "", defaults: str = "") -> str:
    """The top of a policy file, up to and including ``rules:``."""
    return f"""version: 1
audience: https://gw.example
trusted_issuers:
  - did: {ISSUER}
{extra_issuers}{defaults}rules:
"""


def line_of(text: str, marker: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line containing ``marker``."""
    seen = 0
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{marker!r} not in text")
