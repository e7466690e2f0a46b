"""did:jwk: round trips, the specification's examples, key use, and refusals of hostile DIDs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vcgate.did import PURPOSES, Resolver
from vcgate.did.jwk import JWKMethod, did_jwk_from_public_key
from vcgate.errors import InvalidDIDError, UntrustedKeyError
from vcgate.keys import PrivateKey, PublicKey, b64url_decode, b64url_encode

ALGS = ("EdDSA", "ES256", "ES256K")
SIGNING = ("assertionMethod", "authentication", "capabilityInvocation", "capabilityDelegation")

# did:jwk specification (https://github.com/quartzjer/did-jwk/blob/main/spec.md), examples:
# a P-256 key (no "use": every relationship) and an X25519 key with "use": "enc".
SPEC_P256 = (
    "did:jwk:eyJjcnYiOiJQLTI1NiIsImt0eSI6IkVDIiwieCI6ImFjYklRaXVNczNpOF91c3pFakoydHBUdFJNNEVVM3l6"
    "OTFQSDZDZEgyVjAiLCJ5IjoiX0tjeUxqOXZXTXB0bm1LdG00NkdxRHo4d2Y3NEk1TEtncmwyR3pIM25TRSJ9"
)
SPEC_P256_JWK = {
    "crv": "P-256",
    "kty": "EC",
    "x": "acbIQiuMs3i8_uszEjJ2tpTtRM4EU3yz91PH6CdH2V0",
    "y": "_KcyLj9vWMptnmKtm46GqDz8wf74I5LKgrl2GzH3nSE",
}
SPEC_X25519 = (
    "did:jwk:eyJrdHkiOiJPS1AiLCJjcnYiOiJYMjU1MTkiLCJ1c2UiOiJlbmMiLCJ4IjoiM3A3YmZYdDl3YlRUVzJIQzdP"
    "UTFOei1EUThoYmVHZE5yZngtRkctSUswOCJ9"
)


def _did(jwk: Any) -> str:
    text = jwk if isinstance(jwk, str) else json.dumps(jwk, separators=(",", ":"))
    return "did:jwk:" + b64url_encode(text.encode() if isinstance(text, str) else text)


@pytest.mark.parametrize("alg", ALGS)
def test_roundtrip(alg: str) -> None:
    private = PrivateKey.generate(alg)
    key = private.public_key
    did = did_jwk_from_public_key(key)
    assert did.method == "jwk"
    assert json.loads(b64url_decode(did.method_specific_id)) == key.jwk()

    resolver = Resolver.local()
    doc = resolver.resolve(did)
    vm_id = f"{did}#0"
    assert list(doc.methods) == [vm_id]
    assert doc.methods[vm_id].type == "JsonWebKey2020"
    assert doc.methods[vm_id].controller == did
    for purpose in PURPOSES:  # no "use": signing and key agreement
        assert doc.relationships[purpose] == (vm_id,)
        assert doc.method_for(vm_id, purpose).public_key == key
    resolver.verification_method(vm_id, "assertionMethod").public_key.verify(alg, b"m", private.sign(b"m"))
    assert resolver.resolve(did) is doc  # cached: did:jwk is a pure function of the DID


def test_spec_example_p256() -> None:
    assert json.loads(b64url_decode(SPEC_P256[len("did:jwk:") :])) == SPEC_P256_JWK
    key = PublicKey.from_jwk(SPEC_P256_JWK)
    assert key.alg == "ES256"
    # vcgate's encoding (compact JSON, RFC 7638 member order) reproduces the example exactly
    assert did_jwk_from_public_key(key) == SPEC_P256

    raw = JWKMethod().resolve(Resolver.local().resolve(SPEC_P256).id)
    vm_id = SPEC_P256 + "#0"
    assert raw["id"] == SPEC_P256
    assert raw["verificationMethod"] == [
        {"id": vm_id, "type": "JsonWebKey2020", "controller": SPEC_P256, "publicKeyJwk": SPEC_P256_JWK}
    ]
    for purpose in (*SIGNING, "keyAgreement"):
        assert raw[purpose] == [vm_id]
    doc = Resolver.local().resolve(SPEC_P256)
    assert doc.method_for(vm_id, "assertionMethod").public_key == key


def test_spec_example_x25519_refused() -> None:
    """vcgate verifies signatures only; an X25519 did:jwk has no key it can use."""
    assert json.loads(b64url_decode(SPEC_X25519[len("did:jwk:") :]))["crv"] == "X25519"
    with pytest.raises(InvalidDIDError) as exc:
        Resolver.local().resolve(SPEC_X25519)
    assert exc.value.code == "did_invalid"


@pytest.mark.parametrize("alg", ALGS)
def test_use_enc_is_key_agreement_only(alg: str) -> None:
    key = PrivateKey.generate(alg).public_key
    did = _did({**key.jwk(), "use": "enc"})
    resolver = Resolver.local()
    doc = resolver.resolve(did)
    vm_id = f"{did}#0"
    assert doc.relationships["keyAgreement"] == (vm_id,)
    for purpose in SIGNING:
        assert doc.relationships[purpose] == ()
        assert doc.methods_for(purpose) == []
        with pytest.raises(UntrustedKeyError) as exc:
            doc.method_for(vm_id, purpose)
        assert exc.value.code == "untrusted_key"
        with pytest.raises(UntrustedKeyError):
            resolver.verification_method(vm_id, purpose)


@pytest.mark.parametrize("alg", ALGS)
def test_use_sig_is_signing_only(alg: str) -> None:
    key = PrivateKey.generate(alg).public_key
    did = _did({**key.jwk(), "use": "sig", "kid": "k1"})
    doc = Resolver.local().resolve(did)
    vm_id = f"{did}#0"
    assert doc.relationships["keyAgreement"] == ()
    for purpose in SIGNING:
        assert doc.method_for(vm_id, purpose).public_key == key


def test_only_fragment_0_exists() -> None:
    did = did_jwk_from_public_key(PrivateKey.generate("ES256").public_key)
    resolver = Resolver.local()
    for fragment in ("1", "", "0 ", "#0"):
        with pytest.raises(UntrustedKeyError):
            resolver.verification_method(f"{did}#{fragment}", "assertionMethod")


_P256 = PrivateKey.from_raw_private("ES256", (5).to_bytes(32, "big"))
_JWK = _P256.public_key.jwk()
_PRIVATE_JWK = {**_JWK, "d": b64url_encode(_P256.private_bytes_raw())}

GARBAGE = [
    pytest.param(_did(_PRIVATE_JWK), id="private-d"),
    pytest.param(_did({**_JWK, "d": ""}), id="private-d-empty"),
    pytest.param("did:jwk:", id="empty"),
    pytest.param("did:jwk:e30", id="empty-object"),
    pytest.param("did:jwk:" + b64url_encode(json.dumps(_JWK).encode()) + "=", id="padded"),
    pytest.param("did:jwk:" + b64url_encode(json.dumps(_JWK).encode())[:-1], id="truncated"),
    pytest.param("did:jwk:A", id="len-mod-4-is-1"),
    pytest.param("did:jwk:" + b64url_encode(b"not json"), id="not-json"),
    pytest.param("did:jwk:" + b64url_encode(b"\xff\xfe\xfd"), id="not-utf8"),
    pytest.param(_did([_JWK]), id="json-array"),
    pytest.param(_did('"a string"'), id="json-string"),
    pytest.param(_did("null"), id="json-null"),
    pytest.param(_did({**_JWK, "crv": "P-384"}), id="crv-P-384"),
    pytest.param(_did({"kty": "RSA", "n": "AQAB", "e": "AQAB"}), id="rsa"),
    pytest.param(_did({"kty": "oct", "k": "c2VjcmV0"}), id="oct"),
    pytest.param(_did({**_JWK, "kty": "OKP"}), id="kty-OKP-crv-P-256"),
    pytest.param(_did({k: v for k, v in _JWK.items() if k != "y"}), id="y-missing"),
    pytest.param(_did({**_JWK, "y": _JWK["x"]}), id="not-on-curve"),
    pytest.param(_did({**_JWK, "alg": "ES256K"}), id="alg-mismatch"),
    pytest.param(_did({**_JWK, "alg": "HS256"}), id="alg-hs256"),
    pytest.param(_did({**_JWK, "kid": "k" * 1200}), id="too-long"),
    # Two parsers may pick different values for a repeated member (the strict JWS parser refuses
    # duplicates for that reason). Currently FAILS: json.loads keeps the last "x"/"y" silently.
    pytest.param(
        _did(
            '{"crv":"P-256","kty":"EC","x":"%s","y":"%s","x":"%s","y":"%s"}'
            % (SPEC_P256_JWK["x"], SPEC_P256_JWK["y"], _JWK["x"], _JWK["y"])
        ),
        id="duplicate-members",
    ),
    pytest.param(_did('{"crv":"P-256","crv":"secp256k1","kty":"EC","x":"%s","y":"%s"}' % (_JWK["x"], _JWK["y"])), id="duplicate-crv"),
]


@pytest.mark.parametrize("did", GARBAGE)
def test_garbage_refused(did: str) -> None:
    with pytest.raises(InvalidDIDError) as exc:
        Resolver.local().resolve(did)
    assert exc.value.code == "did_invalid"


def test_garbage_table_size() -> None:
    assert len(GARBAGE) >= 20
