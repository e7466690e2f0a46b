"""Presentations as JWTs: VCDM 2.0 ``vp+jwt`` and VCDM 1.1 ``vp`` claim.

A presentation is signed by its holder with a key the holder's DID authorises for
``authentication``; it names the audience (``aud``) and echoes the verifier's ``nonce`` so it
cannot be replayed elsewhere or later. Credentials travel inside it as JWT strings: in VCDM 2.0
wrapped as ``EnvelopedVerifiableCredential`` objects with a ``data:application/vc+jwt,`` id.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import IssuerMismatchError, MalformedError, TypeMismatchError
from ..keys import PrivateKey
from .jws import JWS, sign_jws
from .jwt import CONTEXT_V1, CONTEXT_V2, JWT11_TYPS, VC_JOSE_TYPS, VP_JOSE_TYPS, as_id, as_types, check_contexts, numeric_date
from .models import FORMAT_VC_JOSE, FORMAT_VC_JWT11

__all__ = ["create_presentation", "ENVELOPE_PREFIXES"]

#: ``data:`` URL prefixes of enveloped credentials vcgate unwraps.
ENVELOPE_PREFIXES = ("data:application/vc+jwt,", "data:application/vc-ld+jwt,", "data:application/jwt,",
                     "data:application/dc+sd-jwt,", "data:application/vc+sd-jwt,")
_SD_JWT_ENVELOPE = "data:application/dc+sd-jwt,"  # an SD-JWT VC chain root (docs/delegation.md)


# Internal and short-lived, so not frozen: a frozen dataclass's __init__ costs ~0.1 us per
# field (object.__setattr__), measurable on the per-request path.
@dataclass(slots=True)
class PresentationClaims:
    format: str
    holder: str | None
    audience: tuple[str, ...]
    nonce: str | None
    issued_at: float | None
    not_before: float | None
    expires_at: float | None
    credentials: tuple[str, ...]
    id: str | None


def _audience(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise MalformedError("'aud' must be a string or a list of strings")
    return tuple(values)


def _unwrap(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        types = entry.get("type")
        types = [types] if isinstance(types, str) else types
        ident = entry.get("id")
        if isinstance(types, list) and "EnvelopedVerifiableCredential" in types and isinstance(ident, str):
            for prefix in ENVELOPE_PREFIXES:
                if ident.startswith(prefix):
                    return ident[len(prefix) :]
        raise MalformedError("embedded credentials must be JWTs (EnvelopedVerifiableCredential)")
    raise MalformedError("an embedded credential must be a JWT string or an envelope")


def _credentials(value: Any, limit: int) -> tuple[str, ...]:
    if value is None:
        return ()
    entries = value if isinstance(value, list) else [value]
    if len(entries) > limit:
        raise MalformedError(f"a presentation may carry at most {limit} credentials")
    return tuple(_unwrap(e) for e in entries)


def read_presentation(jws: JWS, *, contexts: Collection[str], max_credentials: int) -> PresentationClaims:
    payload = jws.payload
    typ = jws.typ
    nonce = payload.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise MalformedError("'nonce' must be a string")
    pid = payload.get("jti", payload.get("id"))
    common = dict(
        audience=_audience(payload.get("aud")),
        nonce=nonce,
        issued_at=numeric_date(payload, "iat"),
        not_before=numeric_date(payload, "nbf"),
        expires_at=numeric_date(payload, "exp"),
        id=pid if isinstance(pid, str) else None,
    )
    vp = payload.get("vp")
    if typ in VP_JOSE_TYPS or (typ is None and vp is None and "@context" in payload):
        if vp is not None:
            raise MalformedError("a vp+jwt presentation is the payload itself; it has no 'vp' claim")
        check_contexts(payload.get("@context"), CONTEXT_V2, contexts)
        as_types(payload.get("type"), "VerifiablePresentation")
        holder = as_id(payload["holder"], "'holder'") if "holder" in payload else None
        if "iss" in payload and holder is not None and payload["iss"] != holder:
            raise IssuerMismatchError("'iss' differs from the presentation's holder")
        if holder is None and isinstance(payload.get("iss"), str):
            holder = payload["iss"]
        return PresentationClaims(
            format=FORMAT_VC_JOSE,
            holder=holder,
            credentials=_credentials(payload.get("verifiableCredential"), max_credentials),
            **common,  # type: ignore[arg-type]
        )
    if typ is None or typ in JWT11_TYPS:
        if not isinstance(vp, dict):
            raise MalformedError("not a presentation: no 'vp' claim")
        check_contexts(vp.get("@context"), CONTEXT_V1, contexts)
        as_types(vp.get("type"), "VerifiablePresentation")
        iss = payload.get("iss")
        if not isinstance(iss, str):
            raise MalformedError("a VP-JWT needs an 'iss' claim (the holder)")
        if "holder" in vp and as_id(vp["holder"], "'vp.holder'") != iss:
            raise IssuerMismatchError("'vp.holder' differs from 'iss'")
        return PresentationClaims(
            format=FORMAT_VC_JWT11,
            holder=iss,
            credentials=_credentials(vp.get("verifiableCredential"), max_credentials),
            **common,  # type: ignore[arg-type]
        )
    if typ in VC_JOSE_TYPS:
        raise TypeMismatchError("a credential is not a presentation")
    raise TypeMismatchError(f"a token of type {typ[:40]!r} is not a presentation")


def create_presentation(
    key: PrivateKey,
    *,
    holder: str,
    kid: str,
    credentials: Sequence[str],
    audience: str | Sequence[str],
    nonce: str | None,
    issued_at: float,
    lifetime: float | None = 300.0,
    format: str = FORMAT_VC_JOSE,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """Sign a presentation of ``credentials`` (compact JWTs) for ``audience`` and ``nonce``."""
    aud: str | list[str] = audience if isinstance(audience, str) else list(audience)
    claims: dict[str, Any] = {"aud": aud, "iat": int(issued_at), "jti": f"urn:uuid:{uuid.uuid4()}"}
    if nonce is not None:
        claims["nonce"] = nonce
    if lifetime is not None:
        claims["exp"] = int(issued_at + lifetime)
    if format == FORMAT_VC_JOSE:
        body: dict[str, Any] = {
            "@context": [CONTEXT_V2],
            "type": ["VerifiablePresentation"],
            "holder": holder,
            "verifiableCredential": [
                {"@context": CONTEXT_V2, "type": "EnvelopedVerifiableCredential",
                 "id": (_SD_JWT_ENVELOPE if "~" in c else ENVELOPE_PREFIXES[0]) + c}
                for c in credentials
            ],
            **claims,
            **(extra_claims or {}),
        }
        return sign_jws(key, body, typ="vp+jwt", kid=kid)
    if format == FORMAT_VC_JWT11:
        payload: dict[str, Any] = {
            "iss": holder,
            "nbf": int(issued_at),
            "vp": {
                "@context": [CONTEXT_V1],
                "type": ["VerifiablePresentation"],
                "verifiableCredential": list(credentials),
            },
            **claims,
            **(extra_claims or {}),
        }
        return sign_jws(key, payload, typ="JWT", kid=kid)
    raise MalformedError(f"unknown presentation format {format!r}; use vc-jose or vc-jwt11")
