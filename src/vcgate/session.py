"""Session mode: DPoP-bound access tokens and DPoP proofs (RFC 9449).

An agent trades one verified presentation for a short-lived access token bound to its key
(``cnf.jkt``); each later call carries the token and a fresh proof of possession of that key::

    Authorization: DPoP <access token>
    DPoP: <proof>

* :class:`TokenIssuer` / :class:`TokenVerifier` -- the gateway's own ``at+jwt`` tokens
  (RFC 9068 shape), signed with a gateway key; the verifier knows only the gateway's keys
  (current and previous, for rotation) and keeps verified tokens in a small per-instance
  cache, so a session's later calls cost no signature check for the token.
* :func:`create_proof` -- the client side: a ``dpop+jwt`` over method, URI, time and token.
* :class:`DPoPVerifier` -- the server side of RFC 9449 section 4.3 (and 7.1, 9): every check,
  each failure a typed error; the ``jti`` replay cache lives in an injected store
  (:mod:`vcgate.stores`). No server nonces (``DPoP-Nonce``): see :class:`DPoPVerifier`.
* :class:`SessionVerifier` -- both, in the order that binds them: token, then the proof made
  with the token's key for this request.
* :func:`www_authenticate` -- the ``WWW-Authenticate: DPoP`` challenge for a refusal.

Pure code: no I/O except through the stores, clocks injected, nothing mutable at module level.
The exact wire format is in ``docs/protocol-session.md``.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .credentials.jws import JWS, JWSParser, sign_jws
from .keys import ALGORITHMS, PrivateKey, PublicKey, b64url_encode
from .errors import (
    DPoPInvalidError,
    DPoPKeyMismatchError,
    DPoPReplayedError,
    TokenExpiredError,
    TokenInvalidError,
    VCGateError,
)
from .stores import MemoryReplayStore, ReplayStore

__all__ = [
    "ACCESS_TOKEN_TYP",
    "DPOP_TYP",
    "AccessToken",
    "DPoPProof",
    "DPoPVerifier",
    "Session",
    "SessionVerifier",
    "TokenIssuer",
    "TokenVerifier",
    "access_token_hash",
    "create_proof",
    "normalize_htu",
    "www_authenticate",
]

ACCESS_TOKEN_TYP = "at+jwt"
DPOP_TYP = "dpop+jwt"

Clock = Callable[[], float]

_DEFAULT_TOKEN_BYTES = 8 * 1024
_DEFAULT_PROOF_BYTES = 8 * 1024
_MAX_JTI = 256
_MAX_NONCE = 256
# Cache only short keys, so that a full cache stays small whatever clients send (<= ~4 MiB).
_MAX_CACHED_KEY = 1024
# A SHA-256 JWK thumbprint (RFC 7638) in base64url.
_JKT_RE = re.compile(r"[A-Za-z0-9_-]{43}")
# RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E.
_SCOPE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 9110 token (a method name).
_METHOD_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HTU_CHARS = re.compile(r"[\x21-\x7e]+")
_RESERVED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "cnf", "scope", "credential_ids"}
)


def _typ_is(typ: str | None, expected: str) -> bool:
    # Media type names compare case-insensitively; RFC 7515 4.1.9 lets "application/" go.
    if typ is None:
        return False
    typ = typ.lower()
    return typ == expected or typ == "application/" + expected


def _is_number(value: Any) -> bool:
    # type(), not isinstance(): a JSON true is a bool, and bool is an int. A float can still
    # be infinite (1e999 parses as inf).
    t = type(value)
    return t is int or (t is float and math.isfinite(value))


def access_token_hash(token: str) -> str:
    """``ath``: base64url(SHA-256(ASCII token)), RFC 9449 section 4.2."""
    return b64url_encode(hashlib.sha256(token.encode("ascii")).digest())


def _check_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    algs = frozenset(algorithms)
    if not algs:
        raise ValueError("give at least one algorithm")
    unknown = algs.difference(ALGORITHMS)
    if unknown:
        # Also keeps out "none" and every HMAC: a public key is not a shared secret.
        raise ValueError(f"unsupported algorithm(s) {sorted(unknown)}; use some of {ALGORITHMS}")
    return algs


class _BoundedCache:
    """A small insertion-ordered cache; oldest out first. Reads take no lock (dict.get is atomic)."""

    __slots__ = ("_data", "_lock", "_max")

    def __init__(self, max_entries: int) -> None:
        self._data: dict[Any, Any] = {}
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        return self._data.get(key)

    def put(self, key: Any, value: Any) -> None:
        if self._max <= 0:
            return
        with self._lock:
            data = self._data
            while len(data) >= self._max:
                del data[next(iter(data))]
            data[key] = value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


# --- URIs ----------------------------------------------------------------------------------

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _pct_normalize(text: str) -> str:
    def fix(m: re.Match[str]) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch in _UNRESERVED else "%" + m.group(1).upper()

    return _PCT_RE.sub(fix, text) if "%" in text else text


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4, for the absolute paths of http(s) URIs."""
    if "/." not in path:
        return path
    rest, out = path, []
    while rest:
        if rest.startswith("/./"):
            rest = rest[2:]
        elif rest == "/.":
            rest = "/"
        elif rest.startswith("/../"):
            rest = rest[3:]
            if out:
                out.pop()
        elif rest == "/..":
            rest = "/"
            if out:
                out.pop()
        else:
            end = rest.find("/", 1)
            end = len(rest) if end == -1 else end
            out.append(rest[:end])
            rest = rest[end:]
    return "".join(out)


