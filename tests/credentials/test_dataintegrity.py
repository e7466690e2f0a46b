"""Data Integrity proofs against the W3C vc-di-eddsa vectors (tests/vectors/vc-di-eddsa), attacks,
and the pinned-context split (an inline context can remap a term; such results are flagged).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import base58
import pytest

from vcgate.credentials import Verifier
from vcgate.credentials.dataintegrity import DataIntegrity
from vcgate.credentials.jsonld import ContextLoader, canonize
from vcgate.credentials.jwt import issue_document
from vcgate.did.key import did_key_from_public_key
from vcgate.errors import (
    AudienceMismatchError,
    ContextNotAllowedError,
    MalformedError,
    NonceMismatchError,
    ProofInvalidError,
    SignatureInvalidError,
    UntrustedKeyError,
    VCGateError,
)
from vcgate.keys import PrivateKey

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "vc-di-eddsa" / "TestVectors"
NOW = 1_800_000_000.0
CREATED = 1677282998.0  # 2023-02-24T23:56:38Z, not the vectors' time: only proofValue is compared
V2 = "https://www.w3.org/ns/credentials/v2"
EXAMPLES = "https://www.w3.org/ns/credentials/examples/v2"


def _json(path: str) -> Any:
    return json.loads((VECTORS / path).read_text())


def _text(path: str) -> str:
    return (VECTORS / path).read_text()


def _vector_key() -> PrivateKey:
    raw = base58.b58decode(_json("keyPair.json")["privateKeyMultibase"][1:])
    assert raw[:2] == bytes([0x80, 0x26])  # multicodec ed25519-priv
    return PrivateKey.from_raw_private("EdDSA", raw[2:])


@pytest.fixture(scope="module")
def di() -> DataIntegrity:
    return DataIntegrity(clock=lambda: NOW)


SIGNED = [
    pytest.param("eddsa-rdfc-2022/signedDataInt.json", "eddsa-rdfc-2022", id="eddsa-rdfc-2022"),
    pytest.param("eddsa-jcs-2022/signedJCS.json", "eddsa-jcs-2022", id="eddsa-jcs-2022"),
    pytest.param("Ed25519Signature2020/signedEdSig.json", "Ed25519Signature2020", id="Ed25519Signature2020"),
]


@pytest.mark.parametrize("path, suite", SIGNED)
def test_vector_verifies(di: DataIntegrity, path: str, suite: str) -> None:
    document = _json(path)
    (result,) = di.verify(document, purpose="assertionMethod")
    assert result.cryptosuite == suite
    assert result.verification_method.id == document["proof"]["verificationMethod"]
    assert result.controller == document["proof"]["verificationMethod"].split("#")[0]


def test_employment_vector_is_not_pinned(di: DataIntegrity) -> None:
    """The employment vector's citizenship context is not bundled: refused, not downloaded."""
    document = _json("eddsa-rdfc-2022/employ/signedDataInt.json")
    assert "https://w3id.org/citizenship/v4rc1" in document["@context"]
    with pytest.raises(ContextNotAllowedError, match="citizenship"):
        di.verify(document, purpose="assertionMethod")


@pytest.mark.parametrize("path, suite", SIGNED)
def test_vector_tampered_claim_refused(di: DataIntegrity, path: str, suite: str) -> None:
    document = _json(path)
    document["credentialSubject"]["alumniOf"] += "x"
    with pytest.raises(SignatureInvalidError):
        di.verify(document, purpose="assertionMethod")


def test_rdfc_canonical_forms_match_vectors(di: DataIntegrity) -> None:
    loader = ContextLoader()
    assert canonize(_json("unsigned.json"), loader) == _text("eddsa-rdfc-2022/canonDocDataInt.txt")
    assert canonize(_json("eddsa-rdfc-2022/proofConfigDataInt.json"), loader) == _text(
        "eddsa-rdfc-2022/proofCanonDataInt.txt"
    )
    assert hashlib.sha256(_text("eddsa-rdfc-2022/canonDocDataInt.txt").encode()).hexdigest() == _text(
        "eddsa-rdfc-2022/docHashDataInt.txt"
    ).strip()


