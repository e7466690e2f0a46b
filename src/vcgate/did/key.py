"""did:key for Ed25519, P-256 and secp256k1 (W3C CCG did:key, Multikey representation)."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidDIDError, MalformedError
from ..keys import PublicKey
from .document import DID, multikey_decode, multikey_encode

__all__ = ["KeyMethod", "did_key_from_public_key", "public_key_from_did_key"]

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
        public_key_from_did_key(did)  # validates: a supported, well-formed key
        fingerprint = did.method_specific_id
        vm_id = f"{did}#{fingerprint}"
        return {
            "@context": list(_CONTEXT),
            "id": str(did),
            "verificationMethod": [
                {"id": vm_id, "type": "Multikey", "controller": str(did), "publicKeyMultibase": fingerprint}
            ],
            "authentication": [vm_id],
            "assertionMethod": [vm_id],
            "capabilityInvocation": [vm_id],
            "capabilityDelegation": [vm_id],
        }
