"""did:jwk: the DID is the base64url of a public JWK (did:jwk specification)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidDIDError, VCGateError
from ..keys import PublicKey, b64url_decode, b64url_encode
from ..strictjson import loads_strict
from .document import DID

__all__ = ["JWKMethod", "did_jwk_from_public_key"]

_MAX_JWK = 1024


def did_jwk_from_public_key(key: PublicKey) -> DID:
    return DID("did:jwk:" + b64url_encode(json.dumps(key.jwk(), separators=(",", ":")).encode()))


class JWKMethod:
    """Resolves did:jwk locally, no I/O."""

    name = "jwk"
    cacheable_forever = True

    def resolve(self, did: DID) -> dict[str, Any]:
        msid = did.method_specific_id
        if len(msid) > _MAX_JWK:
            raise InvalidDIDError("did:jwk is too long")
        try:
            jwk = loads_strict(b64url_decode(msid), max_depth=4, what="did:jwk")
            PublicKey.from_jwk(jwk)  # validates: supported curve, no private part
        except (ValueError, VCGateError) as exc:
            raise InvalidDIDError("did:jwk does not encode a supported public JWK") from exc
        vm_id = f"{did}#0"
        use = jwk.get("use")
        doc: dict[str, Any] = {
            "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/suites/jws-2020/v1"],
            "id": str(did),
            "verificationMethod": [
                {"id": vm_id, "type": "JsonWebKey2020", "controller": str(did), "publicKeyJwk": jwk}
            ],
        }
        if use != "enc":
            for purpose in ("assertionMethod", "authentication", "capabilityInvocation", "capabilityDelegation"):
                doc[purpose] = [vm_id]
        if use != "sig":
            doc["keyAgreement"] = [vm_id]
        return doc