@pytest.mark.parametrize("suite, path", [
    pytest.param("eddsa-rdfc-2022", "eddsa-rdfc-2022/signedDataInt.json", id="rdfc"),
    pytest.param("eddsa-jcs-2022", "eddsa-jcs-2022/signedJCS.json", id="jcs"),
])
def test_signing_reproduces_vector(suite: str, path: str) -> None:
    """Ed25519 is deterministic: the same document, key and proof options give the vector's proofValue."""
    expected = _json(path)
    vm = expected["proof"]["verificationMethod"]
    vector_created = expected["proof"]["created"]
    from vcgate.credentials.jwt import parse_datetime

    signer = DataIntegrity(clock=lambda: NOW)
    signed = signer.add_proof(
        _json("unsigned.json"), _vector_key(), verification_method=vm, cryptosuite=suite,
        created=parse_datetime(vector_created, "created"),
    )
    assert signed["proof"]["proofValue"] == expected["proof"]["proofValue"]
    assert signed == expected


# --- issue and verify round trips -------------------------------------------------------------

def _credential(issuer: str) -> dict[str, Any]:
    return {
        "@context": [V2, EXAMPLES],
        "id": "urn:uuid:4b6c5a2e-9d1f-4f7e-8a7e-0a1b2c3d4e5f",
        "type": ["VerifiableCredential", "ModelAccessCredential"],
        "issuer": issuer,
        "validFrom": "2026-01-01T00:00:00Z",
        "credentialSubject": {"id": "did:example:agent", "tier": "gold"},
    }


ROUND_TRIPS = [
    pytest.param("eddsa-rdfc-2022", "EdDSA", id="eddsa-rdfc-2022"),
    pytest.param("eddsa-jcs-2022", "EdDSA", id="eddsa-jcs-2022"),
    pytest.param("ecdsa-rdfc-2019", "ES256", id="ecdsa-rdfc-2019-P-256"),
    pytest.param("ecdsa-jcs-2019", "ES256", id="ecdsa-jcs-2019-P-256"),
]


@pytest.mark.parametrize("suite, alg", ROUND_TRIPS)
def test_round_trip(di: DataIntegrity, suite: str, alg: str) -> None:
    key = PrivateKey.generate(alg)
    did = str(did_key_from_public_key(key.public_key))
    vm = f"{did}#{did.split(':')[2]}"
    signed = di.add_proof(_credential(did), key, verification_method=vm, cryptosuite=suite)
    (result,) = di.verify(signed, purpose="assertionMethod", controller=did)
    assert result.cryptosuite == suite and result.contexts_pinned
    assert result.verification_method.public_key == key.public_key
    tampered = copy.deepcopy(signed)
    tampered["credentialSubject"]["tier"] = "platinum"
    with pytest.raises(SignatureInvalidError):
        di.verify(tampered, purpose="assertionMethod", controller=did)


def _signed(di: DataIntegrity, **kwargs: Any) -> tuple[dict[str, Any], str, PrivateKey]:
    key = PrivateKey.generate("EdDSA")
    did = str(did_key_from_public_key(key.public_key))
    vm = f"{did}#{did.split(':')[2]}"
    return di.add_proof(_credential(did), key, verification_method=vm, **kwargs), did, key


