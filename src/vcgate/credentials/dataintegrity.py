"""W3C Data Integrity 1.0 proofs: eddsa-rdfc-2022, eddsa-jcs-2022, ecdsa-rdfc-2019, ecdsa-jcs-2019,
and the older Ed25519Signature2020 (VCDM 1.1 issuers still emit it).

Every suite hashes two canonical forms and signs their concatenation::

    hashData = H(canonical proof configuration) || H(canonical document without proof)

with RDFC-1.0 N-Quads (``*-rdfc-*``, via :mod:`vcgate.credentials.jsonld`: bundled, pinned
contexts only, safe mode) or RFC 8785 JCS (``*-jcs-*``). H is SHA-256, or SHA-384 for
ecdsa with P-384. ``proofValue`` is multibase base58btc (``z...``) of the raw signature
(Ed25519, or ECDSA ``r || s``).

The verification method is taken only from its controller's DID document and only if
authorised there for the proof's purpose; the caller says which purpose it expects and which
controller must have signed (the issuer of a credential, the holder of a presentation).

``DataIntegrityResult.contexts_pinned`` is False when some ``@context`` is inline or not one of
the bundled URLs: such a document verified, but an inline context can remap a term so that
the signed data differs from what the JSON seems to say. Authorise only on pinned results.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import base58

from ..did.document import VerificationMethod, split_method_id
from ..did.resolver import Resolver
from ..errors import (
    ExpiredError,
    MalformedError,
    NonceMismatchError,
    AudienceMismatchError,
    ProofInvalidError,
    SignatureInvalidError,
    UntrustedKeyError,
    VCGateError,
)
from ..keys import PrivateKey
from .jsonld import ContextLoader, canonize, contexts_pinned
from .jwt import parse_datetime, to_xsd_datetime

__all__ = ["CRYPTOSUITES", "DataIntegrity", "DataIntegrityResult", "ProofInvalidError"]


@dataclass(frozen=True, slots=True)
class _Suite:
    canonical: str  # "rdfc" or "jcs"
    curves: tuple[str, ...]


#: Data Integrity cryptosuites (``DataIntegrityProof.cryptosuite``) -> how they work.
CRYPTOSUITES: Mapping[str, _Suite] = {
    "eddsa-rdfc-2022": _Suite("rdfc", ("Ed25519",)),
    "eddsa-jcs-2022": _Suite("jcs", ("Ed25519",)),
    "ecdsa-rdfc-2019": _Suite("rdfc", ("P-256", "P-384")),
    "ecdsa-jcs-2019": _Suite("jcs", ("P-256", "P-384")),
}
#: Linked Data Signature proof types that predate ``DataIntegrityProof``.
_LEGACY = {"Ed25519Signature2020": _Suite("rdfc", ("Ed25519",))}
_SIGNATURE_BYTES = {"Ed25519": 64, "P-256": 64, "P-384": 96}
_ALG_OF_CURVE = {"Ed25519": "EdDSA", "P-256": "ES256", "P-384": "ES384"}
_MAX_PROOFS = 4
CONTEXT_V2 = "https://www.w3.org/ns/credentials/v2"
DI_CONTEXT = "https://w3id.org/security/data-integrity/v2"
_LEGACY_CONTEXT = "https://w3id.org/security/suites/ed25519-2020/v1"


@dataclass(frozen=True, slots=True)
class DataIntegrityResult:
    """One verified proof."""

    cryptosuite: str
    proof_purpose: str
    verification_method: VerificationMethod
    #: The DID that controls the verification method (the signer).
    controller: str
    created: float | None
    #: False when the document has an inline or unbundled ``@context``: do not authorise on it.
    contexts_pinned: bool
    proof: Mapping[str, Any]


def _jcs(value: Any) -> bytes:
    import rfc8785

    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise MalformedError("the document cannot be canonicalised with JCS") from exc


def _hash(curve: str) -> Callable[[bytes], bytes]:
    return (lambda data: hashlib.sha384(data).digest()) if curve == "P-384" else (lambda data: hashlib.sha256(data).digest())


def _with_previous(unsecured: dict[str, Any], proof: Any, by_id: Mapping[str, Any]) -> dict[str, Any]:
    """The document a proof signed: in a proof chain, with the proofs it names as previous."""
    previous = proof.get("previousProof") if isinstance(proof, dict) else None
    if previous is None:
        return unsecured
    refs = [previous] if isinstance(previous, str) else previous
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise ProofInvalidError("'previousProof' must be a proof id or a list of them")
    missing = [r for r in refs if r not in by_id]
    if missing:
        raise ProofInvalidError(f"the previous proof {missing[0][:80]!r} is not in the proof set")
    chosen = [by_id[r] for r in refs]
    return {**unsecured, "proof": chosen[0] if len(chosen) == 1 else chosen}


class DataIntegrity:
    """Adds and verifies Data Integrity proofs. Thread-safe; create one and reuse it.

    :param resolver: where verification methods come from (default: did:key and did:jwk).
    :param loader: the JSON-LD document loader (default: the bundled, pinned contexts).
    :param clock: POSIX seconds; ``leeway`` tolerates clock skew on ``created`` / ``expires``.
    """

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        loader: ContextLoader | None = None,
        clock: Callable[[], float] = time.time,
        leeway: float = 60.0,
    ) -> None:
        self.resolver = resolver if resolver is not None else Resolver.local()
        self.loader = loader if loader is not None else ContextLoader()
        self.pinned = self.loader.urls
        self.clock = clock
        self.leeway = leeway

    # --- hashing --------------------------------------------------------------------------

    def _hash_data(self, suite: _Suite, curve: str, document: Mapping[str, Any], config: Mapping[str, Any]) -> bytes:
        digest = _hash(curve)
        if suite.canonical == "jcs":
            return digest(_jcs(config)) + digest(_jcs(document))
        return digest(canonize(config, self.loader).encode()) + digest(canonize(document, self.loader).encode())

    # --- issuing ----------------------------------------------------------------------------

    def add_proof(
        self,
        document: Mapping[str, Any],
        key: PrivateKey,
        *,
        verification_method: str,
        cryptosuite: str = "eddsa-rdfc-2022",
        purpose: str = "assertionMethod",
        created: float | None = None,
        challenge: str | None = None,
        domain: str | None = None,
    ) -> dict[str, Any]:
        """Return a copy of ``document`` with a ``DataIntegrityProof`` by ``key`` added
        (``cryptosuite="Ed25519Signature2020"``: that older proof type, for VCDM 1.1 verifiers)."""
        legacy = cryptosuite in _LEGACY
        suite = _LEGACY[cryptosuite] if legacy else CRYPTOSUITES.get(cryptosuite)
        if suite is None:
            raise ProofInvalidError(f"unsupported cryptosuite {cryptosuite!r}")
        curve = key.public_key.curve
        if curve not in suite.curves:
            raise ProofInvalidError(f"{cryptosuite} does not sign with a {curve} key")
        unsecured = {k: v for k, v in document.items() if k != "proof"}
        context = unsecured.get("@context")
        needed = _LEGACY_CONTEXT if legacy else DI_CONTEXT
        if isinstance(context, list) and needed not in context and (legacy or CONTEXT_V2 not in context):
            # The document's contexts must define the proof's terms (Data Integrity 1.0, 4.1
            # "Add Proof"; Ed25519Signature2020 has its own context).
            unsecured["@context"] = [*context, needed]
        config: dict[str, Any] = {"type": cryptosuite} if legacy else {"type": "DataIntegrityProof", "cryptosuite": cryptosuite}
        config.update({
            "created": to_xsd_datetime(self.clock() if created is None else created),
            "verificationMethod": verification_method,
            "proofPurpose": purpose,
        })
        if challenge is not None:
            config["challenge"] = challenge
        if domain is not None:
            config["domain"] = domain
        if "@context" in unsecured:
            config["@context"] = copy.deepcopy(unsecured["@context"])
        signature = key.sign(self._hash_data(suite, curve, unsecured, config))
        proof = {k: v for k, v in config.items() if k != "@context"} if suite.canonical == "rdfc" else dict(config)
        proof["proofValue"] = "z" + base58.b58encode(signature).decode("ascii")
        return {**copy.deepcopy(unsecured), "proof": proof}

    # --- verifying --------------------------------------------------------------------------

    def verify(
        self,
        document: Mapping[str, Any],
        *,
        purpose: str,
        controller: str | None = None,
        challenge: str | None = None,
        domain: str | None = None,
    ) -> tuple[DataIntegrityResult, ...]:
        """Verify every proof of ``document`` (a proof set); raise on the first that fails.

        ``purpose``: the proof purpose the caller relies on (``assertionMethod`` for a
        credential, ``authentication`` for a presentation). ``controller``: the DID that must
        control the signing key (the issuer or holder), or None to accept any. ``challenge``
        and ``domain``: when given, each proof must carry exactly these.
        """
        if not isinstance(document, Mapping):
            raise MalformedError("a secured document must be a JSON object")
        proofs = document.get("proof")
        if proofs is None:
            raise ProofInvalidError("the document has no proof")
        proofs = proofs if isinstance(proofs, list) else [proofs]
        if not proofs or len(proofs) > _MAX_PROOFS:
            raise ProofInvalidError(f"a document carries 1 to {_MAX_PROOFS} proofs")
        unsecured = {k: v for k, v in document.items() if k != "proof"}
        pinned = contexts_pinned(unsecured, self.pinned)
        if controller is not None and not any(
            isinstance(p, dict) and str(p.get("verificationMethod", "")).split("#")[0] == controller for p in proofs
        ):
            raise UntrustedKeyError("no proof names a key of the expected signer")
        by_id = {p["id"]: p for p in proofs if isinstance(p, dict) and isinstance(p.get("id"), str)}
        results = tuple(
            self._verify_one(_with_previous(unsecured, proof, by_id), proof, purpose, challenge, domain, pinned)
            for proof in proofs
        )
        # A proof set may carry proofs by others (a notary, a witness); one must be the signer's
        # (checked by name above, cheaply, and here on the verified results).
        if controller is not None and not any(r.controller == controller for r in results):
            raise UntrustedKeyError("no proof is signed by a key of the expected signer")
        return results

    def _verify_one(
        self,
        unsecured: dict[str, Any],
        proof: Any,
        purpose: str,
        challenge: str | None,
        domain: str | None,
        pinned: bool,
    ) -> DataIntegrityResult:
        if not isinstance(proof, dict):
            raise ProofInvalidError("a proof must be a JSON object")
        ptype = proof.get("type")
        if ptype == "DataIntegrityProof":
            name = proof.get("cryptosuite")
            suite = CRYPTOSUITES.get(name) if isinstance(name, str) else None
            if suite is None:
                raise ProofInvalidError(f"unsupported cryptosuite {str(name)[:60]!r}")
        elif isinstance(ptype, str) and ptype in _LEGACY:
            name, suite = ptype, _LEGACY[ptype]
        else:
            raise ProofInvalidError(f"unsupported proof type {str(ptype)[:60]!r}")
        value = proof.get("proofValue")
        if not isinstance(value, str) or not value.startswith("z") or len(value) > 256:
            raise ProofInvalidError("'proofValue' must be multibase base58btc ('z...')")
        try:
            signature = base58.b58decode(value[1:])
        except ValueError as exc:
            raise ProofInvalidError("'proofValue' is not valid base58btc") from exc
        if proof.get("proofPurpose") != purpose:
            raise UntrustedKeyError(f"the proof's purpose is not {purpose}")
        created = parse_datetime(proof["created"], "proof.created") if "created" in proof else None
        now = self.clock()
        if created is not None and created > now + self.leeway:
            raise ProofInvalidError("the proof was created in the future")
        if "expires" in proof and parse_datetime(proof["expires"], "proof.expires") <= now - self.leeway:
            raise ExpiredError("the proof has expired")
        if challenge is not None:
            got = proof.get("challenge")
            if not isinstance(got, str) or not hmac.compare_digest(got.encode(), challenge.encode()):
                raise NonceMismatchError("the proof does not carry the expected challenge")
        if domain is not None:
            got = proof.get("domain")
            domains = got if isinstance(got, list) else [got]
            if domain not in domains:
                raise AudienceMismatchError("the proof is not for this domain")

        vm_id = proof.get("verificationMethod")
        if not isinstance(vm_id, str):
            raise ProofInvalidError("the proof names no verificationMethod")
        did = str(split_method_id(vm_id)[0])
        vm = self.resolver.verification_method(vm_id, purpose)
        curve = vm.public_key.curve
        if curve not in suite.curves:
            raise UntrustedKeyError(f"{name} does not verify with a {curve} key")
        if len(signature) != _SIGNATURE_BYTES[curve]:
            raise SignatureInvalidError("the proof's signature has the wrong length")

        document = unsecured
        config = {k: v for k, v in proof.items() if k != "proofValue"}
        if "@context" in proof:
            # The proof's contexts must be the document's first contexts, in order; the
            # document is then hashed with exactly those (Data Integrity 1.0, 4.4).
            ctx = proof["@context"]
            ctx_list = ctx if isinstance(ctx, list) else [ctx]
            doc_ctx = unsecured.get("@context")
            doc_list = doc_ctx if isinstance(doc_ctx, list) else [doc_ctx]
            if doc_list[: len(ctx_list)] != ctx_list:
                raise ProofInvalidError("the proof's @context does not match the document's")
            document = {**unsecured, "@context": ctx}
        elif "@context" in unsecured:
            config["@context"] = unsecured["@context"]
        try:
            vm.public_key.verify(_ALG_OF_CURVE[curve], self._hash_data(suite, curve, document, config), signature)
        except VCGateError:
            raise
        except Exception as exc:  # a backend's own error type must not escape
            raise SignatureInvalidError() from exc
        return DataIntegrityResult(
            cryptosuite=name,
            proof_purpose=purpose,
            verification_method=vm,
            controller=did,
            created=created,
            contexts_pinned=pinned,
            proof=proof,
        )
