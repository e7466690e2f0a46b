"""DIDs: value objects, documents, methods (key, jwk, web, didkit) and the resolver."""

from .document import DID, PURPOSES, DIDDocument, VerificationMethod, split_did_url
from .jwk import JWKMethod, did_jwk_from_public_key
from .key import KeyMethod, did_key_from_public_key, public_key_from_did_key
from .resolver import DIDMethod, Resolver
from .web import WebMethod

__all__ = [
    "DID",
    "DIDDocument",
    "DIDMethod",
    "JWKMethod",
    "KeyMethod",
    "PURPOSES",
    "Resolver",
    "VerificationMethod",
    "WebMethod",
    "did_jwk_from_public_key",
    "did_key_from_public_key",
    "public_key_from_did_key",
    "split_did_url",
]
