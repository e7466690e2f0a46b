"""did:key for Ed25519, P-256 and secp256k1 (W3C CCG did:key, Multikey representation).

An Ed25519 did:key document also lists the X25519 key derived from it for ``keyAgreement``
(did:key 0.7, "Encryption Method Creation Algorithm"). :func:`resolve_did_key` is the DID
Resolution binding (``/1.0/identifiers/<did>``) with the did:key error codes
(``invalidDid``, ``invalidDidUrl``, ``invalidPublicKeyLength``, ``unsupportedPublicKeyType``,
``invalidPublicKeyType``, ``methodNotSupported``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import base58

from ..errors import InvalidDIDError, MalformedError
from ..keys import PublicKey
from .document import _KEY_LEN, _MULTICODEC, DID, MAX_DID_LENGTH, multikey_decode, multikey_encode

__all__ = ["KeyMethod", "did_key_from_public_key", "public_key_from_did_key", "resolve_did_key", "x25519_from_ed25519"]

_X25519_CODEC = bytes([0xEC, 0x01])  # x25519-pub
# Ed25519 field prime; the Edwards y -> Montgomery u map is one field operation, not worth a
# dependency (PyNaCl would do it too).
_P = 2**255 - 19


def x25519_from_ed25519(ed25519_raw: bytes) -> bytes:
    """The X25519 public key birationally equivalent to an Ed25519 one: u = (1 + y) / (1 - y)."""
    y = int.from_bytes(ed25519_raw, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow((1 - y) % _P, _P - 2, _P) % _P
    return u.to_bytes(32, "little")

_CONTEXT = ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"]


def did_key_from_public_key(key: PublicKey) -> DID:
    return DID("did:key:" + multikey_encode(key))


def public_key_from_did_key(did: str) -> PublicKey:
    value = DID(did)
    if value.method != "key":
        raise InvalidDIDError(f"not a did:key: {did[:80]!r}")
    try:
        return multikey_decode(value.method_specific_id)
    except MalformedError as exc:
        raise InvalidDIDError(f"invalid did:key: {exc.message}") from exc


class KeyMethod:
    """Resolves did:key locally: the DID is the key, no I/O."""

    name = "key"
    cacheable_forever = True

    def resolve(self, did: DID) -> dict[str, Any]:
        return _document(str(did), public_key_from_did_key(did))


def _document(did: str, key: PublicKey) -> dict[str, Any]:
    fingerprint = did.split(":")[-1]
    vm_id = f"{did}#{fingerprint}"
    methods = [{"id": vm_id, "type": "Multikey", "controller": did, "publicKeyMultibase": fingerprint}]
    document: dict[str, Any] = {
        "@context": list(_CONTEXT),
        "id": did,
        "verificationMethod": methods,
        "authentication": [vm_id],
        "assertionMethod": [vm_id],
        "capabilityInvocation": [vm_id],
        "capabilityDelegation": [vm_id],
    }
    if key.curve == "Ed25519":
        x = "z" + base58.b58encode(_X25519_CODEC + x25519_from_ed25519(key.raw())).decode("ascii")
        methods.append({"id": f"{did}#{x}", "type": "Multikey", "controller": did, "publicKeyMultibase": x})
        document["keyAgreement"] = [f"{did}#{x}"]
    return document


# --- DID Resolution (the did-key test suite's binding) --------------------------------------

_PUBLIC_KEY_FORMATS = {"Multikey"}
# Formats the did:key specification names; vcgate produces Multikey only.
_KNOWN_FORMATS = {"JsonWebKey2020", "Ed25519VerificationKey2020", "X25519KeyAgreementKey2020",
                  "Ed25519VerificationKey2018", "X25519KeyAgreementKey2019"}
_DID_URL_RE = re.compile(r"did:key:(?:(?P<version>[^:/?#]+):)?(?P<mb>[^:/?#]*)(?P<rest>[/?#].*)?", re.S)
_FRAGMENT_RE = re.compile(r"#[A-Za-z0-9._~-]+")
_STATUS = {"invalidDid": 400, "invalidDidUrl": 400, "invalidPublicKeyLength": 400, "invalidPublicKey": 400,
           "unsupportedPublicKeyType": 400, "invalidPublicKeyType": 400, "methodNotSupported": 501, "notFound": 404}


def _error(code: str, message: str, *, dereferencing: bool = False) -> tuple[dict[str, Any], int]:
    meta = "didDereferencingMetadata" if dereferencing else "didResolutionMetadata"
    # didDocument is "empty" on failure (DID Resolution 1.0); the suite wants it present.
    return {"didDocument": {}, "didDocumentMetadata": {}, meta: {"error": code, "errorMessage": message}}, _STATUS[code]


def resolve_did_key(did_url: str, query: str = "") -> tuple[dict[str, Any], int]:
    """Resolve a did:key DID (or dereference one of its method ids): (result, HTTP status).

    ``query`` is the resolver's own query string (``publicKeyFormat``,
    ``enableExperimentalPublicKeyTypes``). A DID URL with a fragment returns that
    verification method; any path or query in the DID URL is ``invalidDidUrl``.
    """
    if not isinstance(did_url, str) or not did_url.startswith("did:"):
        return _error("invalidDid", "not a DID (the scheme must be 'did')")
    method = did_url.split(":", 2)[1] if did_url.count(":") >= 2 else ""
    if method != "key":
        return _error("methodNotSupported", f"DID method {method[:20]!r} is not supported")
    match = _DID_URL_RE.fullmatch(did_url)
    if match is None or not match.group("mb"):
        return _error("invalidDid", "not a did:key")
    version, mb, rest = match.group("version"), match.group("mb"), match.group("rest") or ""
    if version is not None and version != "1":
        return _error("invalidDid", "the did:key version must be a positive integer (1)")
    if not mb.startswith("z"):
        return _error("invalidDid", "the multibase value must start with 'z' (base58btc)")
    if len(mb) > MAX_DID_LENGTH:  # base58 decoding is quadratic: a 60 KB DID took 5 s
        return _error("invalidDid", f"the DID is longer than {MAX_DID_LENGTH} characters")
    dereferencing = bool(rest)
    if rest and not _FRAGMENT_RE.fullmatch(rest):
        return _error("invalidDidUrl", "the DID URL has a path, a query or an invalid fragment", dereferencing=True)
    options = parse_qs(query, keep_blank_values=True)
    fmt = options.get("publicKeyFormat", ["Multikey"])[-1]
    if fmt not in _PUBLIC_KEY_FORMATS:
        if fmt in _KNOWN_FORMATS:
            return _error("invalidPublicKeyType", f"publicKeyFormat {fmt} is not produced", dereferencing=dereferencing)
        return _error("unsupportedPublicKeyType", f"publicKeyFormat {fmt[:40]!r} is unknown")
    try:
        data = base58.b58decode(mb[1:])
    except ValueError:
        return _error("invalidDid", "the multibase value is not base58btc")
    for alg, prefix in _MULTICODEC.items():
        if data.startswith(prefix):
            if len(data) - len(prefix) != _KEY_LEN[alg]:
                return _error("invalidPublicKeyLength", f"a {alg} did:key holds {_KEY_LEN[alg]} key bytes")
            try:
                key = PublicKey.from_raw(alg, data[len(prefix):])
            except MalformedError:
                return _error("invalidPublicKey", "the key bytes are not a valid public key")
            break
    else:
        return _error("unsupportedPublicKeyType", "the multicodec key type is not supported")
    did = f"did:key:{mb}"
    try:
        DID(did)
    except InvalidDIDError:
        return _error("invalidDid", "not a valid DID")
    document = _document(did, key)
    if rest:
        for vm in document["verificationMethod"]:
            if vm["id"] == did + rest:
                return {"didDocument": vm, "didDocumentMetadata": {},
                        "didDereferencingMetadata": {"contentType": "application/did+ld+json"}}, 200
        return _error("notFound", "no such verification method", dereferencing=True)
    return {"didDocument": document, "didDocumentMetadata": {},
            "didResolutionMetadata": {"contentType": "application/did+ld+json"}}, 200
