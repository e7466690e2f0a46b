"""Credentials as JWTs: VCDM 2.0 VC-JOSE-COSE (``vc+jwt``) and VCDM 1.1 VC-JWT (``vc`` claim).

This module issues credentials and reads the claims of a parsed JWS into the shape vcgate
checks; the signature and key checks live in :mod:`vcgate.credentials.verifier`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import ContextNotAllowedError, IssuerMismatchError, MalformedError, SubjectMismatchError, TypeMismatchError
from ..keys import PrivateKey
from .jws import JWS, sign_jws
from .models import FORMAT_VC_JOSE, FORMAT_VC_JWT11

__all__ = [
    "CONTEXT_V1",
    "CONTEXT_V2",
    "DEFAULT_CONTEXTS",
    "issue_credential",
    "issue_document",
    "to_xsd_datetime",
    "parse_datetime",
]

CONTEXT_V1 = "https://www.w3.org/2018/credentials/v1"
CONTEXT_V2 = "https://www.w3.org/ns/credentials/v2"

#: JSON-LD contexts vcgate authorizes on. An inline context, or an unknown URL, could remap
#: terms so that the signed data means something other than what its JSON seems to say.
DEFAULT_CONTEXTS: frozenset[str] = frozenset(
    {
        CONTEXT_V1,
        CONTEXT_V2,
        "https://www.w3.org/ns/credentials/examples/v2",
        "https://www.w3.org/2018/credentials/examples/v1",
        "https://w3id.org/vc/status-list/2021/v1",
    }
)

VC_JOSE_TYPS = frozenset({"vc+jwt", "vc+ld+json+jwt"})
VP_JOSE_TYPS = frozenset({"vp+jwt", "vp+ld+json+jwt"})
JWT11_TYPS = frozenset({"JWT", "jwt"})


def to_xsd_datetime(ts: float) -> str:
    """POSIX seconds -> ``2026-01-01T00:00:00Z`` (XML Schema dateTimeStamp, UTC)."""
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: Any, field: str) -> float:
    """An XML Schema dateTime -> POSIX seconds; a value without a zone is read as UTC."""
    if not isinstance(value, str) or len(value) > 64:
        raise MalformedError(f"{field} must be a dateTime string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedError(f"{field} is not a valid dateTime") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def numeric_date(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedError(f"'{name}' must be a NumericDate")
    return float(value)


def as_id(value: Any, field: str) -> str:
    """``"did:..."`` or ``{"id": "did:..."}`` -> the id string."""
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        raise MalformedError(f"{field} must be a URI or an object with an id")
    return value


def as_types(value: Any, required: str) -> tuple[str, ...]:
    types = (value,) if isinstance(value, str) else value
    if not isinstance(types, list | tuple) or not all(isinstance(t, str) for t in types):
        raise MalformedError("'type' must be a string or a list of strings")
    if required not in types:
        raise TypeMismatchError(f"'type' does not include {required}")
    return tuple(types)


def check_contexts(value: Any, base: str, allowed: Collection[str], *, allow_unpinned: bool = False) -> bool:
    """Check ``@context``; return whether every entry is a pinned URL.

    ``allow_unpinned`` accepts inline contexts and unknown URLs (reported by a False result)
    instead of refusing them: only for conformance verification, never for authorisation.
    """
    if not isinstance(value, list) or not value:
        raise MalformedError("'@context' must be a non-empty list")
    if value[0] != base:
        raise ContextNotAllowedError(f"the first '@context' must be {base}")
    pinned = True
    for ctx in value:
        if isinstance(ctx, str) and ctx in allowed:
            continue
        if not allow_unpinned:
            if not isinstance(ctx, str):
                raise ContextNotAllowedError("inline JSON-LD contexts are refused")
            raise ContextNotAllowedError(f"JSON-LD context {ctx[:100]!r} is not pinned as known")
        if not isinstance(ctx, str | dict):
            raise MalformedError("a '@context' entry must be a URL or an object")
        pinned = False
    return pinned


# Internal and short-lived, so not frozen: a frozen dataclass's __init__ costs ~0.1 us per
# field (object.__setattr__), measurable on the per-request path.
@dataclass(slots=True)
class CredentialClaims:
    """What a credential JWT says, before the signature is checked."""

    format: str
    issuer: str
    subject: str | None
    types: tuple[str, ...]
    claims: dict[str, Any]
    valid_from: float | None
    valid_until: float | None
    status: tuple[Mapping[str, Any], ...]
    id: str | None
    contexts_pinned: bool = True


def _subject(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        if len(value) != 1:
            raise MalformedError("credentials with several subjects are not supported")
        value = value[0]
    if not isinstance(value, dict):
        raise MalformedError("'credentialSubject' must be an object")
    return value


def _status(value: Any) -> tuple[Mapping[str, Any], ...]:
    if value is None:
        return ()
    entries = value if isinstance(value, list) else [value]
    if not all(isinstance(e, dict) and isinstance(e.get("type"), str) for e in entries):
        raise MalformedError("'credentialStatus' entries must be objects with a type")
    return tuple(entries)


def _latest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _earliest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def read_credential(jws: JWS, *, contexts: Collection[str], allow_unpinned: bool = False) -> CredentialClaims:
    """Read a credential JWT's claims in either format; refuse inconsistent ones."""
    payload = jws.payload
    typ = jws.typ
    vc = payload.get("vc")
    if typ in VC_JOSE_TYPS:
        if vc is not None:
            raise MalformedError("a vc+jwt credential is the payload itself; it has no 'vc' claim")
        return _read_vcdm2(payload, contexts, allow_unpinned)
    if typ is None or typ in JWT11_TYPS:
        if isinstance(vc, dict):
            return _read_vcdm11(payload, vc, contexts, allow_unpinned)
        if vc is None and typ is None and "@context" in payload:
            return _read_vcdm2(payload, contexts, allow_unpinned)
        raise MalformedError("not a credential: no 'vc' claim")
    raise TypeMismatchError(f"a token of type {typ[:40]!r} is not a credential")


