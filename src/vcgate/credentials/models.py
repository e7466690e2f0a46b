"""Result objects of verification: what a verified credential or presentation says."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ContextNotAllowedError
from ..keys import PublicKey

__all__ = [
    "VerifiedCredential",
    "VerifiedPresentation",
    "FORMAT_VC_JOSE",
    "FORMAT_VC_JWT11",
    "FORMAT_SD_JWT_VC",
    "require_pinned_contexts",
]

#: W3C VCDM 2.0 secured with VC-JOSE-COSE: ``typ: vc+jwt`` / ``vp+jwt``, the document is the payload.
FORMAT_VC_JOSE = "vc-jose"
#: W3C VCDM 1.1 JWT encoding: ``vc`` / ``vp`` claims plus ``iss``, ``sub``, ``nbf``, ``exp``, ``jti``.
FORMAT_VC_JWT11 = "vc-jwt11"
#: SD-JWT VC (RFC 9901 + the IETF SD-JWT VC draft): ``typ: dc+sd-jwt``; ``types`` is ``(vct,)``,
#: ``subject`` the holder bound by ``cnf``, ``claims`` the disclosed claims only.
FORMAT_SD_JWT_VC = "dc+sd-jwt"


@dataclass(frozen=True, slots=True)
class VerifiedCredential:
    """A credential whose signature, issuer key, and validity window have been checked.

    Times are POSIX seconds. ``claims`` is the credential subject without its ``id``.
    ``status`` holds the ``credentialStatus`` entries (possibly empty): checking them is the
    job of :mod:`vcgate.status`, not of signature verification.
    """

    format: str
    issuer: str
    subject: str | None
    types: tuple[str, ...]
    claims: Mapping[str, Any]
    valid_from: float | None
    valid_until: float | None
    status: tuple[Mapping[str, Any], ...]
    id: str | None
    kid: str
    issuer_key: PublicKey
    payload: Mapping[str, Any]
    token: str
    #: False when a ``@context`` is inline or not pinned (only with
    #: ``Verifier(allow_unpinned_contexts=True)``): an inline context can remap terms, so the
    #: gate must not authorise on such a credential.
    contexts_pinned: bool = True

    def has_type(self, type_: str) -> bool:
        return type_ in self.types


@dataclass(frozen=True, slots=True)
class VerifiedPresentation:
    """A presentation whose holder signature, audience, nonce and credentials were checked."""

    format: str
    holder: str
    holder_key: PublicKey
    kid: str
    audience: tuple[str, ...]
    nonce: str | None
    issued_at: float | None
    expires_at: float | None
    credentials: tuple[VerifiedCredential, ...]
    id: str | None
    payload: Mapping[str, Any]


def require_pinned_contexts(credentials: Iterable[VerifiedCredential]) -> None:
    """Raise ``ContextNotAllowedError`` unless every credential's contexts are all pinned.

    What authorises must call this on whatever reaches the policy: a verifier built with
    ``allow_unpinned_contexts=True`` (conformance) flags an inline or unknown ``@context``
    instead of refusing it, and such a context can remap a term so that the signed data means
    something other than what its JSON seems to say (docs/conformance.md).
    """
    for credential in credentials:
        if not credential.contexts_pinned:
            raise ContextNotAllowedError(
                f"credential {str(credential.id)[:80]} has an inline or unpinned @context; "
                "vcgate authorises only on pinned contexts"
            )