def normalize_htu(url: str) -> str:
    """The form two ``htu`` values are compared in (RFC 9449 section 4.3, RFC 3986 6.2.2-6.2.3).

    Scheme and host lower-cased, the scheme's default port dropped, percent-encoding
    normalised, dot segments removed, an empty path made ``/``, query and fragment dropped.
    Only ``http`` and ``https``; no userinfo; printable ASCII only (an IRI must be
    percent-encoded). Raises ``ValueError`` for anything else.
    """
    if not isinstance(url, str) or not _HTU_CHARS.fullmatch(url):
        raise ValueError("not a URI of printable ASCII")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("htu must be an http or https URI")
    if "@" in parts.netloc:
        raise ValueError("htu must not carry userinfo")
    host = parts.hostname
    if not host:
        raise ValueError("htu has no host")
    port = parts.port  # ValueError when not a number in range
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _remove_dot_segments(_pct_normalize(parts.path)) or "/"
    return f"{scheme}://{netloc}{path}"


# --- access tokens -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A verified access token. ``ath`` is what a DPoP proof sent with it must carry."""

    issuer: str
    subject: str
    audience: tuple[str, ...]
    client_id: str | None
    jkt: str
    scopes: tuple[str, ...]
    credential_ids: tuple[str, ...]
    issued_at: float
    expires_at: float
    jti: str
    kid: str
    ath: str
    claims: Mapping[str, Any]

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class TokenIssuer:
    """Mints DPoP-bound ``at+jwt`` access tokens with a gateway key.

    ``kid`` defaults to the key's JWK thumbprint, which is what a :class:`TokenVerifier`
    given a list of public keys looks tokens up by.
    """

    def __init__(
        self,
        *,
        key: PrivateKey,
        issuer: str,
        lifetime: float = 300,
        clock: Clock = time.time,
        kid: str | None = None,
    ) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("issuer (the gateway's URL) is required")
        if not 1 <= lifetime <= 86400:
            raise ValueError("lifetime must be between 1 second and 1 day")
        self._key = key
        self.issuer = issuer
        self.lifetime = lifetime
        self._clock = clock
        self.kid = kid if kid is not None else key.public_key.thumbprint()

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key

    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        """Sign other gateway-issued claims (a usage reservation) with the token key."""
        return sign_jws(self._key, claims, typ=typ, kid=self.kid)

    def issue(
        self,
        *,
        subject: str,
        holder_jkt: str,
        scopes: Iterable[str],
        audience: str | Sequence[str],
        credential_ids: Iterable[str] = (),
        client_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed access token for ``subject`` bound to the key whose thumbprint is ``holder_jkt``.

        ``client_id`` (RFC 9068 requires one) defaults to the subject: the holder is the client.
        ``extra`` adds private claims; it may not override the ones set here.
        """
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject is required")
        if not isinstance(holder_jkt, str) or not _JKT_RE.fullmatch(holder_jkt):
            raise ValueError("holder_jkt must be an RFC 7638 SHA-256 thumbprint (43 base64url characters)")
        scope_list = list(scopes)
        if not all(isinstance(s, str) and _SCOPE_RE.fullmatch(s) for s in scope_list):
            raise ValueError("scopes must be RFC 6749 scope tokens (no spaces, quotes or backslashes)")
        aud = [audience] if isinstance(audience, str) else list(audience)
        if not aud or not all(isinstance(a, str) and a for a in aud):
            raise ValueError("audience must be a non-empty string or list of strings")
        ids = list(credential_ids)
        if not all(isinstance(i, str) for i in ids):
            raise ValueError("credential_ids must be strings")
        if extra and _RESERVED_CLAIMS.intersection(extra):
            raise ValueError(f"extra claims may not set {sorted(_RESERVED_CLAIMS.intersection(extra))}")
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": aud[0] if len(aud) == 1 else aud,
            "iat": now,
            "exp": now + int(self.lifetime),
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id if client_id is not None else subject,
            "cnf": {"jkt": holder_jkt},
        }
        if scope_list:
            claims["scope"] = " ".join(dict.fromkeys(scope_list))
        if ids:
            claims["credential_ids"] = ids
        if extra:
            claims.update(extra)
        return sign_jws(self._key, claims, typ=ACCESS_TOKEN_TYP, kid=self.kid)


class TokenVerifier:
    """Verifies the gateway's own access tokens.

    ``keys``: the gateway's public keys, as ``{kid: key}`` or a list (looked up by JWK
    thumbprint) -- the current one and the previous ones still inside a token lifetime. A
    token's ``kid`` only ever selects among these. ``algorithms`` defaults to the keys' own.

    Verified tokens are kept (up to ``cache_size``, keyed by the exact token string); a hit
    costs a dict lookup and the time check, no signature.
    """

    def __init__(
        self,
        *,
        keys: Mapping[str, PublicKey] | Iterable[PublicKey],
        issuer: str,
        audience: str | Collection[str],
        clock: Clock = time.time,
        leeway: float = 5,
        algorithms: Iterable[str] | None = None,
        max_bytes: int = _DEFAULT_TOKEN_BYTES,
        cache_size: int = 4096,
    ) -> None:
        table = dict(keys) if isinstance(keys, Mapping) else {k.thumbprint(): k for k in keys}
        if not table or not all(isinstance(k, PublicKey) for k in table.values()):
            raise ValueError("give at least one gateway PublicKey")
        self._keys: dict[str, PublicKey] = table
        self._algorithms = _check_algorithms(
            algorithms if algorithms is not None else (k.alg for k in table.values())
        )
        self.issuer = issuer
        self._audience = frozenset([audience] if isinstance(audience, str) else audience)
        if not self._audience:
            raise ValueError("audience is required")
        if not 0 <= leeway <= 300:
            raise ValueError("leeway must be between 0 and 300 seconds")
        self._clock = clock
        self._leeway = leeway
        self._max_bytes = max_bytes
        self._jws = JWSParser(algorithms=self._algorithms, max_bytes=max_bytes, max_depth=8)
        self._cache = _BoundedCache(cache_size)

    def verify(self, token: str) -> AccessToken:
        """Return the verified token or raise :class:`TokenInvalidError` / :class:`TokenExpiredError`."""
        if not isinstance(token, str):
            raise TokenInvalidError("the access token must be a string", reason="malformed")
        hit: AccessToken | None = self._cache.get(token)
        if hit is not None:
            self._check_time(hit.issued_at, hit.expires_at, hit.claims.get("nbf"))
            return hit
        at = self._verify_uncached(token)
        self._cache.put(token, at)
        return at

    def _check_time(self, iat: float, exp: float, nbf: Any) -> None:
        now = self._clock()
        if now >= exp + self._leeway:
            raise TokenExpiredError(reason="expired")
        if iat > now + self._leeway or (nbf is not None and nbf > now + self._leeway):
            raise TokenInvalidError("the access token is not valid yet", reason="not_yet_valid")

    def _verify_uncached(self, token: str) -> AccessToken:
        try:
            jws = self._jws.parse(token)
        except VCGateError as exc:
            raise TokenInvalidError(f"access token: {exc.message}", reason=exc.code) from exc
        if not _typ_is(jws.typ, ACCESS_TOKEN_TYP):
            # Refuses credentials, presentations and DPoP proofs offered as access tokens.
            raise TokenInvalidError("not an access token (typ must be at+jwt)", reason="type_mismatch")
        kid = jws.kid
        key = self._keys.get(kid) if kid is not None else None
        if key is None:
            raise TokenInvalidError("the access token is not signed by a key of this gateway", reason="unknown_key")
        try:
            jws.verify_with(key)
        except VCGateError as exc:
            raise TokenInvalidError(f"access token: {exc.message}", reason=exc.code) from exc
        return self._claims(jws, kid, token)

    def _claims(self, jws: JWS, kid: str, token: str) -> AccessToken:
        c = jws.payload
        if c.get("iss") != self.issuer:
            raise TokenInvalidError("the access token is from another issuer", reason="issuer_mismatch")
        aud = c.get("aud")
        if type(aud) is str:
            auds: tuple[str, ...] = (aud,)
        elif type(aud) is list and aud and all(type(a) is str for a in aud):
            auds = tuple(aud)
        else:
            raise TokenInvalidError("the access token has no valid 'aud'", reason="malformed")
        if self._audience.isdisjoint(auds):
            raise TokenInvalidError("the access token is meant for another audience", reason="audience_mismatch")
        iat, exp, nbf = c.get("iat"), c.get("exp"), c.get("nbf")
        if not _is_number(iat) or not _is_number(exp) or (nbf is not None and not _is_number(nbf)):
            raise TokenInvalidError("the access token needs numeric 'iat' and 'exp'", reason="malformed")
        sub, jti, client_id = c.get("sub"), c.get("jti"), c.get("client_id")
        if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
            raise TokenInvalidError("the access token needs 'sub' and 'jti'", reason="malformed")
        if client_id is not None and not isinstance(client_id, str):
            raise TokenInvalidError("'client_id' must be a string", reason="malformed")
        cnf = c.get("cnf")
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        if not isinstance(jkt, str) or not _JKT_RE.fullmatch(jkt):
            # Every token this gateway issues is key-bound; an unbound one is a bearer token.
            raise TokenInvalidError("the access token is not bound to a key (cnf.jkt)", reason="unbound")
        scope = c.get("scope", "")
        ids = c.get("credential_ids", [])
        if not isinstance(scope, str) or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise TokenInvalidError("'scope' must be a string, 'credential_ids' a list of strings", reason="malformed")
        self._check_time(iat, exp, nbf)
        return AccessToken(
            issuer=c["iss"],
            subject=sub,
            audience=auds,
            client_id=client_id,
            jkt=jkt,
            scopes=tuple(scope.split()),
            credential_ids=tuple(ids),
            issued_at=iat,
            expires_at=exp,
            jti=jti,
            kid=kid,
            ath=access_token_hash(token),
            claims=MappingProxyType(c),
        )

    def clear_cache(self) -> None:
        self._cache.clear()


# --- DPoP proofs ---------------------------------------------------------------------------


def create_proof(
    key: PrivateKey,
    *,
    htm: str,
    htu: str,
    access_token: str | None = None,
    nonce: str | None = None,
    clock: Clock = time.time,
) -> str:
    """A DPoP proof (client side): ``typ: dpop+jwt``, the public JWK in the header.

    ``htu`` may be the full request URL: query and fragment are left out, as RFC 9449 asks.
    ``jti`` is 128 random bits.
    """
    if not _METHOD_RE.fullmatch(htm):
        raise ValueError(f"{htm[:40]!r} is not an HTTP method")
    target = htu.split("#", 1)[0].split("?", 1)[0]
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": htm,
        "htu": target,
        "iat": int(clock()),
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    return sign_jws(key, claims, typ=DPOP_TYP, kid=None, jwk=key.public_key.jwk())


@dataclass(frozen=True, slots=True)
class DPoPProof:
    """A verified DPoP proof: who (``jkt``) proved possession for which request."""

    jkt: str
    jti: str
    htm: str
    htu: str
    iat: float
    nonce: str | None
    public_key: PublicKey
    claims: Mapping[str, Any]


def _single_header(value: str | Sequence[str] | None, error: type[VCGateError], what: str) -> str | None:
    """The one value of a header given as a string or as the list of its occurrences."""
    if value is None or isinstance(value, str):
        return value
    values = list(value)
    if len(values) > 1:
        raise error(f"exactly one {what} header is allowed", reason="multiple_headers")
    return values[0] if values else None


class DPoPVerifier:
    """Checks DPoP proofs (RFC 9449 section 4.3) for one gateway.

    ``algorithms``: the allow-list for proofs (asymmetric only). ``max_age``: how old a proof's
    ``iat`` may be; ``leeway``: clock skew tolerated either way. A proof's ``jti`` is recorded
    in ``replay_store`` for the whole window it could be accepted in (:attr:`replay_window`),
    keyed by key thumbprint and ``jti``.

    The stateful step (``jti``) runs last, after the signature: a forged proof cannot pre-empt
    a client's ``jti``. Server nonces (RFC 9449 section 8, ``DPoP-Nonce``) are not used: the
    replay cache and the short proof lifetime bound replays, and a proof's own ``nonce`` claim
    is only checked for shape.
    """

    def __init__(
        self,
        *,
        algorithms: Iterable[str],
        replay_store: ReplayStore | None = None,
        clock: Clock = time.time,
        max_age: float = 60,
        leeway: float = 5,
        max_bytes: int = _DEFAULT_PROOF_BYTES,
        key_cache_size: int = 4096,
    ) -> None:
        self.algorithms = _check_algorithms(algorithms)
        if not 1 <= max_age <= 3600:
            raise ValueError("max_age must be between 1 and 3600 seconds")
        if not 0 <= leeway <= 300:
            raise ValueError("leeway must be between 0 and 300 seconds")
        self._replay: ReplayStore = replay_store if replay_store is not None else MemoryReplayStore()
        self._clock = clock
        begin = getattr(self._replay, "begin_generation", None)
        if begin is not None:  # a shared store that can tell proofs from before a data loss
            begin(clock())
        self._max_age = max_age
        self._leeway = leeway
        self._max_bytes = max_bytes
        self._jws = JWSParser(algorithms=self.algorithms, max_bytes=max_bytes, max_depth=4, allow_headers=("jwk",))
        # Header segment -> (key, thumbprint): a client sends the same header bytes on every
        # call, so the JWK import and the thumbprint are done once per client.
        self._keys = _BoundedCache(key_cache_size)
        self._htu = _BoundedCache(1024)

    @property
    def replay_window(self) -> float:
        """Seconds a proof can be accepted in, hence how long its ``jti`` is remembered.

        A proof is first seen no earlier than ``iat - leeway`` and accepted until
        ``iat + max_age + leeway``; one more second covers the inclusive boundaries.
        """
        return self._max_age + 2 * self._leeway + 1

    @property
    def replay_store(self) -> ReplayStore:
        """Where proofs' ``jti`` are remembered (also used to settle each usage report once)."""
        return self._replay

    def _normalized(self, url: str) -> str | None:
        hit = self._htu.get(url)
        if hit is None:
            try:
                hit = normalize_htu(url)
            except ValueError:
                return None
            if len(url) <= _MAX_CACHED_KEY:
                self._htu.put(url, hit)
        return hit

    def _key_of(self, h64: str, jws: JWS) -> tuple[PublicKey, str]:
        """The proof's public key and its RFC 7638 thumbprint, for the header segment ``h64``.

        A pure function of the header bytes: a client sends the same header on every call,
        so the JWK import and the thumbprint are done once per client and key.
        """
        hit = self._keys.get(h64)
        if hit is not None:
            return hit
        jwk = jws.header.get("jwk")
        if not isinstance(jwk, dict):
            raise DPoPInvalidError("the DPoP proof's header needs a 'jwk' object", reason="missing_jwk")
        if "d" in jwk or "p" in jwk or "k" in jwk:
            raise DPoPInvalidError("the DPoP proof's 'jwk' carries private key material", reason="private_key")
        try:
            key = PublicKey.from_jwk(jwk)
        except VCGateError as exc:
            raise DPoPInvalidError(f"DPoP proof 'jwk': {exc.message}", reason=exc.code) from exc
        hit = (key, key.thumbprint())
        if len(h64) <= _MAX_CACHED_KEY:  # only a key that imported cleanly, never an error
            self._keys.put(h64, hit)
        return hit

    def verify(
        self,
        proof: str | Sequence[str] | None,
        *,
        htm: str,
        htu: str,
        access_token: str | AccessToken | None = None,
        expected_jkt: str | None = None,
        record: bool = True,
    ) -> DPoPProof:
        """Verify ``proof`` (the ``DPoP`` header value(s)) for a request ``htm htu``.

        With ``access_token`` the proof must carry its ``ath``; given as an
        :class:`AccessToken` it also sets ``expected_jkt`` to the token's ``cnf.jkt``.
        ``record=False`` leaves the ``jti`` unrecorded: the caller calls :meth:`record` once
        the rest of the request holds (the token endpoint does, so that proofs sent with no
        valid presentation cannot fill the replay store).
        Raises a :class:`DPoPInvalidError` (``dpop_invalid``, ``dpop_replayed``),
        :class:`DPoPKeyMismatchError` or :class:`StoreUnavailableError`.
        """
        value = _single_header(proof, DPoPInvalidError, "DPoP")
        if not value:
            raise DPoPInvalidError("the request has no DPoP proof", reason="missing")
        if not isinstance(value, str):
            raise DPoPInvalidError("the DPoP header must be a string", reason="malformed")
        if "," in value:
            raise DPoPInvalidError("exactly one DPoP proof is allowed", reason="multiple_headers")
        try:
            jws = self._jws.parse(value)
        except VCGateError as exc:
            raise DPoPInvalidError(f"DPoP proof: {exc.message}", reason=exc.code) from exc
        h64 = value[: value.index(".")]  # the parser found three segments
        # A known header segment passed the type check below before (the key cache is filled
        # only after it, and its outcome is a pure function of these bytes).
        known: tuple[PublicKey, str] | None = self._keys.get(h64)
        if known is None and not _typ_is(jws.typ, DPOP_TYP):
            raise DPoPInvalidError("not a DPoP proof (typ must be dpop+jwt)", reason="type_mismatch")

        c = jws.payload
        jti, p_htm, p_htu, iat = c.get("jti"), c.get("htm"), c.get("htu"), c.get("iat")
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI:
            raise DPoPInvalidError("the DPoP proof needs a 'jti' of 1 to 256 characters", reason="missing_claim")
        if not isinstance(p_htm, str) or not isinstance(p_htu, str) or not _is_number(iat):
            raise DPoPInvalidError("the DPoP proof needs 'htm', 'htu' and a numeric 'iat'", reason="missing_claim")
        if p_htm != htm:
            raise DPoPInvalidError("the DPoP proof is for another HTTP method", reason="htm_mismatch")
        want = self._normalized(htu)
        got = want if p_htu == htu else self._normalized(p_htu)
        if want is None:
            raise ValueError(f"the request URI {htu[:200]!r} is not an absolute http(s) URI")
        if got is None or got != want:
            raise DPoPInvalidError("the DPoP proof is for another URI", reason="htu_mismatch")
        now = self._clock()
        if iat > now + self._leeway:
            raise DPoPInvalidError("the DPoP proof is issued in the future", reason="iat_future")
        if iat < now - self._max_age - self._leeway:
            raise DPoPInvalidError("the DPoP proof is too old", reason="iat_stale")

        if isinstance(access_token, AccessToken):
            ath_expected: str | None = access_token.ath
            if expected_jkt is None:
                expected_jkt = access_token.jkt
        elif access_token is not None:
            try:
                ath_expected = access_token_hash(access_token)
            except UnicodeEncodeError:
                ath_expected = "\x00"  # never equal to a base64url string
        else:
            ath_expected = None
        if ath_expected is not None:
            ath = c.get("ath")
            if not isinstance(ath, str):
                raise DPoPInvalidError("the DPoP proof needs 'ath' when sent with an access token", reason="ath_missing")
            if ath != ath_expected:  # both public values: no need for a constant-time compare
                raise DPoPInvalidError("the DPoP proof is for another access token", reason="ath_mismatch")
        nonce = c.get("nonce")
        if nonce is not None and (not isinstance(nonce, str) or not 0 < len(nonce) <= _MAX_NONCE):
            raise DPoPInvalidError("'nonce' must be a string of 1 to 256 characters", reason="malformed")

        key, jkt = known if known is not None else self._key_of(h64, jws)
        try:
            jws.verify_with(key)
        except VCGateError as exc:
            raise DPoPInvalidError(f"DPoP proof: {exc.message}", reason=exc.code) from exc
        if expected_jkt is not None and jkt != expected_jkt:
            raise DPoPKeyMismatchError(reason="jkt_mismatch")

        if record:
            self._remember(jkt, jti, iat, now)
        return DPoPProof(
            jkt=jkt,
            jti=jti,
            htm=p_htm,
            htu=p_htu,
            iat=iat,
            nonce=nonce,
            public_key=key,
            claims=MappingProxyType(c),
        )

    def record(self, proof: DPoPProof) -> None:
        """Record the ``jti`` of a proof verified with ``record=False``; raises
        :class:`DPoPReplayedError` if it was seen before (or :class:`StoreUnavailableError`)."""
        self._remember(proof.jkt, proof.jti, proof.iat, self._clock())

    def _remember(self, jkt: str, jti: str, iat: float, now: float) -> None:
        replay = self._replay
        if getattr(replay, "tracks_generation", False):  # can tell a proof from before a data loss
            fresh = replay.add_if_absent(f"{jkt}:{jti}", self.replay_window, issued_at=iat, now=now)
        else:
            fresh = replay.add_if_absent(f"{jkt}:{jti}", self.replay_window)
        if not fresh:
            raise DPoPReplayedError(reason="replayed")


