"""DID values and DID documents, parsed defensively.

A DID document comes from wherever its method fetched it, so it is treated as hostile input:
bounded in size and count, every verification method's key parsed into a :class:`PublicKey`,
and only methods that belong to the document's own DID are ever used for verification.

The same parser reads W3C Controlled Identifiers (CID 1.0) controller documents -- the
document of an issuer that is an https URL rather than a DID -- with that specification's
stricter rules (``controller_document=True``): the ``id`` must be the URL it was fetched
from, verification methods must be ``Multikey`` or ``JsonWebKey`` and controlled by the
document's own identifier, and no public JWK may carry private key members.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import base58

from ..errors import (
    ControllerIdMismatchError,
    ControllerMismatchError,
    DIDDocumentInvalidError,
    InvalidDIDError,
    MalformedError,
    UntrustedKeyError,
    VCGateError,
)
from ..keys import PublicKey, curve_of_alg

__all__ = [
    "DID",
    "DIDDocument",
    "VerificationMethod",
    "PURPOSES",
    "multikey_decode",
    "multikey_encode",
    "is_controller_url",
    "split_did_url",
    "split_method_id",
]

#: Verification relationships of DID Core section 5.3.
PURPOSES = ("authentication", "assertionMethod", "keyAgreement", "capabilityInvocation", "capabilityDelegation")

MAX_DID_LENGTH = 4096
MAX_VERIFICATION_METHODS = 64
#: Bound on all verification-relationship entries together (references and embedded methods).
MAX_REFERENCES = 4 * MAX_VERIFICATION_METHODS

# DID Core 3.1: did = "did:" method-name ":" method-specific-id
_DID_RE = re.compile(r"did:[a-z0-9]+:(?:(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2})*:)*(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2})+")


class DID(str):
    """A syntactically valid DID (no path, query or fragment). Construction validates."""

    __slots__ = ()

    def __new__(cls, value: str) -> DID:
        if isinstance(value, DID):
            return value
        if not isinstance(value, str) or len(value) > MAX_DID_LENGTH or not _DID_RE.fullmatch(value):
            shown = value[:80] if isinstance(value, str) else type(value).__name__
            raise InvalidDIDError(f"not a valid DID: {shown!r}")
        return super().__new__(cls, value)

    @property
    def method(self) -> str:
        return self.split(":", 2)[1]

    @property
    def method_specific_id(self) -> str:
        return self.split(":", 2)[2]


def split_did_url(did_url: str) -> tuple[DID, str | None]:
    """Split ``did:x:y#frag`` into ``(DID("did:x:y"), "frag")``. Paths and queries are refused."""
    if not isinstance(did_url, str):
        raise InvalidDIDError("a DID URL must be a string")
    base, sep, fragment = did_url.partition("#")
    if "/" in base or "?" in base:
        raise InvalidDIDError("DID URLs with a path or query are not supported here")
    return DID(base), (fragment if sep else None)


def is_controller_url(identifier: str) -> bool:
    """True for an identifier that is a URL (``scheme://...``) rather than a DID: an issuer whose
    keys are in a controller document (:mod:`vcgate.did.controller`)."""
    return not identifier.startswith("did:") and "://" in identifier[:16]


def split_method_id(method_id: str) -> tuple[str, str | None]:
    """Split a verification method id into its controller and fragment: a DID URL
    (:func:`split_did_url`) or an https controller document URL (``https://host/path#key-1``)."""
    if not isinstance(method_id, str):
        raise InvalidDIDError("a verification method id must be a string")
    if method_id.startswith("did:"):
        return split_did_url(method_id)
    base, sep, fragment = method_id.partition("#")
    if not base:
        raise InvalidDIDError("a verification method id needs a DID or a URL before its '#'")
    return base, (fragment if sep else None)


# --- multikey (multibase base58btc + multicodec) ------------------------------------------
# The multicodec prefixes are fixed two-byte varints; a table is simpler and safer than a
# general varint decoder for the three key types vcgate accepts.
_MULTICODEC = {
    "EdDSA": bytes([0xED, 0x01]),  # ed25519-pub
    "ES256": bytes([0x80, 0x24]),  # p256-pub (0x1200)
    "ES256K": bytes([0xE7, 0x01]),  # secp256k1-pub
    "ES384": bytes([0x81, 0x24]),  # p384-pub (0x1201)
    "ES512": bytes([0x82, 0x24]),  # p521-pub (0x1202)
}
_KEY_LEN = {"EdDSA": 32, "ES256": 33, "ES256K": 33, "ES384": 49, "ES512": 67}


