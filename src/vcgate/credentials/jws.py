"""Strict compact JWS: the parsing layer under credentials, presentations and DPoP proofs.

pyjwt signs (``jwt.encode``) and its algorithm objects verify signatures, but vcgate parses the
compact serialisation itself, because a gateway must refuse things pyjwt accepts or does not
look at: padded or non-alphabet base64url, duplicate JSON member names (two parsers may pick
different values), NaN/Infinity, non-UTF-8, unbounded size and nesting, unencoded payloads
(RFC 7797 ``b64: false``), ``crit`` extensions it does not implement (RFC 7515 4.1.11), and
keys carried in the header itself (``jwk``, ``jku``, ``x5c``, ``x5u``): a key that arrives
with the token proves nothing about who signed it.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt

from ..errors import (
    AlgorithmNotAllowedError,
    HeaderNotAllowedError,
    MalformedError,
    TokenTooLargeError,
    UnsupportedCriticalError,
)
from ..keys import PrivateKey, PublicKey, b64url_decode
from ..strictjson import DEFAULT_MAX_DEPTH, loads_strict

__all__ = ["JWS", "parse_jws", "sign_jws", "loads_strict", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_DEPTH"]

DEFAULT_MAX_BYTES = 64 * 1024

# Header parameters that carry or point to key material. vcgate takes keys only from DID
# documents (or a DPoP proof, which handles its own `jwk` explicitly).
_KEY_HEADERS = frozenset({"jwk", "jku", "x5c", "x5u", "x5t", "x5t#S256"})


def _decode_header(h64: bytes) -> Mapping[str, Any]:
    header = loads_strict(b64url_decode(h64), max_depth=4, what="JOSE header")
    if not isinstance(header, dict):
        raise MalformedError("the JOSE header must be a JSON object")
    return MappingProxyType(header)


# Headers repeat: every credential of an issuer, every proof of a client carries the same
# bytes. Decoding is a pure function of them, so a bounded memo saves the base64 and JSON work
# on the hot path; the result is read-only so no caller can change what another one sees.
# Errors are not cached, and large headers bypass the memo so it stays small (<~1 MiB).
_decode_header_memo = functools.lru_cache(maxsize=1024)(_decode_header)
_MEMO_MAX_HEADER = 1024


# (header bytes, algorithms, allow_headers) -> the header, for headers that passed every
# header check of parse_jws with those arguments: the checks are a pure function of the three
# (only immutable, hashable argument types are memoised). Bounded like the decode memo.
_vetted: dict[tuple[bytes, Any, Any], Mapping[str, Any]] = {}
_VETTED_MAX = 1024
_HASHABLE = (frozenset, tuple, str)


def _header(h64: bytes) -> Mapping[str, Any]:
    return _decode_header_memo(h64) if len(h64) <= _MEMO_MAX_HEADER else _decode_header(h64)


@dataclass(frozen=True, slots=True)
class JWS:
    """A parsed, not yet verified, compact JWS."""

    header: Mapping[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return self.header["alg"]

    @property
    def typ(self) -> str | None:
        typ = self.header.get("typ")
        return typ if isinstance(typ, str) else None

    @property
    def kid(self) -> str | None:
        return self.header.get("kid")

    def verify_with(self, key: PublicKey) -> None:
        """Raise unless the signature verifies with ``key`` (whose curve must fit ``alg``)."""
        key.verify(self.header["alg"], self.signing_input, self.signature)


def parse_jws(
    token: str | bytes,
    *,
    algorithms: Collection[str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    allow_headers: Collection[str] = (),
) -> JWS:
    """Split, decode and vet a compact JWS whose payload is a JSON object.

    ``algorithms`` is the caller's explicit allow-list. ``allow_headers`` lets a caller accept
    a key-carrying header it handles itself (DPoP proofs carry ``jwk``).
    """
    if isinstance(token, str):
        if len(token) > max_bytes:
            raise TokenTooLargeError(f"token larger than {max_bytes} bytes")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError as exc:
            raise MalformedError("a compact JWS is ASCII") from exc
    elif isinstance(token, bytes):
        raw = token
    else:
        raise MalformedError("a token must be a string")
    if len(raw) > max_bytes:
        raise TokenTooLargeError(f"token larger than {max_bytes} bytes")
    parts = raw.split(b".")
    if len(parts) != 3:
        raise MalformedError("a compact JWS has exactly three parts")
    h64, p64, s64 = parts
    vet_key = None
    if len(h64) <= _MEMO_MAX_HEADER and type(algorithms) in _HASHABLE and type(allow_headers) in _HASHABLE:
        vet_key = (h64, algorithms, allow_headers)
        try:
            header = _vetted.get(vet_key)
        except TypeError:  # a tuple holding something unhashable: no memo
            vet_key = header = None
        if header is not None:
            # This header passed every check below with these arguments before; only the
            # signature part is left to check.
            if not s64:
                raise MalformedError("empty JWS signature")
            return _finish(header, raw, h64, p64, s64, max_depth)
    if not h64:
        raise MalformedError("empty JWS header")
    header = _header(h64)
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise MalformedError("the JOSE header has no 'alg'")
    if alg not in algorithms:
        # Covers "none" in every spelling and every HMAC algorithm: a public key is not a secret.
        raise AlgorithmNotAllowedError(f"algorithm {alg[:20]!r} is not allowed")
    if not s64:
        raise MalformedError("empty JWS signature")
    if "crit" in header:
        crit = header["crit"]
        if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
            raise MalformedError("'crit' must be a non-empty list of names")
        raise UnsupportedCriticalError(f"critical header extension(s) not understood: {', '.join(crit)[:100]}")
    if "b64" in header:
        raise HeaderNotAllowedError("unencoded payloads (RFC 7797 'b64') are refused")
    bad = _KEY_HEADERS.intersection(header).difference(allow_headers)
    if bad:
        raise HeaderNotAllowedError(f"key material in the JOSE header is refused: {', '.join(sorted(bad))}")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise MalformedError("'kid' must be a string")
    typ = header.get("typ")
    if typ is not None and not isinstance(typ, str):
        raise MalformedError("'typ' must be a string")
    if vet_key is not None:
        if len(_vetted) >= _VETTED_MAX:
            _vetted.clear()
        _vetted[vet_key] = header
    return _finish(header, raw, h64, p64, s64, max_depth)


def _finish(header: Mapping[str, Any], raw: bytes, h64: bytes, p64: bytes, s64: bytes, max_depth: int) -> JWS:
    payload = loads_strict(b64url_decode(p64), max_depth=max_depth, what="JWS payload")
    if not isinstance(payload, dict):
        raise MalformedError("the JWS payload must be a JSON object")
    return JWS(header, payload, raw[: len(h64) + 1 + len(p64)], b64url_decode(s64))


def sign_jws(key: PrivateKey, payload: dict[str, Any], *, typ: str | None, kid: str | None, **header: Any) -> str:
    """Sign ``payload`` as a compact JWS with pyjwt (``alg`` is the key's own)."""
    headers: dict[str, Any] = dict(header)
    if kid is not None:
        headers["kid"] = kid
    # pyjwt adds typ=JWT unless told otherwise; None removes it.
    headers["typ"] = typ
    return jwt.encode(payload, key.crypto_key, algorithm=key.alg, headers=headers)
