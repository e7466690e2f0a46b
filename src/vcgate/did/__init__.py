"""DIDs: value objects, documents, methods (key, jwk, web, didkit) and the resolver.

``WebMethod`` is imported on first access (``vcgate.did.WebMethod`` or ``vcgate.did.web``):
it needs ``requests``, which a gate that never resolves did:web should not load.
"""

from typing import Any

from .document import DID, PURPOSES, DIDDocument, VerificationMethod, split_did_url
from .jwk import JWKMethod, did_jwk_from_public_key
from .key import KeyMethod, did_key_from_public_key, public_key_from_did_key
from .resolver import DIDMethod, LazyMethod, Resolver

__all__ = [
    "DID",
    "DIDDocument",
    "DIDMethod",
    "JWKMethod",
    "KeyMethod",
    "LazyMethod",
    "PURPOSES",
    "Resolver",
    "VerificationMethod",
    "WebMethod",
    "did_jwk_from_public_key",
    "did_key_from_public_key",
    "public_key_from_did_key",
    "split_did_url",
]


def __getattr__(name: str) -> Any:
    if name == "WebMethod":
        from .web import WebMethod

        return WebMethod
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