def _read_vcdm2(payload: Mapping[str, Any], contexts: Collection[str], allow_unpinned: bool = False) -> CredentialClaims:
    pinned = check_contexts(payload.get("@context"), CONTEXT_V2, contexts, allow_unpinned=allow_unpinned)
    types = as_types(payload.get("type"), "VerifiableCredential")
    issuer = as_id(payload.get("issuer"), "'issuer'")
    subject = _subject(payload.get("credentialSubject"))
    subject_id = subject.get("id")
    if subject_id is not None and not isinstance(subject_id, str):
        raise MalformedError("'credentialSubject.id' must be a string")
    if "iss" in payload and payload["iss"] != issuer:
        raise IssuerMismatchError("'iss' differs from the credential's issuer")
    if "sub" in payload and payload["sub"] != subject_id:
        raise SubjectMismatchError("'sub' differs from the credential's subject")
    valid_from = _latest(
        parse_datetime(payload["validFrom"], "validFrom") if "validFrom" in payload else None,
        numeric_date(payload, "nbf"),
    )
    valid_until = _earliest(
        parse_datetime(payload["validUntil"], "validUntil") if "validUntil" in payload else None,
        numeric_date(payload, "exp"),
    )
    cid = payload.get("id")
    return CredentialClaims(
        format=FORMAT_VC_JOSE,
        issuer=issuer,
        subject=subject_id,
        types=types,
        claims={k: v for k, v in subject.items() if k != "id"},
        valid_from=valid_from,
        valid_until=valid_until,
        status=_status(payload.get("credentialStatus")),
        id=cid if isinstance(cid, str) else None,
        contexts_pinned=pinned,
    )


def _read_vcdm11(
    payload: Mapping[str, Any], vc: Mapping[str, Any], contexts: Collection[str], allow_unpinned: bool = False
) -> CredentialClaims:
    pinned = check_contexts(vc.get("@context"), CONTEXT_V1, contexts, allow_unpinned=allow_unpinned)
    types = as_types(vc.get("type"), "VerifiableCredential")
    iss = payload.get("iss")
    if not isinstance(iss, str):
        raise MalformedError("a VC-JWT needs an 'iss' claim")
    if "issuer" in vc and as_id(vc["issuer"], "'vc.issuer'") != iss:
        raise IssuerMismatchError("'vc.issuer' differs from 'iss'")
    subject = _subject(vc.get("credentialSubject"))
    subject_id = subject.get("id")
    sub = payload.get("sub")
    if sub is not None and not isinstance(sub, str):
        raise MalformedError("'sub' must be a string")
    if subject_id is not None and sub is not None and subject_id != sub:
        raise SubjectMismatchError("'sub' differs from 'vc.credentialSubject.id'")
    jti = payload.get("jti")
    if "id" in vc and jti is not None and vc["id"] != jti:
        raise MalformedError("'vc.id' differs from 'jti'")
    valid_from = _latest(
        numeric_date(payload, "nbf"),
        parse_datetime(vc["issuanceDate"], "issuanceDate") if "issuanceDate" in vc else None,
    )
    valid_until = _earliest(
        numeric_date(payload, "exp"),
        parse_datetime(vc["expirationDate"], "expirationDate") if "expirationDate" in vc else None,
    )
    return CredentialClaims(
        format=FORMAT_VC_JWT11,
        issuer=iss,
        subject=sub if sub is not None else subject_id,
        types=types,
        claims={k: v for k, v in subject.items() if k != "id"},
        valid_from=valid_from,
        valid_until=valid_until,
        status=_status(vc.get("credentialStatus")),
        id=jti if isinstance(jti, str) else (vc.get("id") if isinstance(vc.get("id"), str) else None),
        contexts_pinned=pinned,
    )