def _mutate(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(document)
    target = out
    *parents, last = path.split(".")
    for part in parents:
        target = target[part]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return out


_DELETE = object()

ATTACKS = [
    pytest.param("proof.cryptosuite", "eddsa-2099", ProofInvalidError, id="unknown-cryptosuite"),
    pytest.param("proof.type", "Ed25519Signature2018", ProofInvalidError, id="unknown-proof-type"),
    pytest.param("proof.proofValue", "u" + "A" * 86, ProofInvalidError, id="proofvalue-not-base58btc"),
    pytest.param("proof.proofValue", "z" + "1" * 40, SignatureInvalidError, id="proofvalue-short"),
    pytest.param("proof.proofValue", _DELETE, ProofInvalidError, id="proofvalue-missing"),
    pytest.param("proof.proofPurpose", "authentication", UntrustedKeyError, id="wrong-purpose"),
    pytest.param("proof.verificationMethod", "did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2",
                 UntrustedKeyError, id="key-of-another-did"),
    pytest.param("proof.created", "not a date", MalformedError, id="created-not-datetime"),
    pytest.param("proof.expires", "2020-01-01T00:00:00Z", VCGateError, id="proof-expired"),
    pytest.param("proof", _DELETE, ProofInvalidError, id="no-proof"),
    # VCDM 2.0 maps undefined terms to its @vocab, so an added term is signed data: tampering
    pytest.param("credentialSubject.addedTerm", "x", SignatureInvalidError, id="added-term"),
    pytest.param("@context", [V2, "https://example.com/unbundled/v1"], ContextNotAllowedError, id="unbundled-context"),
]


@pytest.mark.parametrize("path, value, error", ATTACKS)
def test_attacks_refused(di: DataIntegrity, path: str, value: Any, error: type[VCGateError]) -> None:
    signed, did, _ = _signed(di)
    with pytest.raises(error):
        di.verify(_mutate(signed, path, value), purpose="assertionMethod", controller=did)


@pytest.mark.parametrize("field, value, word", [
    pytest.param("type", ["VerifiableCredential", "UndefinedType"], "UndefinedType", id="undefined-type"),
    pytest.param("undefinedTerm", "x", "undefinedTerm", id="undefined-property"),
])
def test_undefined_terms_refused_when_no_vocab(di: DataIntegrity, field: str, value: Any, word: str) -> None:
    """A VCDM 1.1 document has no @vocab: an undefined term is dropped by expansion (or is a
    relative IRI that RDF conversion drops), so it would not be signed. Safe mode refuses."""
    key = PrivateKey.generate("EdDSA")
    did = str(did_key_from_public_key(key.public_key))
    document = {
        "@context": ["https://www.w3.org/2018/credentials/v1"],
        "type": ["VerifiableCredential"],
        "issuer": did,
        "issuanceDate": "2026-01-01T00:00:00Z",
        "credentialSubject": {"id": "did:example:agent"},
        field: value,
    }
    with pytest.raises(MalformedError, match=word):
        di.add_proof(document, key, verification_method=f"{did}#{did[8:]}")


def test_challenge_and_domain(di: DataIntegrity) -> None:
    signed, did, _ = _signed(di, purpose="authentication", challenge="c-123", domain="vcgate.example")
    di.verify(signed, purpose="authentication", controller=did, challenge="c-123", domain="vcgate.example")
    with pytest.raises(NonceMismatchError):
        di.verify(signed, purpose="authentication", controller=did, challenge="c-999")
    with pytest.raises(AudienceMismatchError):
        di.verify(signed, purpose="authentication", controller=did, domain="evil.example")


def test_controller_must_sign_one_proof_of_a_set(di: DataIntegrity) -> None:
    signed, did, _ = _signed(di)
    with pytest.raises(UntrustedKeyError):
        di.verify(signed, purpose="assertionMethod", controller="did:example:someone-else")


# --- the pinned-context split ---------------------------------------------------------------

REMAP = {"tier": "https://www.w3.org/ns/credentials/examples#revoked"}


def test_inline_context_remaps_a_term_and_is_flagged(di: DataIntegrity) -> None:
    """An inline context changes what "tier" means in the signed RDF. The proof verifies (the
    signature is fine) but the result says contexts_pinned=False: the gate must not authorise."""
    key = PrivateKey.generate("EdDSA")
    did = str(did_key_from_public_key(key.public_key))
    plain = _credential(did)
    remapped = copy.deepcopy(plain)
    remapped["@context"] = [V2, REMAP, EXAMPLES]
    loader = ContextLoader()
    # same JSON claims, different signed statements
    assert "examples#tier" in canonize(plain, loader)
    assert "examples#revoked" in canonize(remapped, loader) and "examples#tier" not in canonize(remapped, loader)

    signed = di.add_proof(remapped, key, verification_method=f"{did}#{did[8:]}")
    (result,) = di.verify(signed, purpose="assertionMethod", controller=did)
    assert result.contexts_pinned is False
    (pinned,) = di.verify(di.add_proof(plain, key, verification_method=f"{did}#{did[8:]}"), purpose="assertionMethod")
    assert pinned.contexts_pinned is True


def test_jwt_verifier_refuses_inline_context_unless_asked() -> None:
    """The gate's Verifier refuses an inline context; the conformance verifier flags it."""
    key = PrivateKey.generate("EdDSA")
    did = str(did_key_from_public_key(key.public_key))
    credential = _credential(did)
    credential["@context"] = [V2, REMAP]
    credential["validFrom"] = "2026-01-01T00:00:00Z"
    token = issue_document(key, credential, kid=f"{did}#{did[8:]}")
    with pytest.raises(ContextNotAllowedError):
        Verifier(clock=lambda: NOW).verify_credential(token)
    verified = Verifier(clock=lambda: NOW, allow_unpinned_contexts=True).verify_credential(token)
    assert verified.contexts_pinned is False
    plain = issue_document(key, _credential(did), kid=f"{did}#{did[8:]}")
    assert Verifier(clock=lambda: NOW).verify_credential(plain).contexts_pinned is True