# --- both together -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    """A call authorised in session mode: the token and the proof that came with it."""

    token: AccessToken
    proof: DPoPProof


class SessionVerifier:
    """``Authorization: DPoP <token>`` + ``DPoP: <proof>`` -> :class:`Session`.

    The token is checked first; the proof must then be made with the token's key
    (``cnf.jkt``) and carry its hash (``ath``). A DPoP-bound token sent with the ``Bearer``
    scheme is refused (RFC 9449 section 7.2).
    """

    def __init__(self, *, tokens: TokenVerifier, proofs: DPoPVerifier) -> None:
        self.tokens = tokens
        self.proofs = proofs

    def verify(
        self,
        *,
        authorization: str | Sequence[str] | None,
        dpop: str | Sequence[str] | None,
        htm: str,
        htu: str,
    ) -> Session:
        header = _single_header(authorization, TokenInvalidError, "Authorization")
        if not header:
            raise TokenInvalidError("the request has no access token", reason="missing")
        if not isinstance(header, str):
            raise TokenInvalidError("the Authorization header must be a string", reason="malformed")
        scheme, _, token = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            raise TokenInvalidError("a DPoP-bound token must be sent with the DPoP scheme", reason="bearer_scheme")
        if scheme != "dpop" or not token.strip():
            raise TokenInvalidError("expected 'Authorization: DPoP <token>'", reason="scheme")
        at = self.tokens.verify(token.strip())
        return Session(at, self.proofs.verify(dpop, htm=htm, htu=htu, access_token=at))


# --- challenges ----------------------------------------------------------------------------

_DESC_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')


def www_authenticate(
    error: VCGateError | None = None,
    *,
    algorithms: Iterable[str],
    realm: str | None = None,
) -> str:
    """The ``WWW-Authenticate`` value for a 401 in session mode (RFC 6750 section 3, RFC 9449 7.1).

    Without an error (or for a request that carried no token) the challenge has no ``error``
    attribute, as RFC 6750 asks.
    """
    params: list[str] = []
    if realm:
        params.append(f'realm="{_DESC_UNSAFE.sub("", realm)}"')
    oauth = getattr(error, "oauth_error", None) if error is not None else None
    no_credentials = isinstance(error, TokenInvalidError) and error.details.get("reason") == "missing"
    if error is not None and oauth and not no_credentials:
        params.append(f'error="{oauth}"')
        params.append(f'error_description="{_DESC_UNSAFE.sub("", error.message)[:200]}"')
    params.append(f'algs="{" ".join(sorted(algorithms))}"')
    return "DPoP " + ", ".join(params)