def issue_document(key: PrivateKey, credential: Mapping[str, Any], *, kid: str, alg_name: str | None = None) -> str:
    """Sign a complete VCDM 2.0 credential document as a ``vc+jwt`` (the document is the payload).

    ``alg_name``: ``"Ed25519"`` writes RFC 9864's name for an Ed25519 key (see ``sign_jws``).
    """
    return sign_jws(key, dict(credential), typ="vc+jwt", kid=kid, alg_name=alg_name)


def issue_credential(
    key: PrivateKey,
    *,
    issuer: str,
    kid: str,
    subject: str,
    types: Sequence[str] = (),
    claims: Mapping[str, Any] | None = None,
    valid_from: float,
    valid_until: float | None = None,
    status: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    credential_id: str | None = None,
    format: str = FORMAT_VC_JOSE,
    contexts: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    alg_name: str | None = None,
) -> str:
    """Sign a credential for ``subject`` and return it as a compact JWT.

    ``types`` are added after ``VerifiableCredential``; ``claims`` go into the credential
    subject next to its ``id``; times are POSIX seconds; ``status`` becomes
    ``credentialStatus``. ``format`` is ``"vc-jose"`` (VCDM 2.0, default) or ``"vc-jwt11"``.
    ``extra`` adds top-level credential properties (such as ``delegation``, docs/delegation.md).
    ``alg_name``: ``"Ed25519"`` writes RFC 9864's name for an Ed25519 key instead of the
    deprecated ``"EdDSA"`` (``vcgate issue --alg-name``; verification accepts both).
    """
    claims = dict(claims or {})
    if "id" in claims:
        raise MalformedError("claims must not set 'id': the subject is given separately")
    all_types = ["VerifiableCredential", *[t for t in types if t != "VerifiableCredential"]]
    cid = credential_id or f"urn:uuid:{uuid.uuid4()}"
    subject_obj = {"id": subject, **claims}
    if format == FORMAT_VC_JOSE:
        body: dict[str, Any] = {
            "@context": [CONTEXT_V2, *contexts],
            "id": cid,
            "type": all_types,
            "issuer": issuer,
            "validFrom": to_xsd_datetime(valid_from),
            "credentialSubject": subject_obj,
        }
        if valid_until is not None:
            body["validUntil"] = to_xsd_datetime(valid_until)
        if status is not None:
            body["credentialStatus"] = status
        body.update({k: v for k, v in (extra or {}).items() if k not in body})
        return sign_jws(key, body, typ="vc+jwt", kid=kid, alg_name=alg_name)
    if format == FORMAT_VC_JWT11:
        vc: dict[str, Any] = {
            "@context": [CONTEXT_V1, *contexts],
            "type": all_types,
            "credentialSubject": {k: v for k, v in subject_obj.items() if k != "id"},
        }
        if status is not None:
            vc["credentialStatus"] = status
        vc.update({k: v for k, v in (extra or {}).items() if k not in vc})
        payload: dict[str, Any] = {
            "iss": issuer,
            "sub": subject,
            "jti": cid,
            "nbf": int(valid_from),
            "vc": vc,
        }
        if valid_until is not None:
            payload["exp"] = int(valid_until)
        return sign_jws(key, payload, typ="JWT", kid=kid, alg_name=alg_name)
    raise MalformedError(f"unknown credential format {format!r}; use vc-jose or vc-jwt11")
