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

import json
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
from ..keys import PrivateKey, PublicKey, b64url_decode, b64url_encode
from ..strictjson import DEFAULT_MAX_DEPTH, loads_strict

__all__ = [
    "ALG_NAME_ENV",
    "ALG_NAMES",
    "JWS",
    "JWSParser",
    "alg_name_setting",
    "parse_jws",
    "sign_jws",
    "loads_strict",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
]

DEFAULT_MAX_BYTES = 64 * 1024

#: The setting naming the JOSE ``alg`` vcgate writes for Ed25519 signatures it issues.
ALG_NAME_ENV = "VCGATE_JOSE_ALG_NAME"
#: Its values: the deprecated polymorphic ``EdDSA`` (default: what most peers verify today)
#: and RFC 9864's fully-specified ``Ed25519``. Verification accepts both, always.
ALG_NAMES = ("EdDSA", "Ed25519")

# Header parameters that carry or point to key material. vcgate takes keys only from DID
# documents (or a DPoP proof, which handles its own `jwk` explicitly).
_KEY_HEADERS = frozenset({"jwk", "jku", "x5c", "x5u", "x5t", "x5t#S256"})


def _decode_header(h64: bytes) -> Mapping[str, Any]:
    header = loads_strict(b64url_decode(h64), max_depth=4, what="JOSE header")
    if not isinstance(header, dict):
        raise MalformedError("the JOSE header must be a JSON object")
    return MappingProxyType(header)


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


def _split(token: str | bytes, max_bytes: int) -> tuple[bytes, bytes, bytes, bytes]:
    """The token's bytes and its three segments, under the size cap."""
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
    if not h64:
        raise MalformedError("empty JWS header")
    return raw, h64, p64, s64


def _vet_header(h64: bytes, algorithms: Collection[str], allow_headers: Collection[str]) -> Mapping[str, Any]:
    """Decode the header and apply every header rule; the result is read-only."""
    header = _decode_header(h64)
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise MalformedError("the JOSE header has no 'alg'")
    if alg not in algorithms:
        # Covers "none" in every spelling and every HMAC algorithm: a public key is not a secret.
        raise AlgorithmNotAllowedError(f"algorithm {alg[:20]!r} is not allowed")
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
    return header


def _finish(header: Mapping[str, Any], raw: bytes, h64: bytes, p64: bytes, s64: bytes, max_depth: int) -> JWS:
    # Checked after the header, so that an "alg": "none" token (empty signature) is refused
    # as algorithm_not_allowed.
    if not s64:
        raise MalformedError("empty JWS signature")
    payload = loads_strict(b64url_decode(p64), max_depth=max_depth, what="JWS payload")
    if not isinstance(payload, dict):
        raise MalformedError("the JWS payload must be a JSON object")
    return JWS(header, payload, raw[: len(h64) + 1 + len(p64)], b64url_decode(s64))


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
    a key-carrying header it handles itself (DPoP proofs carry ``jwk``). Keeps no state; a
    verifier that parses many tokens holds a :class:`JWSParser`, which remembers headers.
    """
    raw, h64, p64, s64 = _split(token, max_bytes)
    return _finish(_vet_header(h64, algorithms, allow_headers), raw, h64, p64, s64, max_depth)


class JWSParser:
    """:func:`parse_jws` with fixed arguments and a memo of the headers that passed its checks.

    Headers repeat: every credential of an issuer, every proof of a client carries the same
    header bytes, and the header checks are a pure function of them (the allow-lists are fixed
    per parser). The memo saves the base64, JSON and rule work on the hot path. It belongs to
    the instance (each verifier owns one), holds only headers that passed -- never an error --
    and only headers of up to 1 KiB; it is emptied when full, so it stays under ~1 MiB.
    The memoised header is read-only, so no caller can change what another one sees.
    """

    _MEMO_MAX_HEADER = 1024

    def __init__(
        self,
        *,
        algorithms: Collection[str],
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        allow_headers: Collection[str] = (),
        memo_size: int = 1024,
    ) -> None:
        self.algorithms = frozenset(algorithms)
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.allow_headers = frozenset(allow_headers)
        self._memo_size = memo_size
        self._vetted: dict[bytes, Mapping[str, Any]] = {}

    def parse(self, token: str | bytes) -> JWS:
        """Like :func:`parse_jws`; raises the same errors."""
        raw, h64, p64, s64 = _split(token, self.max_bytes)
        header = self._vetted.get(h64)
        if header is None:
            header = _vet_header(h64, self.algorithms, self.allow_headers)
            if len(h64) <= self._MEMO_MAX_HEADER and self._memo_size:
                if len(self._vetted) >= self._memo_size:
                    self._vetted.clear()
                self._vetted[h64] = header
        return _finish(header, raw, h64, p64, s64, self.max_depth)

    def clear(self) -> None:
        """Forget every memoised header."""
        self._vetted.clear()


def alg_name_setting(value: str | None) -> str:
    """The JOSE name for Ed25519 from a setting (``None`` or empty: ``EdDSA``); raises
    ``ValueError`` naming :data:`ALG_NAME_ENV` for anything else."""
    if not value:
        return ALG_NAMES[0]
    if value not in ALG_NAMES:
        raise ValueError(f"{ALG_NAME_ENV} (--alg-name) must be EdDSA or Ed25519, not {value[:40]!r}")
    return value


def sign_jws(
    key: PrivateKey,
    payload: dict[str, Any],
    *,
    typ: str | None,
    kid: str | None,
    alg_name: str | None = None,
    **header: Any,
) -> str:
    """Sign ``payload`` as a compact JWS with pyjwt (``alg`` is the key's own).

    ``alg_name`` (see :data:`ALG_NAMES`): ``"Ed25519"`` writes RFC 9864's name instead of
    ``"EdDSA"`` for an Ed25519 key; other keys' names are fully specified already.
    """
    headers: dict[str, Any] = dict(header)
    if kid is not None:
        headers["kid"] = kid
    if alg_name_setting(alg_name) == "Ed25519" and key.alg == "EdDSA":
        return _sign_ed25519(key, payload, typ=typ, headers=headers)
    # pyjwt adds typ=JWT unless told otherwise; None removes it.
    headers["typ"] = typ
    return jwt.encode(payload, key.crypto_key, algorithm=key.alg, headers=headers)


def _sign_ed25519(key: PrivateKey, payload: dict[str, Any], *, typ: str | None, headers: dict[str, Any]) -> str:
    """A compact JWS with ``alg: Ed25519``: pyjwt 2 picks its signer from the header's ``alg``
    and does not know RFC 9864's name, so the segments are built here (as pyjwt would)."""
    header = {"alg": "Ed25519", **({"typ": typ} if typ is not None else {}), **headers}
    signing_input = ".".join(
        b64url_encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    )
    return signing_input + "." + b64url_encode(key.sign(signing_input.encode("ascii")))
