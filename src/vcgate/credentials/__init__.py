"""Credentials and presentations as JWTs (VC-JOSE-COSE and VCDM 1.1 VC-JWT)."""

from .jws import JWS, parse_jws, sign_jws
from .jwt import CONTEXT_V1, CONTEXT_V2, DEFAULT_CONTEXTS, issue_credential
from .models import FORMAT_VC_JOSE, FORMAT_VC_JWT11, VerifiedCredential, VerifiedPresentation
from .presentation import create_presentation
from .verifier import Verifier

__all__ = [
    "CONTEXT_V1",
    "CONTEXT_V2",
    "DEFAULT_CONTEXTS",
    "FORMAT_VC_JOSE",
    "FORMAT_VC_JWT11",
    "JWS",
    "Verifier",
    "VerifiedCredential",
    "VerifiedPresentation",
    "create_presentation",
    "issue_credential",
    "parse_jws",
    "sign_jws",
]
