"""IETF Token Status List (draft-ietf-oauth-status-list): issuing and checking.

A Referenced Token (here an SD-JWT VC) points at its status with::

    "status": {"status_list": {"idx": 94567, "uri": "https://issuer.example/statuslists/1"}}

The Status List Token published at ``uri`` is a JWT (``typ: statuslist+jwt``) whose payload
carries ``sub`` (the ``uri`` itself), ``iat``, optionally ``exp`` and ``ttl`` (seconds), and
``status_list: {"bits": 1|2|4|8, "lst": base64url(ZLIB-DEFLATE(bytes))}``. Entry ``idx`` is
``bits`` wide and starts at the least significant bit of byte ``idx * bits // 8`` (the reverse
of the Bitstring Status List's bit order). Values: 0 VALID, 1 INVALID, 2 SUSPENDED; vcgate
refuses any other non-zero value (``status_unsupported``).

Issuer side: :class:`TokenStatusList` is the Bitstring :class:`~vcgate.status.bitstring.StatusList`
(random, never-reused indices; the locked, atomically written state file) published in the token
format: a revocation list as ``bits: 1`` (1 = INVALID), a suspension list as ``bits: 2``
(2 = SUSPENDED).

Verifier side: :class:`TokenStatusListMethod` is the Bitstring method with another decoder:
the same fetcher (https only, SSRF checks, timeout, size cap), the same bounded inflate, the same
TTL cache, failure memo and single flight, so the request path never waits on the network once
warm. The token must be signed by a key the credential issuer's DID authorises for
``assertionMethod`` and its ``iss`` must be that issuer (vcgate requires the list and the
credential to come from one issuer, as for Bitstring lists).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any

from ..credentials.models import VerifiedCredential
from ..credentials.sdjwt import TOKEN_STATUS_ENTRY_TYPE
from ..credentials.jws import parse_jws, sign_jws
from ..credentials.jwt import numeric_date
from ..errors import MalformedError, RevokedError, StatusUnsupportedError, SuspendedError
from ..fetch import URLRefusedError, parse_https_url
from ..keys import PrivateKey, b64url_decode, b64url_encode
from . import StatusResult
from .bitstring import BitstringStatusMethod, StatusList, _invalid, _List, inflate_bounded

__all__ = [
    "TokenStatusList",
    "TokenStatusListMethod",
    "TYP_STATUS_LIST",
    "encode_token_list",
    "decode_token_list",
    "token_status",
    "STATUS_VALID",
    "STATUS_INVALID",
    "STATUS_SUSPENDED",
]

TYP_STATUS_LIST = "statuslist+jwt"
STATUS_VALID, STATUS_INVALID, STATUS_SUSPENDED = 0, 1, 2
_BITS = (1, 2, 4, 8)
_MAX_IDX = 10**12
_KIND = "token"
#: byte -> the byte with its bits in reverse order (MSB-first Bitstring -> LSB-first token).
_MIRROR = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def token_status(data: bytes, idx: int, bits: int) -> int:
    """The ``bits``-wide status at ``idx`` (least significant bits first). Raises IndexError."""
    if idx < 0:
        raise IndexError("negative index")
    per_byte = 8 // bits
    byte = idx // per_byte
    if byte >= len(data):
        raise IndexError("index outside the status list")
    return (data[byte] >> ((idx % per_byte) * bits)) & ((1 << bits) - 1)


def encode_token_list(data: bytes) -> str:
    """``lst``: ZLIB (RFC 1950) DEFLATE at the highest level, base64url without padding."""
    return b64url_encode(zlib.compress(bytes(data), 9))


def decode_token_list(lst: Any, *, max_bytes: int) -> bytes:
    """Decode ``lst`` into at most ``max_bytes`` bytes (bounded inflate; ``status_list_invalid``)."""
    if not isinstance(lst, str) or not lst:
        raise _invalid("the status list's 'lst' is not a string")
    if len(lst) > (max_bytes + 1024) * 4 // 3 + 8:
        raise _invalid("the status list's 'lst' is longer than its size limit allows")
    try:
        compressed = b64url_decode(lst)
    except MalformedError as exc:
        raise _invalid("the status list's 'lst' is not base64url") from exc
    return inflate_bounded(compressed, max_bytes=max_bytes, wbits=zlib.MAX_WBITS, what="ZLIB")


# --- issuer side ------------------------------------------------------------------------------


class TokenStatusList(StatusList):
    """An issuer's Token Status List (see the module docstring); state as for Bitstring lists.

    ``purpose="revocation"`` publishes ``bits: 1`` (a set index is INVALID);
    ``purpose="suspension"`` publishes ``bits: 2`` (a set index is SUSPENDED).
    """

    @property
    def bits_per_status(self) -> int:
        return 1 if self.purpose == "revocation" else 2

    def entry(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        """The ``status`` claim of a credential holding ``index`` (it must be allocated)."""
        super().entry(index)  # validates the index and its allocation
        return {"status_list": {"idx": index, "uri": self.url}}

    def token_bytes(self) -> bytes:
        """The Status List byte array in the token format's bit order and width."""
        if self.purpose == "revocation":  # one bit each: the same bits, each byte mirrored
            return self.bits.translate(_MIRROR)
        out = bytearray(self.length * 2 // 8)
        for byte_index, byte in enumerate(self.bits):
            for bit in range(8) if byte else ():
                if byte & (0x80 >> bit):
                    index = byte_index * 8 + bit
                    out[index // 4] |= STATUS_SUSPENDED << ((index % 4) * 2)
        return bytes(out)

    def to_token(
        self,
        key: PrivateKey,
        *,
        issuer: str,
        kid: str,
        issued_at: float,
        valid_until: float | None = None,
        ttl: float | None = None,
    ) -> str:
        """The signed Status List Token (``statuslist+jwt``) to publish at :attr:`url`.

        ``issuer`` must be the issuer of the credentials that point here; ``valid_until``
        becomes ``exp`` (a verifier never uses the token after it); ``ttl`` (seconds) tells
        verifiers how long to cache it (vcgate bounds it).
        """
        payload: dict[str, Any] = {
            "iss": issuer,
            "sub": self.url,
            "iat": int(issued_at),
            "status_list": {"bits": self.bits_per_status, "lst": encode_token_list(self.token_bytes())},
        }
        if valid_until is not None:
            payload["exp"] = int(valid_until)
        if ttl is not None:
            if not ttl >= 0 or math.isinf(ttl):
                raise ValueError("ttl must be a non-negative number of seconds")
            payload["ttl"] = int(ttl)
        return sign_jws(key, payload, typ=TYP_STATUS_LIST, kid=kid)

    def to_credential(self, *args: Any, **kwargs: Any) -> str:  # pragma: no cover - guard
        raise TypeError("a Token Status List is published with to_token(), not as a credential")

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "statusListFormat": _KIND}

    @classmethod
    def from_json(cls, data: Any) -> TokenStatusList:
        if not isinstance(data, dict) or data.get("statusListFormat") != _KIND:
            raise MalformedError("not a vcgate Token Status List state file (created with --format token)")
        return super().from_json(data)  # type: ignore[return-value]


# --- verifier side ----------------------------------------------------------------------------


def _parse_reference(entry: Mapping[str, Any]) -> tuple[int, str]:
    idx, uri = entry.get("idx"), entry.get("uri")
    if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < _MAX_IDX:
        raise MalformedError("'status.status_list.idx' must be a non-negative integer")
    if not isinstance(uri, str) or not uri:
        raise MalformedError("'status.status_list.uri' must be a URL")
    return idx, uri


class TokenStatusListMethod(BitstringStatusMethod):
    """Checks ``status.status_list`` references of SD-JWT VCs against Status List Tokens.

    Takes the same arguments as :class:`~vcgate.status.bitstring.BitstringStatusMethod` (its
    verifier, fetcher, TTL bounds, stale grace, retry interval, size caps and cache bounds);
    ``min_entries`` does not apply (the draft sets no minimum size).
    """

    types = (TOKEN_STATUS_ENTRY_TYPE,)
    accept = "application/statuslist+jwt, application/jwt;q=0.9"

    def check(self, credential: VerifiedCredential, entry: Mapping[str, Any]) -> StatusResult:
        """``StatusResult`` for VALID; ``RevokedError`` (INVALID), ``SuspendedError``
        (SUSPENDED), ``StatusUnsupportedError`` (other values), ``StatusListInvalidError``,
        ``StatusUnavailableError`` or ``MalformedError`` otherwise."""
        idx, uri = _parse_reference(entry)
        try:
            parse_https_url(uri)
        except URLRefusedError as exc:
            raise _invalid(f"the status list URL is refused: {exc.message}") from exc
        lst = self._get_list(uri)
        if lst.issuer != credential.issuer:
            raise _invalid("the status list token is not issued by the credential's issuer")
        try:
            value = token_status(lst.bits, idx, lst.size)
        except IndexError as exc:
            raise _invalid(f"status index {idx} is outside the status list") from exc
        if value == STATUS_VALID:
            return StatusResult(type=TOKEN_STATUS_ENTRY_TYPE, purpose="status", source=uri, as_of=lst.fetched_at)
        if value == STATUS_INVALID:
            raise RevokedError(value=f"{value:#x}")
        if value == STATUS_SUSPENDED:
            raise SuspendedError(value=f"{value:#x}")
        raise StatusUnsupportedError(f"the credential's status is {value:#x}; vcgate accepts only VALID (0)",
                                     value=f"{value:#x}")

    def _decode(self, url: str, now: float, body: bytes) -> _List:
        text = self._token_text(body)
        payload, issuer = self._mapped(lambda: self._verify_token(text))
        if payload.get("sub") != url:
            raise _invalid("the status list token's 'sub' is not the URL it was fetched from")
        issued = numeric_date(payload, "iat")
        if issued is None:
            raise _invalid("the status list token has no 'iat'")
        if issued > now + self._verifier.leeway:
            raise _invalid("the status list token was issued in the future")
        exp = numeric_date(payload, "exp")
        if exp is not None and now - self._verifier.leeway >= exp:
            raise _invalid("the status list token has expired")
        body_ = payload.get("status_list")
        if not isinstance(body_, dict):
            raise _invalid("the status list token has no 'status_list' object")
        bits = body_.get("bits")
        if isinstance(bits, bool) or bits not in _BITS:
            raise _invalid("the status list's 'bits' must be 1, 2, 4 or 8")
        data = decode_token_list(body_.get("lst"), max_bytes=self.max_bitstring_bytes)
        ttl = self.default_ttl
        if "ttl" in payload:
            hint = payload["ttl"]
            if isinstance(hint, bool) or not isinstance(hint, (int, float)) or not 0 <= hint < 1e12:
                raise _invalid("the status list token's 'ttl' must be a non-negative number of seconds")
            ttl = float(hint)
        ttl = min(max(ttl, self.min_ttl), self.max_ttl)
        hard_until = exp if exp is not None else math.inf
        return _List(url=url, issuer=issuer, family=_KIND, purposes=frozenset(), bits=data, fetched_at=now,
                     expires_at=min(now + ttl, hard_until), hard_until=hard_until, valid_from=issued, size=bits)

    def _verify_token(self, text: str) -> tuple[dict[str, Any], str]:
        verifier = self._verifier
        jws = parse_jws(text, algorithms=verifier.algorithms, max_bytes=verifier.max_token_bytes,
                        max_depth=verifier.max_depth)
        if jws.typ != TYP_STATUS_LIST:
            raise _invalid(f"a status list token has typ statuslist+jwt, not {str(jws.typ)[:40]!r}")
        issuer = jws.payload.get("iss")
        if not isinstance(issuer, str) or not issuer.startswith("did:"):
            raise _invalid("the status list token's 'iss' must be the issuer's DID")
        verifier._verify_signer(jws, issuer, "assertionMethod")
        return jws.payload, issuer