def multikey_encode(key: PublicKey) -> str:
    """``z`` + base58btc(multicodec prefix + raw key): the did:key / Multikey form."""
    return "z" + base58.b58encode(_MULTICODEC[key.alg] + key.raw(compressed=True)).decode("ascii")


def multikey_decode(value: str) -> PublicKey:
    if not isinstance(value, str) or not value.startswith("z"):
        raise MalformedError("a multikey must be multibase base58btc ('z' prefix)")
    if len(value) > 128:
        raise MalformedError("unsupported multikey (too long for Ed25519, P-256, P-384, P-521 or secp256k1)")
    try:
        data = base58.b58decode(value[1:])
    except ValueError as exc:
        raise MalformedError("invalid base58btc in multikey") from exc
    for alg, prefix in _MULTICODEC.items():
        if data.startswith(prefix):
            raw = data[len(prefix) :]
            if len(raw) != _KEY_LEN[alg]:
                raise MalformedError(f"wrong key length for {alg} multikey")
            return PublicKey.from_raw(alg, raw)
    raise MalformedError("unsupported multicodec key type (vcgate takes Ed25519, P-256, P-384, P-521, secp256k1)")


# --- documents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationMethod:
    """One usable verification method: absolute ``id`` (``did#fragment``) and its key."""

    id: str
    type: str
    controller: str
    public_key: PublicKey


#: The verification method types CID 1.0 defines (the only ones a controller document may use).
CID_METHOD_TYPES = frozenset({"Multikey", "JsonWebKey"})
_CID_KEY_PROPERTY = {"Multikey": "publicKeyMultibase", "JsonWebKey": "publicKeyJwk"}
# RFC 7518 6.2.2 / 6.3.2 / RFC 8037: members that only a private JWK has.
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_BASE58_TYPES = {
    "Ed25519VerificationKey2018": "EdDSA",
    "EcdsaSecp256k1VerificationKey2019": "ES256K",
}


def _method_key(vm: Mapping[str, Any]) -> PublicKey:
    if "publicKeyJwk" in vm:
        return PublicKey.from_jwk(vm["publicKeyJwk"])
    if "publicKeyMultibase" in vm:
        return multikey_decode(vm["publicKeyMultibase"])
    if "publicKeyBase58" in vm and vm.get("type") in _BASE58_TYPES:
        raw = vm["publicKeyBase58"]
        if not isinstance(raw, str) or len(raw) > 128:
            raise MalformedError("invalid publicKeyBase58")
        try:
            data = base58.b58decode(raw)
        except ValueError as exc:
            raise MalformedError("invalid publicKeyBase58") from exc
        return PublicKey.from_raw(_BASE58_TYPES[vm["type"]], data)
    raise MalformedError("verification method has no supported key representation")


def _cid_method_problem(vm: Mapping[str, Any], doc_id: str) -> str | None:
    """Why a controller document's verification method is unusable under CID 1.0, or None."""
    if vm.get("controller") != doc_id:
        return "controlled by another controller than the document's"
    kind = vm.get("type")
    if kind not in CID_METHOD_TYPES:
        return f"type {str(kind)[:40]!r} is not Multikey or JsonWebKey"
    wanted = _CID_KEY_PROPERTY[kind]
    if wanted not in vm or any(p in vm for p in _CID_KEY_PROPERTY.values() if p != wanted):
        return f"a {kind} verification method carries its key in {wanted} only"
    jwk = vm.get("publicKeyJwk")
    if isinstance(jwk, dict) and _PRIVATE_JWK_MEMBERS.intersection(jwk):
        return "publicKeyJwk carries private key members"
    return None


