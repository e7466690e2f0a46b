"""SD-JWT (RFC 9901) and SD-JWT VC (IETF OAuth draft): issue, present with key binding, verify.

An SD-JWT VC is an issuer-signed JWT (``typ: dc+sd-jwt``; the older ``vc+sd-jwt`` is
accepted) whose selectively disclosable claims are replaced by salted SHA-256 digests, followed
by the Disclosures the holder chooses to reveal and, in a presentation, a Key Binding JWT::

    <issuer-signed JWT>~<Disclosure 1>~...~<Disclosure N>~<KB-JWT>

What vcgate checks, in order (RFC 9901 section 7): size and count caps on the whole token and
on the Disclosures; the JOSE header (the caller's algorithm allow-list: no ``none``, no HMAC;
no key-carrying headers) and ``typ``; ``_sd_alg`` is ``sha-256``; the issuer key -- taken only
from the issuer's DID document (``iss`` must be a DID; JWT VC Issuer Metadata and ``x5c`` are
not supported) and only if authorised for ``assertionMethod``; the signature; every Disclosure
well formed, referenced exactly once by a digest in the signed payload (recursively, in objects
and arrays), none repeated; the validity window; ``vct``; the ``cnf`` holder key; and for a
presentation the KB-JWT (``typ: kb+jwt``, signed by the ``cnf`` key, ``aud``, ``nonce``, a
fresh ``iat`` and an ``sd_hash`` over exactly the presented SD-JWT).

The holder's identity is derived from ``cnf``: a DID when ``cnf.kid`` is a DID URL (the key
then comes from that DID's ``authentication`` keys), else the RFC 9278 JWK thumbprint URI of
``cnf.jwk``. It is the credential's ``subject`` and the presentation's ``holder``, so the
policy's holder binding means "the KB-JWT was signed with the key the issuer bound".

Issuing and presenting are pure functions; the verifying half is driven by
:class:`vcgate.credentials.Verifier` (its resolver, algorithms, clock and leeway).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..did.document import split_did_url
from ..errors import (
    AudienceMismatchError,
    DisclosureDuplicateError,
    DisclosureInvalidError,
    DisclosureUnreferencedError,
    ExpiredError,
    KeyBindingInvalidError,
    KeyBindingRequiredError,
    MalformedError,
    NonceMismatchError,
    NotYetValidError,
    SdAlgUnsupportedError,
    TokenTooLargeError,
    TypeMismatchError,
)
from ..keys import ALGORITHMS, PrivateKey, PublicKey, b64url_decode, b64url_encode
from ..strictjson import loads_strict
from .jws import parse_jws, sign_jws
from .jwt import numeric_date
from .models import FORMAT_SD_JWT_VC, VerifiedCredential, VerifiedPresentation

if TYPE_CHECKING:
    from .verifier import Verifier

__all__ = [
    "SDJWTLimits",
    "SdJwt",
    "TYP_SD_JWT_VC",
    "SD_JWT_VC_TYPS",
    "TYP_KB_JWT",
    "SD_ALG",
    "NEVER_DISCLOSABLE",
    "TOKEN_STATUS_ENTRY_TYPE",
    "BITSTRING_STATUS_MEMBER",
    "disclosure_digest",
    "issue_sd_jwt_vc",
    "parse_sd_jwt",
    "present_sd_jwt",
    "holder_id_of_jwk",
    "disclosable_paths",
    "is_sd_jwt",
    "holder_view",
    "issuer_signed",
    "unverified_credential",
    "status_entries",
    "verify_sd_jwt",
    "verify_sd_jwt_vc",
    "verify_sd_jwt_presentation",
]

#: The media type of SD-JWT VCs (``application/dc+sd-jwt``), and the older name still accepted.
TYP_SD_JWT_VC = "dc+sd-jwt"
SD_JWT_VC_TYPS = frozenset({TYP_SD_JWT_VC, "vc+sd-jwt"})
TYP_KB_JWT = "kb+jwt"
#: The only ``_sd_alg`` vcgate issues and accepts (the RFC's default; IANA hash name).
SD_ALG = "sha-256"
#: Claims the SD-JWT VC draft forbids to be selectively disclosable (plus ``iat``, which vcgate
#: keeps visible because policies check the credential's age against it).
NEVER_DISCLOSABLE = frozenset(
    {"iss", "vct", "vct#integrity", "nbf", "exp", "iat", "cnf", "status", "jti", "_sd", "_sd_alg", "..."}
)
#: SD-JWT VC draft 3.2.2.2: registered claims that MUST NOT be in Disclosures (``iat`` may be).
_NEVER_IN_DISCLOSURES = frozenset({"iss", "nbf", "exp", "cnf", "vct", "vct#integrity", "status"})
#: JWT claims that are not credential claims (the rest of the processed payload is).
_REGISTERED = frozenset({"iss", "vct", "vct#integrity", "nbf", "exp", "iat", "cnf", "status", "jti"})
#: The ``type`` vcgate gives a Token Status List reference (``status.status_list``) so that
#: :class:`vcgate.status.StatusChecker` can route it like a ``credentialStatus`` entry.
TOKEN_STATUS_ENTRY_TYPE = "TokenStatusList"
#: The ``status`` member vcgate uses to carry a W3C Bitstring Status List entry in an SD-JWT VC
#: (the Token Status List draft makes ``status`` an extensible object of mechanisms, like
#: ``cnf``; this name is vcgate's, not registered): its value is a ``BitstringStatusListEntry``
#: exactly as it would appear in a VCDM ``credentialStatus``. See docs/sd-jwt.md.
BITSTRING_STATUS_MEMBER = "bitstring_status_list"
_BITSTRING_ENTRY_TYPE = "BitstringStatusListEntry"
#: RFC 9278: the URI of a JWK thumbprint (the holder id when ``cnf`` carries a bare key).
JWK_THUMBPRINT_URI = "urn:ietf:params:oauth:jwk-thumbprint:sha-256:"


@dataclass(frozen=True, slots=True)
class SDJWTLimits:
    """Caps on what one SD-JWT may make the verifier do.

    ``max_disclosures`` Disclosures per token, each at most ``max_disclosure_bytes`` encoded;
    ``max_digests`` digests in the whole payload (decoys included); a KB-JWT's ``iat`` may be at
    most ``kb_max_age`` seconds old (it has no ``exp``).
    """

    max_disclosures: int = 64
    max_disclosure_bytes: int = 4096
    max_digests: int = 1024
    kb_max_age: float = 300.0


# --- disclosures -------------------------------------------------------------------------------


def disclosure_digest(disclosure: str) -> str:
    """base64url(SHA-256(the Disclosure's ASCII bytes)), RFC 9901 section 4.2.3."""
    # 32 bytes -> 43 base64url characters and one '=' of padding, cut here (hot path).
    return base64.urlsafe_b64encode(hashlib.sha256(disclosure.encode("ascii")).digest())[:43].decode("ascii")


@dataclass(frozen=True, slots=True)
class _Disclosure:
    encoded: str
    salt: str
    name: str | None  # None: an array element
    value: Any


def _decode_disclosure(encoded: str, limits: SDJWTLimits, max_depth: int) -> _Disclosure:
    if len(encoded) > limits.max_disclosure_bytes:
        raise TokenTooLargeError(f"a Disclosure is larger than {limits.max_disclosure_bytes} bytes")
    try:
        raw = b64url_decode(encoded)
        decoded = loads_strict(raw, max_depth=max_depth, what="Disclosure")
    except TokenTooLargeError:
        raise
    except MalformedError as exc:
        raise DisclosureInvalidError(f"a Disclosure is not base64url JSON: {exc.message}") from exc
    if not isinstance(decoded, list) or len(decoded) not in (2, 3) or not isinstance(decoded[0], str):
        raise DisclosureInvalidError("a Disclosure must be [salt, name, value] or [salt, value]")
    if len(decoded) == 2:
        return _Disclosure(encoded, decoded[0], None, decoded[1])
    name = decoded[1]
    if not isinstance(name, str):
        raise DisclosureInvalidError("a Disclosure's claim name must be a string")
    if name in ("_sd", "...", "_sd_alg"):
        raise DisclosureInvalidError(f"a Disclosure must not carry the reserved name {name!r}")
    return _Disclosure(encoded, decoded[0], name, decoded[2])


def _digested(encoded: str, max_depth: int) -> tuple[str, _Disclosure]:
    return disclosure_digest(encoded), _decode_disclosure(encoded, _NO_SIZE_CAP, max_depth)


# An agent presents the same Disclosures call after call. Digest and decoding are a pure
# function of the encoded string, so a bounded memo saves them on the hot path (as jws.py does
# for headers). Safe to share: _process copies every object and array it returns, so no caller
# ever holds a memoised value. Errors are not cached; long Disclosures bypass the memo.
_digested_memo = functools.lru_cache(maxsize=4096)(_digested)
_MEMO_MAX_DISCLOSURE = 512
_NO_SIZE_CAP = SDJWTLimits(max_disclosure_bytes=1 << 30)  # the caller has checked the size


# --- the compact serialisation -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SdJwt:
    """The parts of a compact SD-JWT (or SD-JWT+KB), split but not verified."""

    jwt: str
    disclosures: tuple[str, ...]
    kb_jwt: str | None

    @property
    def presented(self) -> str:
        """``<JWT>~<D1>~...~<Dn>~``: what a KB-JWT's ``sd_hash`` covers."""
        return "".join(f"{p}~" for p in (self.jwt, *self.disclosures))


def parse_sd_jwt(token: str, *, limits: SDJWTLimits = SDJWTLimits(), max_bytes: int = 64 * 1024) -> SdJwt:
    """Split ``<JWT>~<D1>~...~<Dn>~[<KB-JWT>]``; refuse empty parts and oversized input."""
    if not isinstance(token, str):
        raise MalformedError("an SD-JWT must be a string")
    if len(token) > max_bytes:
        raise TokenTooLargeError(f"the SD-JWT is larger than {max_bytes} bytes")
    if not token.isascii():
        raise MalformedError("an SD-JWT is ASCII")
    parts = token.split("~")
    if len(parts) < 2:
        raise MalformedError("not an SD-JWT: no '~' separator")
    if len(parts) - 2 > limits.max_disclosures:
        raise TokenTooLargeError(f"the SD-JWT carries more than {limits.max_disclosures} Disclosures")
    jwt, *disclosures, last = parts
    if not jwt:
        raise MalformedError("the SD-JWT has no issuer-signed JWT")
    if any(not d for d in disclosures):
        raise DisclosureInvalidError("an SD-JWT Disclosure is empty ('~~')")
    return SdJwt(jwt, tuple(disclosures), last or None)


# --- issuing -----------------------------------------------------------------------------------


def _salt() -> str:
    return b64url_encode(secrets.token_bytes(16))  # 128 bits, RFC 9901 section 9.3


def _decoys(count: int | None) -> list[str]:
    n = secrets.randbelow(3) + 1 if count is None else count
    return [b64url_encode(hashlib.sha256(secrets.token_bytes(32)).digest()) for _ in range(n)]


def _parse_path(path: str) -> tuple[str | None, ...]:
    """``"address.country"`` -> ("address", "country"); ``"nationalities[]"`` -> (.., None)."""
    out: list[str | None] = []
    for part in path.split("."):
        if part.endswith("[]"):
            out.extend((part[:-2], None))
        else:
            out.append(part)
    if not path or any(p == "" for p in out):
        raise MalformedError(f"not a claim path: {path!r}")
    return tuple(out)


def _conceal(value: Any, paths: set[tuple[str | None, ...]], prefix: tuple[str | None, ...],
             out: list[str], decoys: int | None) -> Any:
    """Replace the members/elements named by ``paths`` under ``prefix`` with digests."""
    if isinstance(value, dict):
        sd: list[str] = []
        kept: dict[str, Any] = {}
        for name, member in value.items():
            here = (*prefix, name)
            member = _conceal(member, paths, here, out, decoys)
            if here in paths:
                disclosure = b64url_encode(json_bytes([_salt(), name, member]))
                out.append(disclosure)
                sd.append(disclosure_digest(disclosure))
            else:
                kept[name] = member
        if sd or any(p[: len(prefix)] == prefix and len(p) == len(prefix) + 1 for p in paths):
            sd.extend(_decoys(decoys))
            kept["_sd"] = sorted(sd)  # sorted: the order of digests reveals nothing
        return kept
    if isinstance(value, list):
        here = (*prefix, None)
        items = []
        for element in value:
            element = _conceal(element, paths, here, out, decoys)
            if here in paths:
                disclosure = b64url_encode(json_bytes([_salt(), element]))
                out.append(disclosure)
                items.append({"...": disclosure_digest(disclosure)})
            else:
                items.append(element)
        return items
    return value


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON (what a Disclosure encodes)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def disclosable_paths(claims: Mapping[str, Any], disclosable: Iterable[str] | None) -> set[tuple[str | None, ...]]:
    """The claim paths to conceal: every top-level claim by default, else the given paths."""
    if disclosable is None:
        return {(name,) for name in claims if name not in NEVER_DISCLOSABLE}
    paths = {_parse_path(p) for p in disclosable}
    for path in paths:
        if path[0] in NEVER_DISCLOSABLE:
            raise MalformedError(f"the claim {path[0]!r} must not be selectively disclosable (SD-JWT VC)")
    return paths


def issue_sd_jwt_vc(
    key: PrivateKey,
    *,
    issuer: str,
    kid: str,
    vct: str,
    claims: Mapping[str, Any],
    valid_from: float,
    valid_until: float | None = None,
    holder_key: PublicKey | None = None,
    holder_kid: str | None = None,
    status: Mapping[str, Any] | None = None,
    disclosable: Iterable[str] | None = None,
    decoys: int | None = None,
    issued_at: float | None = None,
    typ: str = TYP_SD_JWT_VC,
    credential_id: str | None = None,
    alg_name: str | None = None,
) -> str:
    """Sign an SD-JWT VC and return ``<JWT>~<D1>~...~<Dn>~`` (every Disclosure).

    ``disclosable``: claim paths to make selectively disclosable (``"org"``,
    ``"address.country"``, ``"nationalities[]"`` for each element); ``None`` makes every
    top-level claim disclosable. ``vct``, ``iss``, ``iat``/``nbf``/``exp``, ``cnf`` and ``status``
    are always visible. ``holder_key`` becomes ``cnf.jwk``; ``holder_kid`` (a DID URL) becomes
    ``cnf.kid`` instead. ``decoys``: decoy digests per ``_sd`` array (default 1-3, random).
    ``alg_name``: ``"Ed25519"`` writes RFC 9864's name for an Ed25519 key (``sign_jws``).
    """
    if typ not in SD_JWT_VC_TYPS:
        raise MalformedError(f"typ must be one of {sorted(SD_JWT_VC_TYPS)}")
    reserved = NEVER_DISCLOSABLE.intersection(claims)
    if reserved:
        raise MalformedError(f"claims must not set {sorted(reserved)}: they are given separately")
    paths = disclosable_paths(claims, disclosable)
    out: list[str] = []
    body = _conceal(dict(claims), paths, (), out, decoys)
    payload: dict[str, Any] = {
        "iss": issuer,
        "vct": vct,
        "iat": int(valid_from if issued_at is None else issued_at),
        "nbf": int(valid_from),
        **body,
        "_sd_alg": SD_ALG,
    }
    if valid_until is not None:
        payload["exp"] = int(valid_until)
    if credential_id is not None:
        payload["jti"] = credential_id
    if holder_kid is not None:
        payload["cnf"] = {"kid": holder_kid}
    elif holder_key is not None:
        payload["cnf"] = {"jwk": holder_key.jwk()}
    if status is not None:
        payload["status"] = dict(status)
    jwt = sign_jws(key, payload, typ=typ, kid=kid, alg_name=alg_name)
    return "".join(f"{p}~" for p in (jwt, *out))


# --- presenting --------------------------------------------------------------------------------


def _walk_references(payload: Any, disclosures: Mapping[str, _Disclosure]) -> dict[str, tuple[Any, ...]]:
    """digest -> the claim path it discloses (array indices as ints), for the holder's choice."""
    found: dict[str, tuple[Any, ...]] = {}

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for digest in node.get("_sd", ()) if isinstance(node.get("_sd"), list) else ():
                d = disclosures.get(digest) if isinstance(digest, str) else None
                if d is not None and d.name is not None:
                    found[digest] = (*path, d.name)
                    walk(d.value, (*path, d.name))
            for name, value in node.items():
                if name not in ("_sd", "_sd_alg"):
                    walk(value, (*path, name))
        elif isinstance(node, list):
            for i, element in enumerate(node):
                if isinstance(element, dict) and len(element) == 1 and "..." in element:
                    d = disclosures.get(element["..."]) if isinstance(element["..."], str) else None
                    if d is not None and d.name is None:
                        found[element["..."]] = (*path, i)
                        walk(d.value, (*path, i))
                else:
                    walk(element, (*path, i))

    walk(payload, ())
    return found


def _wanted(path: tuple[Any, ...], requested: Collection[Sequence[Any]]) -> bool:
    """A Disclosure is needed if its path leads to (or lies inside) a requested path."""
    for want in requested:
        n = min(len(path), len(want))
        if all(w is None or w == p for p, w in zip(path[:n], want[:n])):
            return True
    return False


def present_sd_jwt(
    sd_jwt: str,
    *,
    disclose: Collection[Sequence[str | int | None]] | None,
    holder_key: PrivateKey | None,
    audience: str | None = None,
    nonce: str | None = None,
    issued_at: float | None = None,
    limits: SDJWTLimits = SDJWTLimits(),
) -> str:
    """The holder's presentation: only the Disclosures ``disclose`` needs, then a KB-JWT.

    ``disclose`` holds claim paths as DCQL writes them (``["address", "country"]``; ``None`` for
    every array element); ``None`` discloses everything. A path also brings the Disclosures of
    its parents. With ``holder_key`` a KB-JWT for ``audience`` / ``nonce`` / ``issued_at`` is
    appended (it must be the ``cnf`` key, which the verifier checks).
    """
    parsed = parse_sd_jwt(sd_jwt, limits=limits, max_bytes=max(len(sd_jwt), 1))
    if disclose is None:
        chosen = list(parsed.disclosures)
    else:
        jws = parse_jws(parsed.jwt, algorithms=_ANY_ALG, max_bytes=len(parsed.jwt))
        table = {disclosure_digest(d): _decode_disclosure(d, limits, 32) for d in parsed.disclosures}
        paths = _walk_references(jws.payload, table)
        chosen = [d for d in parsed.disclosures if _wanted(paths.get(disclosure_digest(d), ()), disclose)
                  and disclosure_digest(d) in paths]
    presented = SdJwt(parsed.jwt, tuple(chosen), None).presented
    if holder_key is None:
        return presented
    if audience is None or nonce is None or issued_at is None:
        raise MalformedError("a Key Binding JWT needs audience, nonce and issued_at")
    kb = sign_jws(
        holder_key,
        {"iat": int(issued_at), "aud": audience, "nonce": nonce, "sd_hash": _sd_hash(presented)},
        typ=TYP_KB_JWT,
        kid=None,
    )
    return presented + kb


def holder_view(sd_jwt: str, *, limits: SDJWTLimits = SDJWTLimits()) -> tuple[tuple[str, ...], dict[str, Any]]:
    """``((vct,), claims)`` of the holder's own SD-JWT VC with every Disclosure applied.

    Not verified (the holder got it from its issuer); for choosing what to disclose, e.g. with
    :func:`vcgate.credentials.dcql.select`.
    """
    parsed = parse_sd_jwt(sd_jwt, limits=limits, max_bytes=max(len(sd_jwt), 1))
    payload = parse_jws(parsed.jwt, algorithms=_ANY_ALG, max_bytes=len(parsed.jwt)).payload
    table = {disclosure_digest(d): _decode_disclosure(d, limits, 32) for d in parsed.disclosures}
    processed = _process(payload, table, limits)
    vct = processed.get("vct")
    return ((vct,) if isinstance(vct, str) else ()), {k: v for k, v in processed.items() if k not in _REGISTERED}


def unverified_credential(sd_jwt: str, *, limits: SDJWTLimits = SDJWTLimits()) -> VerifiedCredential:
    """The holder's own SD-JWT VC (every Disclosure applied) as a credential, NOT verified.

    For the holder's bookkeeping only (finding and issuing delegation chains): ``subject`` is
    the holder ``cnf`` names (the DID of a ``cnf.kid`` DID URL, else the JWK thumbprint URI),
    ``token`` the SD-JWT without a KB-JWT, ``issuer_key`` None.
    """
    parsed = parse_sd_jwt(sd_jwt, limits=limits, max_bytes=max(len(sd_jwt), 1))
    jws = parse_jws(parsed.jwt, algorithms=_ANY_ALG, max_bytes=len(parsed.jwt))
    table = {disclosure_digest(d): _decode_disclosure(d, limits, 32) for d in parsed.disclosures}
    processed = _process(jws.payload, table, limits)
    cnf, subject = processed.get("cnf"), None
    if isinstance(cnf, dict) and isinstance(cnf.get("kid"), str) and cnf["kid"].startswith("did:"):
        subject = split_did_url(cnf["kid"])[0]
    elif isinstance(cnf, dict) and isinstance(cnf.get("jwk"), dict):
        subject = holder_id_of_jwk(PublicKey.from_jwk(cnf["jwk"]))
    vct, iss, jti = processed.get("vct"), processed.get("iss"), processed.get("jti")
    return VerifiedCredential(
        format=FORMAT_SD_JWT_VC, issuer=iss if isinstance(iss, str) else "", subject=subject,
        types=(vct,) if isinstance(vct, str) else (), claims={k: v for k, v in processed.items() if k not in _REGISTERED},
        valid_from=numeric_date(processed, "nbf"), valid_until=numeric_date(processed, "exp"),
        status=status_entries(processed.get("status")), id=jti if isinstance(jti, str) else None,
        kid=jws.kid or "", issuer_key=None, payload=processed, token=parsed.presented,  # type: ignore[arg-type]
    )


def issuer_signed(token: str) -> str:
    """The issuer-signed JWT of an SD-JWT (the part before the first ``~``); a JWS unchanged."""
    return token.split("~", 1)[0]


# The holder reads its own credential, which it got from its issuer; it does not verify it.
_ANY_ALG = ALGORITHMS


def _sd_hash(presented: str) -> str:
    return b64url_encode(hashlib.sha256(presented.encode("ascii")).digest())


# --- verifying ---------------------------------------------------------------------------------


def _process(payload: dict[str, Any], table: dict[str, _Disclosure], limits: SDJWTLimits) -> dict[str, Any]:
    """RFC 9901 section 7.1 step 3: replace referenced digests by their claims, recursively.

    Every digest may appear once in the payload (and in disclosed values); a Disclosure of an
    object property must be referenced from an ``_sd`` array, one of an array element from a
    ``{"...": digest}`` element; a disclosed name must not clash with a visible one. Returns
    the processed payload; leaves in ``table`` only the Disclosures nothing referenced.
    """
    seen: set[str] = set()
    count = 0

    def see(digest: Any) -> _Disclosure | None:
        nonlocal count
        if not isinstance(digest, str):
            raise DisclosureInvalidError("a digest must be a string")
        count += 1
        if count > limits.max_digests:
            raise TokenTooLargeError(f"the SD-JWT holds more than {limits.max_digests} digests")
        if digest in seen:
            raise DisclosureDuplicateError("a digest appears more than once in the SD-JWT")
        seen.add(digest)
        return table.pop(digest, None)

    def obj(node: dict[str, Any], top: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        sd = node.get("_sd", [])
        if not isinstance(sd, list):
            raise DisclosureInvalidError("'_sd' must be an array of digests")
        for name, value in node.items():
            if name == "_sd" or name == "_sd_alg":
                continue
            if name == "...":
                raise DisclosureInvalidError("'...' is only allowed as an array element's digest")
            out[name] = value_of(value)
        for digest in sd:
            d = see(digest)
            if d is None:
                continue  # a decoy, or a claim the holder did not disclose
            if d.name is None:
                raise DisclosureInvalidError("an array-element Disclosure is referenced from an '_sd' array")
            if d.name in out:
                raise DisclosureInvalidError(f"the disclosed claim {d.name[:60]!r} is already in the payload")
            if top and d.name in _NEVER_IN_DISCLOSURES:
                # Another issuer's SD-JWT that hides these lets its holder drop them (an expired
                # credential with `exp` in a Disclosure, presented without it, is allowed: no
                # verifier can tell). Refused when seen, as the draft says; docs/sd-jwt.md.
                raise DisclosureInvalidError(f"the registered claim {d.name!r} must not be selectively disclosable")
            out[d.name] = value_of(d.value)
        return out

    def arr(node: list[Any]) -> list[Any]:
        out = []
        for element in node:
            if isinstance(element, dict) and "..." in element:
                if len(element) != 1:
                    raise DisclosureInvalidError("an array-element digest object has only the '...' member")
                d = see(element["..."])
                if d is None:
                    continue
                if d.name is not None:
                    raise DisclosureInvalidError("an object-property Disclosure is referenced as an array element")
                out.append(value_of(d.value))
            else:
                out.append(value_of(element))
        return out

    def value_of(node: Any) -> Any:
        if isinstance(node, dict):
            return obj(node)
        if isinstance(node, list):
            return arr(node)
        return node

    return obj(payload, top=True)


# A holder presents with the same key again and again; importing a JWK (and its thumbprint)
# is a pure function of its members, so a bounded memo saves it on the hot path (as jws.py
# does for headers). Errors are not cached.
@functools.lru_cache(maxsize=1024)
def _cnf_key(members: tuple[tuple[str, str], ...]) -> tuple[PublicKey, str]:
    key = PublicKey.from_jwk(dict(members))
    return key, holder_id_of_jwk(key)


def holder_id_of_jwk(key: PublicKey) -> str:
    """RFC 9278 JWK thumbprint URI: the holder's id when ``cnf`` carries only a key."""
    return JWK_THUMBPRINT_URI + key.thumbprint()


def _holder_of_cnf(cnf: Any, verifier: Verifier) -> tuple[str, PublicKey, str]:
    """(holder id, holder key, key id) from ``cnf``: ``jwk`` or a DID URL in ``kid``."""
    if not isinstance(cnf, dict):
        raise MalformedError("'cnf' must be an object")
    if "jwk" in cnf:
        jwk = cnf["jwk"]
        if not isinstance(jwk, dict) or len(jwk) > 8 or not all(isinstance(v, str) for v in jwk.values()):
            raise MalformedError("'cnf.jwk' must be a public JWK")
        key, holder = _cnf_key(tuple(sorted(jwk.items())))
        if key.alg not in {a if a != "Ed25519" else "EdDSA" for a in verifier.algorithms}:
            raise MalformedError(f"the cnf key's algorithm {key.alg} is not allowed")
        return holder, key, holder
    kid = cnf.get("kid")
    if isinstance(kid, str) and kid.startswith("did:") and "#" in kid:
        did = split_did_url(kid)[0]
        vm = verifier.resolver.resolve(did).method_for(kid, "authentication")
        return did, vm.public_key, vm.id
    raise MalformedError("'cnf' must carry a 'jwk' or a DID URL 'kid'")


def status_entries(value: Any) -> tuple[Mapping[str, Any], ...]:
    """An SD-JWT VC's ``status`` claim as status entries (``type`` per mechanism)."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not value:
        raise MalformedError("'status' must be a non-empty object")
    entries: list[Mapping[str, Any]] = []
    for mechanism, ref in value.items():
        if not isinstance(ref, dict):
            raise MalformedError(f"'status.{mechanism[:40]}' must be an object")
        if mechanism == "status_list":
            entries.append({**ref, "type": TOKEN_STATUS_ENTRY_TYPE})
        elif mechanism == BITSTRING_STATUS_MEMBER:
            # Routed to the Bitstring method by its own type; any other type would let the
            # member's name and the method that checks it disagree.
            if ref.get("type") != _BITSTRING_ENTRY_TYPE:
                raise MalformedError(f"'status.{BITSTRING_STATUS_MEMBER}.type' must be {_BITSTRING_ENTRY_TYPE}")
            entries.append(dict(ref))
        else:  # an unknown mechanism: StatusChecker refuses it (status_unsupported) unless ignored
            entries.append({**ref, "type": f"status.{mechanism}"})
    return tuple(entries)


def _verify_issuer_signed(
    verifier: Verifier,
    parsed: SdJwt,
    *,
    limits: SDJWTLimits,
    issuer_key: PublicKey | None,
    typs: Collection[str] | None,
) -> tuple[dict[str, Any], str, str, PublicKey]:
    """RFC 9901 7.1: header, ``_sd_alg``, issuer key and signature, then the Disclosures.

    Returns the processed payload, the issuer, the issuer key's id and the key.
    """
    jws = verifier._parse(parsed.jwt)  # its allow-list and caps, and its memo of vetted headers
    typ = jws.typ
    if typs is not None and typ not in typs:
        raise TypeMismatchError(f"an SD-JWT VC has typ dc+sd-jwt, not {str(typ)[:40]!r}")
    payload = jws.payload
    sd_alg = payload.get("_sd_alg", SD_ALG)
    if sd_alg != SD_ALG:
        raise SdAlgUnsupportedError(f"_sd_alg {str(sd_alg)[:40]!r} is not supported; vcgate accepts sha-256")
    issuer = payload.get("iss")
    if issuer_key is not None:
        if not isinstance(issuer, str) or not issuer:
            raise MalformedError("an SD-JWT VC needs an 'iss' string")
        jws.verify_with(issuer_key)
        issuer_kid = jws.kid or ""
    else:
        if not isinstance(issuer, str) or not issuer.startswith("did:"):
            # JWT VC Issuer Metadata (.well-known/jwt-vc-issuer) and x5c are not supported.
            raise MalformedError("an SD-JWT VC's 'iss' must be a DID (vcgate takes issuer keys from DIDs only)")
        vm = verifier._verify_signer(jws, issuer, "assertionMethod")
        issuer_kid, issuer_key = vm.id, vm.public_key

    table: dict[str, _Disclosure] = {}
    for encoded in parsed.disclosures:
        if len(encoded) > limits.max_disclosure_bytes:
            raise TokenTooLargeError(f"a Disclosure is larger than {limits.max_disclosure_bytes} bytes")
        digest, d = (_digested_memo if len(encoded) <= _MEMO_MAX_DISCLOSURE else _digested)(encoded, verifier.max_depth)
        if digest in table:
            raise DisclosureDuplicateError("the same Disclosure is presented twice")
        table[digest] = d
    processed = _process(payload, table, limits)
    if table:
        raise DisclosureUnreferencedError(f"{len(table)} Disclosure(s) are not referenced by the signed payload")
    return processed, issuer, issuer_kid, issuer_key


def verify_sd_jwt(verifier: Verifier, token: str, *, issuer_key: PublicKey, limits: SDJWTLimits = SDJWTLimits()) -> dict[str, Any]:
    """A plain SD-JWT (any ``typ``, no VC rules) signed by ``issuer_key``: its processed payload.

    The same checks as for an SD-JWT VC except ``typ``, ``vct``, validity and ``cnf``; a KB-JWT
    is refused (this is for issuer-signed SD-JWTs such as the RFC's examples).
    """
    parsed = parse_sd_jwt(token, limits=limits, max_bytes=verifier.max_token_bytes)
    if parsed.kb_jwt is not None:
        raise TypeMismatchError("an SD-JWT with a Key Binding JWT is a presentation")
    return _verify_issuer_signed(verifier, parsed, limits=limits, issuer_key=issuer_key, typs=None)[0]


def verify_sd_jwt_vc(
    verifier: Verifier,
    token: str,
    *,
    limits: SDJWTLimits,
    allow_key_binding: bool = False,
    issuer_key: PublicKey | None = None,
) -> tuple[VerifiedCredential, SdJwt, PublicKey | None, str | None]:
    """Verify the issuer-signed part and the Disclosures of an SD-JWT VC.

    Returns the credential, the split token, and the ``cnf`` key and key id (if any). A KB-JWT
    is refused unless ``allow_key_binding`` (:func:`verify_sd_jwt_presentation` checks it).
    ``issuer_key`` pins the issuer's key instead of resolving ``iss`` as a DID (for keys
    configured out of band, and the RFC's examples, whose issuer is an https URL).
    """
    parsed = parse_sd_jwt(token, limits=limits, max_bytes=verifier.max_token_bytes)
    if parsed.kb_jwt is not None and not allow_key_binding:
        raise TypeMismatchError("an SD-JWT with a Key Binding JWT is a presentation; verify it as one")
    processed, issuer, issuer_kid, issuer_key = _verify_issuer_signed(
        verifier, parsed, limits=limits, issuer_key=issuer_key, typs=SD_JWT_VC_TYPS
    )
    vct = processed.get("vct")
    if not isinstance(vct, str) or not vct:
        raise MalformedError("an SD-JWT VC needs a 'vct' string")
    valid_from = numeric_date(processed, "nbf")
    valid_until = numeric_date(processed, "exp")
    issued = numeric_date(processed, "iat")
    if issued is not None and issued > verifier.clock() + verifier.leeway:
        raise NotYetValidError("the credential was issued in the future")
    verifier._check_window(valid_from, valid_until, "credential")
    holder_key = holder_kid = subject = None
    if "cnf" in processed:
        subject, holder_key, holder_kid = _holder_of_cnf(processed["cnf"], verifier)
    jti = processed.get("jti")
    credential = VerifiedCredential(
        format=FORMAT_SD_JWT_VC,
        issuer=issuer,
        subject=subject,
        types=(vct,),
        claims={k: v for k, v in processed.items() if k not in _REGISTERED},
        valid_from=valid_from,
        valid_until=valid_until,
        status=status_entries(processed.get("status")),
        id=jti if isinstance(jti, str) else None,
        kid=issuer_kid,
        issuer_key=issuer_key,
        payload=processed,
        token=parsed.presented,
    )
    return credential, parsed, holder_key, holder_kid


def verify_sd_jwt_presentation(
    verifier: Verifier,
    token: str,
    *,
    audience: str | Iterable[str] | None,
    nonce: str | None,
    limits: SDJWTLimits,
    max_age: float | None = None,
    issuer_key: PublicKey | None = None,
) -> VerifiedPresentation:
    """Verify an SD-JWT+KB: the credential, then its KB-JWT against the ``cnf`` key.

    ``audience`` / ``nonce``: as :meth:`Verifier.verify_presentation` (``None`` skips the check;
    the gate checks the nonce against its store itself). The KB-JWT's ``iat`` must be within
    ``max_age`` (default ``limits.kb_max_age``) seconds of now.
    """
    credential, parsed, holder_key, holder_kid = verify_sd_jwt_vc(
        verifier, token, limits=limits, allow_key_binding=True, issuer_key=issuer_key
    )
    if parsed.kb_jwt is None:
        raise KeyBindingRequiredError("the SD-JWT is presented without a Key Binding JWT")
    if holder_key is None or holder_kid is None or credential.subject is None:
        raise KeyBindingRequiredError("the SD-JWT VC has no 'cnf' key to bind a presentation to")
    kb = verifier._parse(parsed.kb_jwt)
    if kb.typ != TYP_KB_JWT:
        raise KeyBindingInvalidError(f"a Key Binding JWT has typ kb+jwt, not {str(kb.typ)[:40]!r}")
    kb.verify_with(holder_key)
    claims = kb.payload
    sd_hash = claims.get("sd_hash")
    if not isinstance(sd_hash, str) or not hmac.compare_digest(sd_hash.encode(), _sd_hash(parsed.presented).encode()):
        raise KeyBindingInvalidError("the Key Binding JWT's sd_hash does not cover this presentation")
    aud = claims.get("aud")
    auds = (aud,) if isinstance(aud, str) else tuple(aud) if isinstance(aud, list) and all(isinstance(a, str) for a in aud) else None
    if not auds:
        raise KeyBindingInvalidError("the Key Binding JWT needs an 'aud'")
    kb_nonce = claims.get("nonce")
    if not isinstance(kb_nonce, str) or not kb_nonce:
        raise KeyBindingInvalidError("the Key Binding JWT needs a 'nonce'")
    iat = numeric_date(claims, "iat")
    if iat is None:
        raise KeyBindingInvalidError("the Key Binding JWT needs an 'iat'")
    if audience is not None:
        wanted = {audience} if isinstance(audience, str) else set(audience)
        if not wanted.intersection(auds):
            raise AudienceMismatchError("the Key Binding JWT's 'aud' does not name this verifier")
    if nonce is not None and not hmac.compare_digest(kb_nonce.encode(), nonce.encode()):
        raise NonceMismatchError("the Key Binding JWT's 'nonce' is not the one issued")
    now = verifier.clock()
    if iat > now + verifier.leeway:
        raise NotYetValidError("the Key Binding JWT was issued in the future")
    age = limits.kb_max_age if max_age is None else min(max_age, limits.kb_max_age)
    if now - iat > age + verifier.leeway:
        raise ExpiredError(f"the Key Binding JWT is older than {int(age)}s")
    return VerifiedPresentation(
        format=FORMAT_SD_JWT_VC,
        holder=credential.subject,
        holder_key=holder_key,
        kid=holder_kid,
        audience=auds,
        nonce=kb_nonce,
        issued_at=iat,
        expires_at=None,
        credentials=(credential,),
        id=None,
        payload=claims,
    )


def is_sd_jwt(token: Any) -> bool:
    """Whether ``token`` is in the SD-JWT compact form (it has a ``~``; a JWS never does)."""
    return isinstance(token, str) and "~" in token
