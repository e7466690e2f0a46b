"""VC-JOSE-COSE issue and verify with a key given directly, for the W3C vc-jose-cose test suite.

The suite drives one process per test (``vcgate conformance jose issue|verify --input FILE
--key FILE --feature FEATURE --output FILE``): the key file is a verification method with
``publicKeyJwk`` (and ``secretKeyJwk`` to issue), whose controller is an https URL, not a DID.
So unlike :class:`vcgate.credentials.Verifier` (keys only from the signer's DID document),
the key here is the one named on the command line: this is a conformance harness, not a
way to authorise. Features: ``credential_jose`` and ``presentation_jose`` (SD-JWT and COSE are
not claimed here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .credentials.datamodel import check_credential, check_presentation
from .credentials.jsonld import ContextLoader, canonize
from .credentials.jws import parse_jws, sign_jws
from .credentials.jwt import DEFAULT_CONTEXTS, VC_JOSE_TYPS, VP_JOSE_TYPS, read_credential
from .credentials.presentation import read_presentation
from .errors import ExpiredError, MalformedError, NotYetValidError, TypeMismatchError, VCGateError
from .keys import ALGORITHMS, PrivateKey, PublicKey
from .strictjson import loads_strict

__all__ = ["FEATURES", "JoseResult", "jose_issue", "jose_verify"]

FEATURES = ("credential_jose", "presentation_jose")
_LEEWAY = 60.0


@dataclass(frozen=True, slots=True)
class JoseResult:
    """``result`` is ``success`` or ``failure``; ``data`` the compact JWS or the error."""

    result: str
    data: str

    def to_json(self) -> dict[str, str]:
        return {"result": self.result, "data": self.data}


def _jwk(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get(name), dict):
        raise MalformedError(f"the key file has no {name}")
    return {k: v for k, v in value[name].items() if k != "kid"}


def _feature(feature: str) -> None:
    if feature not in FEATURES:
        raise MalformedError(f"feature {feature!r} is not supported (only {', '.join(FEATURES)})")


def jose_issue(
    document: Any, method: Mapping[str, Any], *, feature: str, alg_name: str | None = None
) -> JoseResult:
    """Secure ``document`` (a credential or presentation) as a vc+jwt / vp+jwt with the method's key.

    ``alg_name`` "Ed25519" writes RFC 9864's name instead of "EdDSA" for Ed25519 keys.
    """
    try:
        _feature(feature)
        key = PrivateKey.from_jwk(_jwk(method, "secretKeyJwk"))
        if feature == "credential_jose":
            check_credential(document)
            canonize(document, ContextLoader())  # JSON-LD processable without loss
            typ = "vc+jwt"
        else:
            check_presentation(document)
            typ = "vp+jwt"
        kid = str(method.get("id"))
        return JoseResult("success", sign_jws(key, dict(document), typ=typ, kid=kid, alg_name=alg_name))
    except VCGateError as exc:
        return JoseResult("failure", f"{exc.code}: {exc.message}")


def _window(payload: Mapping[str, Any], now: float, not_before: float | None, not_after: float | None) -> None:
    if not_before is not None and now + _LEEWAY < not_before:
        raise NotYetValidError()
    if not_after is not None and now - _LEEWAY >= not_after:
        raise ExpiredError()


def _verify_credential(token: str, key: PublicKey, now: float) -> None:
    jws = parse_jws(token, algorithms=ALGORITHMS)
    if jws.typ not in VC_JOSE_TYPS:
        raise TypeMismatchError(f"a credential must be typed vc+jwt, not {str(jws.typ)[:40]!r}")
    jws.verify_with(key)
    claims = read_credential(jws, contexts=DEFAULT_CONTEXTS, allow_unpinned=True)
    check_credential(jws.payload)
    _window(jws.payload, now, claims.valid_from, claims.valid_until)


def jose_verify(
    text: str, method: Mapping[str, Any], *, feature: str, clock: Callable[[], float] = time.time
) -> JoseResult:
    """Verify a compact vc+jwt / vp+jwt (and a presentation's credentials) with the method's key."""
    try:
        _feature(feature)
        token = text.strip()
        if token.startswith("{"):
            loads_strict(token.encode(), max_depth=64, what="input")  # well-formed, but unsecured
            raise MalformedError("an unsecured document is not a verifiable credential or presentation")
        key = PublicKey.from_jwk(_jwk(method, "publicKeyJwk"))
        now = clock()
        if feature == "credential_jose":
            _verify_credential(token, key, now)
        else:
            jws = parse_jws(token, algorithms=ALGORITHMS)
            if jws.typ not in VP_JOSE_TYPS:
                raise TypeMismatchError(f"a presentation must be typed vp+jwt, not {str(jws.typ)[:40]!r}")
            jws.verify_with(key)
            presentation = read_presentation(jws, contexts=DEFAULT_CONTEXTS, max_credentials=16)
            check_presentation(jws.payload)
            _window(jws.payload, now, presentation.not_before, presentation.expires_at)
            for credential in presentation.credentials:
                _verify_credential(credential, key, now)
        return JoseResult("success", "verified")
    except VCGateError as exc:
        return JoseResult("failure", f"{exc.code}: {exc.message}")