@dataclass(frozen=True)
class DIDDocument:
    """A parsed DID document (or CID 1.0 controller document, whose ``id`` is an https URL).
    ``raw`` keeps the JSON as received; use the methods to verify."""

    id: str
    raw: Mapping[str, Any]
    methods: Mapping[str, VerificationMethod]
    relationships: Mapping[str, tuple[str, ...]]
    #: Methods that were present but unusable (id -> reason), for diagnostics.
    skipped: Mapping[str, str] = field(default_factory=dict)
    #: Controller documents only: methods whose ``controller`` is someone else (id -> controller).
    foreign: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any, *, expected_id: str | None = None, controller_document: bool = False) -> DIDDocument:
        """Parse a document; ``expected_id`` (the DID that was resolved) must equal its ``id``.

        ``controller_document``: a CID 1.0 controller document fetched from ``expected_id`` (an
        https URL), held to that specification's rules (module docstring).
        """
        if not isinstance(data, dict):
            raise MalformedError("a DID document must be a JSON object")
        doc_id: str
        if controller_document:
            if expected_id is None or data.get("id") != expected_id:
                shown = data.get("id")
                shown = shown[:80] if isinstance(shown, str) else type(shown).__name__
                raise ControllerIdMismatchError(
                    f"the controller document's id {shown!r} is not the URL it was fetched from, {str(expected_id)[:80]!r}"
                )
            doc_id = expected_id
        else:
            doc_id = DID(data.get("id"))  # raises InvalidDIDError for a missing or bad id
            if expected_id is not None and doc_id != expected_id:
                raise DIDDocumentInvalidError(f"DID document id {doc_id!r} does not match the DID {expected_id!r}")

        def absolute(ref: Any) -> str | None:
            if not isinstance(ref, str):
                return None
            if ref.startswith("#"):
                return doc_id + ref
            return ref if ref.startswith(doc_id + "#") else None

        methods: dict[str, VerificationMethod] = {}
        skipped: dict[str, str] = {}
        foreign: dict[str, str] = {}
        # JWKs marked for encryption only (use: enc, or key_ops without verify) never sign.
        encryption_only: set[str] = set()
        count = 0

        def add(vm: Any) -> str | None:
            nonlocal count
            count += 1
            if count > MAX_VERIFICATION_METHODS:
                raise MalformedError(f"DID document lists more than {MAX_VERIFICATION_METHODS} methods")
            if not isinstance(vm, dict):
                return None
            vm_id = absolute(vm.get("id"))
            if vm_id is None:
                # A method of another DID cannot speak for this one.
                return None
            ctrl = vm.get("controller")
            if controller_document:
                problem = _cid_method_problem(vm, doc_id)
                if problem is not None:
                    skipped[vm_id] = problem
                    if ctrl != doc_id:
                        foreign[vm_id] = ctrl if isinstance(ctrl, str) else repr(ctrl)
                    return vm_id
            try:
                key = _method_key(vm)
            except VCGateError as exc:
                skipped[vm_id] = exc.message
                return vm_id
            jwk = vm.get("publicKeyJwk")
            if isinstance(jwk, dict) and (
                jwk.get("use") == "enc"
                or ("key_ops" in jwk and (not isinstance(jwk["key_ops"], list) or "verify" not in jwk["key_ops"]))
            ):
                encryption_only.add(vm_id)
            methods.setdefault(
                vm_id,
                VerificationMethod(vm_id, str(vm.get("type", "")), ctrl if isinstance(ctrl, str) else "", key),
            )
            return vm_id

        vms = data.get("verificationMethod", [])
        if not isinstance(vms, list):
            raise MalformedError("verificationMethod must be a list")
        for vm in vms:
            add(vm)
        relationships: dict[str, tuple[str, ...]] = {}
        references = 0
        for purpose in PURPOSES:
            entries = data.get(purpose, [])
            if not isinstance(entries, list):
                raise MalformedError(f"{purpose} must be a list")
            references += len(entries)
            if references > MAX_REFERENCES:
                raise MalformedError(f"DID document lists more than {MAX_REFERENCES} relationship entries")
            ids: dict[str, None] = {}  # ordered set
            for entry in entries:
                ref = add(entry) if isinstance(entry, dict) else absolute(entry)
                if ref is not None and (purpose == "keyAgreement" or ref not in encryption_only):
                    ids[ref] = None
            relationships[purpose] = tuple(ids)
        return cls(id=doc_id, raw=data, methods=methods, relationships=relationships, skipped=skipped,
                   foreign=foreign)

    def method_for(self, method_id: str, purpose: str) -> VerificationMethod:
        """The method ``method_id`` if this document authorises it for ``purpose``."""
        if method_id in self.foreign:
            raise ControllerMismatchError(
                f"{method_id[:120]} is controlled by {self.foreign[method_id][:80]!r}, not by {self.id[:80]}"
            )
        if method_id not in self.relationships.get(purpose, ()):
            if method_id in self.methods or method_id in self.skipped:
                raise UntrustedKeyError(f"{method_id} is not authorised for {purpose}")
            raise UntrustedKeyError(f"{method_id} is not a verification method of {self.id}")
        vm = self.methods.get(method_id)
        if vm is None:
            raise UntrustedKeyError(f"{method_id} is unusable: {self.skipped.get(method_id, 'unknown key')}")
        return vm

    def methods_for(self, purpose: str, alg: str | None = None) -> list[VerificationMethod]:
        """All usable methods authorised for ``purpose`` (and fitting ``alg`` when given)."""
        out = []
        curve = curve_of_alg(alg) if alg is not None else None
        for ref in self.relationships.get(purpose, ()):
            vm = self.methods.get(ref)
            if vm is not None and (alg is None or vm.public_key.curve == curve):
                out.append(vm)
        return out
