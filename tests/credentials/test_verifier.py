"""Credentials and presentations: round trips in both formats, and the table of refusals.

Every refusal asserts its stable error code: that code is the contract with gateways.
"""

from __future__ import annotations

import hmac
import hashlib
import json
from typing import Any

import pytest

from tests.support import NOW, Party, b64json, forge, make_party
from vcgate.credentials import (
    CONTEXT_V1,
    CONTEXT_V2,
    FORMAT_VC_JOSE,
    FORMAT_VC_JWT11,
    Verifier,
    create_presentation,
    issue_credential,
)
from vcgate.did import DID, Resolver
from vcgate.did.jwk import JWKMethod
from vcgate.did.key import KeyMethod
from vcgate.did.document import multikey_encode
from vcgate.errors import VCGateError
from vcgate.keys import PrivateKey, b64url_decode, b64url_encode

AUD = "https://gateway.example"
NONCE = "nonce-123"
ED25519_L = 2**252 + 27742317777372353535851937790883648493


class StaticMethod:
    """A DID method serving fixed documents: lets tests shape a DID document at will."""

    name = "test"

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def resolve(self, did: DID) -> dict[str, Any]:
        from vcgate.errors import DIDNotFoundError

        if did not in self.docs:
            raise DIDNotFoundError()
        return self.docs[did]


@pytest.fixture
def static() -> StaticMethod:
    return StaticMethod()


@pytest.fixture
def verifier(clock, static) -> Verifier:
    return Verifier(resolver=Resolver([KeyMethod(), JWKMethod(), static]), clock=clock)


def vc_for(issuer: Party, subject: str, fmt: str = FORMAT_VC_JOSE, **kw: Any) -> str:
    args: dict[str, Any] = dict(
        issuer=issuer.did,
        kid=issuer.kid,
        subject=subject,
        types=["ModelAccessCredential"],
        claims={"models": ["llama-3"], "tier": "gold"},
        valid_from=NOW - 3600,
        valid_until=NOW + 3600,
        format=fmt,
    )
    args.update(kw)
    return issue_credential(issuer.key, **args)


def vp_for(holder: Party, credentials: list[str], fmt: str = FORMAT_VC_JOSE, **kw: Any) -> str:
    args: dict[str, Any] = dict(
        holder=holder.did,
        kid=holder.kid,
        credentials=credentials,
        audience=AUD,
        nonce=NONCE,
        issued_at=NOW,
        format=fmt,
    )
    args.update(kw)
    return create_presentation(holder.key, **args)


def split(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    h, p, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


def refuses(code: str, fn, *args: Any, **kwargs: Any) -> VCGateError:
    with pytest.raises(VCGateError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, f"expected {code}, got {info.value.code}: {info.value.message}"
    assert info.value.message
    return info.value


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [FORMAT_VC_JOSE, FORMAT_VC_JWT11])
@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "ES256K"])
def test_credential_round_trip(verifier, holder, fmt, alg):
    issuer = make_party(alg)
    token = vc_for(issuer, holder.did, fmt)
    header, payload = split(token)
    assert header["alg"] == alg and header["kid"] == issuer.kid
    assert header["typ"] == ("vc+jwt" if fmt == FORMAT_VC_JOSE else "JWT")
    if fmt == FORMAT_VC_JOSE:
        assert payload["@context"][0] == CONTEXT_V2 and payload["issuer"] == issuer.did
    else:
        assert payload["vc"]["@context"][0] == CONTEXT_V1 and payload["iss"] == issuer.did
        assert payload["sub"] == holder.did and payload["nbf"] == int(NOW - 3600)
    cred = verifier.verify_credential(token)
    assert cred.format == fmt
    assert cred.issuer == issuer.did and cred.subject == holder.did
    assert cred.types == ("VerifiableCredential", "ModelAccessCredential")
    assert cred.claims == {"models": ["llama-3"], "tier": "gold"}
    assert cred.valid_from == NOW - 3600 and cred.valid_until == NOW + 3600
    assert cred.kid == issuer.kid and cred.issuer_key == issuer.key.public_key
    assert cred.id and cred.id.startswith("urn:uuid:")
    assert cred.status == ()


@pytest.mark.parametrize("fmt", [FORMAT_VC_JOSE, FORMAT_VC_JWT11])
@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "ES256K"])
def test_presentation_round_trip(verifier, issuer, fmt, alg):
    holder = make_party(alg)
    vc = vc_for(issuer, holder.did, fmt)
    vp = vp_for(holder, [vc], fmt)
    header, _ = split(vp)
    assert header["typ"] == ("vp+jwt" if fmt == FORMAT_VC_JOSE else "JWT")
    pres = verifier.verify_presentation(vp, audience=AUD, nonce=NONCE)
    assert pres.holder == holder.did and pres.holder_key == holder.key.public_key
    assert pres.audience == (AUD,) and pres.nonce == NONCE
    assert [c.subject for c in pres.credentials] == [holder.did]
    assert pres.expires_at == NOW + 300


def test_credential_without_kid_uses_issuer_assertion_key(verifier, issuer, holder):
    payload = split(vc_for(issuer, holder.did))[1]
    token = forge({"alg": "EdDSA", "typ": "vc+jwt"}, payload, issuer.key)
    assert verifier.verify_credential(token).kid == issuer.kid


def test_relative_and_bare_did_kid(verifier, issuer, holder):
    payload = split(vc_for(issuer, holder.did))[1]
    frag = "#" + issuer.did.method_specific_id
    assert verifier.verify_credential(forge({"alg": "EdDSA", "kid": frag}, payload, issuer.key)).kid == issuer.kid
    assert verifier.verify_credential(forge({"alg": "EdDSA", "kid": issuer.did}, payload, issuer.key)).issuer == issuer.did


def test_issuer_as_object_and_status_entries(verifier, issuer, holder):
    status = {"id": "https://example.com/status#94567", "type": "BitstringStatusListEntry", "statusPurpose": "revocation"}
    _, payload = split(vc_for(issuer, holder.did, status=status))
    payload["issuer"] = {"id": issuer.did, "name": "Example Issuer"}
    cred = verifier.verify_credential(forge({"alg": "EdDSA", "typ": "vc+jwt", "kid": issuer.kid}, payload, issuer.key))
    assert cred.issuer == issuer.did
    assert cred.status == (status,)


def test_did_jwk_issuer(verifier, holder):
    from vcgate.did import did_jwk_from_public_key

    key = PrivateKey.generate("ES256")
    did = did_jwk_from_public_key(key.public_key)
    token = issue_credential(
        key, issuer=did, kid=f"{did}#0", subject=holder.did, valid_from=NOW - 10, valid_until=NOW + 10
    )
    assert verifier.verify_credential(token).issuer == did


def test_holder_binding_can_be_turned_off(verifier, issuer, holder):
    other = make_party()
    vp = vp_for(holder, [vc_for(issuer, other.did)])
    refuses("holder_mismatch", verifier.verify_presentation, vp, audience=AUD, nonce=NONCE)
    pres = verifier.verify_presentation(vp, audience=AUD, nonce=NONCE, holder_binding=False)
    assert pres.credentials[0].subject == other.did


def test_presentation_accepts_audience_list_and_any_of_wanted(verifier, issuer, holder):
    vp = vp_for(holder, [vc_for(issuer, holder.did)], audience=["https://other", AUD])
    assert verifier.verify_presentation(vp, audience=[AUD, "https://alias"], nonce=NONCE).audience == ("https://other", AUD)


def test_leeway_tolerates_small_skew(issuer, holder, static):
    token = vc_for(issuer, holder.did, valid_from=NOW + 30, valid_until=NOW + 3600)
    Verifier(clock=lambda: NOW, leeway=60).verify_credential(token)
    refuses("not_yet_valid", Verifier(clock=lambda: NOW, leeway=0).verify_credential, token)


# --- the refusal table ----------------------------------------------------------------------


def _vc_payload(issuer: Party, holder: Party) -> dict[str, Any]:
    return split(vc_for(issuer, holder.did))[1]


def _none_token(spelling: str):
    def build(issuer: Party, holder: Party) -> str:
        return forge({"alg": spelling, "typ": "vc+jwt"}, _vc_payload(issuer, holder), signature=b"")

    return build


def _hs256_with_public_key(issuer: Party, holder: Party) -> str:
    # The classic confusion: HMAC keyed with the issuer's *public* key, which anyone knows.
    header = {"alg": "HS256", "typ": "vc+jwt", "kid": issuer.kid}
    signing_input = f"{b64json(header)}.{b64json(_vc_payload(issuer, holder))}"
    secret = issuer.key.public_key.raw()
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url_encode(sig)}"


def _embedded_jwk(issuer: Party, holder: Party) -> str:
    attacker = PrivateKey.generate("EdDSA")
    header = {"alg": "EdDSA", "typ": "vc+jwt", "jwk": attacker.public_key.jwk()}
    return forge(header, _vc_payload(issuer, holder), attacker)


def _header_with(**extra: Any):
    def build(issuer: Party, holder: Party) -> str:
        header = {"alg": "EdDSA", "typ": "vc+jwt", "kid": issuer.kid, **extra}
        return forge(header, _vc_payload(issuer, holder), issuer.key)

    return build


def _kid_of_other_did(issuer: Party, holder: Party) -> str:
    attacker = make_party()
    # Signed by the attacker, whose kid is a perfectly valid did:key -- but not the issuer's.
    return forge({"alg": "EdDSA", "typ": "vc+jwt", "kid": attacker.kid}, _vc_payload(issuer, holder), attacker.key)


def _signed_by_other_key(issuer: Party, holder: Party) -> str:
    return forge({"alg": "EdDSA", "typ": "vc+jwt", "kid": issuer.kid}, _vc_payload(issuer, holder), PrivateKey.generate())


def _tampered_payload(issuer: Party, holder: Party) -> str:
    h, _, s = vc_for(issuer, holder.did).split(".")
    payload = _vc_payload(issuer, holder)
    payload["credentialSubject"]["tier"] = "platinum"
    return f"{h}.{b64json(payload)}.{s}"


def _non_canonical_ed25519(issuer: Party, holder: Party) -> str:
    # (R, S + L) satisfies the verification equation for a lax verifier: it must be refused.
    h, p, s = vc_for(issuer, holder.did).split(".")
    sig = b64url_decode(s)
    big_s = int.from_bytes(sig[32:], "little") + ED25519_L
    return f"{h}.{p}.{b64url_encode(sig[:32] + big_s.to_bytes(32, 'little'))}"


def _duplicate_in_payload(issuer: Party, holder: Party) -> str:
    payload = json.dumps(_vc_payload(issuer, holder), separators=(",", ":"))
    dup = payload[:-1] + f',"issuer":"{make_party().did}"' + "}"
    return forge({"alg": "EdDSA", "typ": "vc+jwt", "kid": issuer.kid}, dup, issuer.key)


def _duplicate_in_header(issuer: Party, holder: Party) -> str:
    header = '{"alg":"EdDSA","typ":"vc+jwt","alg":"none"}'
    return forge(header, _vc_payload(issuer, holder), issuer.key)


def _oversized(issuer: Party, holder: Party) -> str:
    payload = _vc_payload(issuer, holder)
    payload["credentialSubject"]["pad"] = "x" * 70_000
    return forge({"alg": "EdDSA", "typ": "vc+jwt", "kid": issuer.kid}, payload, issuer.key)


def _deeply_nested(issuer: Party, holder: Party) -> str:
    payload = _vc_payload(issuer, holder)
    payload["credentialSubject"]["deep"] = json.loads("[" * 40 + "]" * 40)
    return forge({"alg": "EdDSA", "typ": "vc+jwt", "kid": issuer.kid}, payload, issuer.key)


def _nested_past_recursion_limit(issuer: Party, holder: Party) -> str:
    payload = json.dumps(_vc_payload(issuer, holder), separators=(",", ":"))
    deep = payload[:-1] + ',"x":' + "[" * 20_000 + "]" * 20_000 + "}"
    return forge({"alg": "EdDSA", "typ": "vc+jwt", "kid": issuer.kid}, deep, issuer.key)


def _payload_edit(edit, kid: bool = True):
    def build(issuer: Party, holder: Party) -> str:
        payload = _vc_payload(issuer, holder)
        edit(payload)
        header = {"alg": "EdDSA", "typ": "vc+jwt", **({"kid": issuer.kid} if kid else {})}
        return forge(header, payload, issuer.key)

    return build


def _presentation_as_credential(issuer: Party, holder: Party) -> str:
    return vp_for(holder, [vc_for(issuer, holder.did)])


def _wrong_curve_for_alg(issuer: Party, holder: Party) -> str:
    p256 = make_party("ES256")
    payload = _vc_payload(issuer, holder)
    payload["issuer"] = p256.did
    # Header claims ES256K; the issuer's key is P-256. The curve decides, not the header.
    header = {"alg": "ES256K", "typ": "vc+jwt", "kid": p256.kid}
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    return f"{signing_input}.{b64url_encode(p256.key.sign(signing_input.encode()))}"


def _garbage(text: str):
    return lambda issuer, holder: text


CREDENTIAL_REFUSALS = [
    *[
        pytest.param(_none_token(s), "algorithm_not_allowed", id=f"alg-{s}")
        for s in ("none", "None", "NONE", "nOnE", " none", "")
    ],
    pytest.param(_hs256_with_public_key, "algorithm_not_allowed", id="hs256-keyed-with-public-key"),
    pytest.param(_header_with(alg="HS512"), "algorithm_not_allowed", id="hs512"),
    pytest.param(_header_with(alg="RS256"), "algorithm_not_allowed", id="rs256-not-in-allow-list"),
    pytest.param(_wrong_curve_for_alg, "algorithm_not_allowed", id="es256k-header-with-p256-key"),
    pytest.param(_embedded_jwk, "header_not_allowed", id="embedded-jwk-header"),
    pytest.param(_header_with(jku="https://attacker.example/jwks"), "header_not_allowed", id="jku-header"),
    pytest.param(_header_with(x5c=["MIIB"]), "header_not_allowed", id="x5c-header"),
    pytest.param(_kid_of_other_did, "untrusted_key", id="kid-of-another-did"),
    pytest.param(_header_with(kid="#no-such-key"), "untrusted_key", id="kid-unknown-fragment"),
    pytest.param(_signed_by_other_key, "signature_invalid", id="signature-by-another-key"),
    pytest.param(_tampered_payload, "signature_invalid", id="tampered-payload"),
    pytest.param(_non_canonical_ed25519, "signature_invalid", id="non-canonical-ed25519-s"),
    pytest.param(_header_with(crit=["exp"]), "unsupported_critical", id="unknown-crit"),
    pytest.param(_header_with(crit=["b64"], b64=False), "unsupported_critical", id="crit-b64-false"),
    pytest.param(_header_with(b64=False), "header_not_allowed", id="b64-false"),
    pytest.param(_header_with(crit=[]), "malformed", id="empty-crit"),
    pytest.param(_oversized, "too_large", id="oversized-token"),
    pytest.param(_deeply_nested, "too_large", id="deeply-nested-json"),
    pytest.param(_nested_past_recursion_limit, "too_large", id="nested-past-recursion-limit"),
    pytest.param(_duplicate_in_payload, "malformed", id="duplicate-key-payload"),
    pytest.param(_duplicate_in_header, "malformed", id="duplicate-key-header"),
    pytest.param(_payload_edit(lambda p: p.update(validUntil="2026-05-01T00:00:00Z")), "expired", id="expired"),
    pytest.param(_payload_edit(lambda p: p.update(validFrom="2026-07-01T00:00:00Z")), "not_yet_valid", id="not-yet-valid"),
    pytest.param(_payload_edit(lambda p: p.update(exp=NOW - 120)), "expired", id="expired-by-jwt-exp"),
    pytest.param(_payload_edit(lambda p: p.update(nbf=NOW + 120)), "not_yet_valid", id="nbf-in-future"),
    pytest.param(_payload_edit(lambda p: p.update(validUntil="yesterday")), "malformed", id="bad-datetime"),
    pytest.param(_payload_edit(lambda p: p.update(iss=make_party().did)), "issuer_mismatch", id="iss-not-issuer"),
    pytest.param(_payload_edit(lambda p: p.update(sub=make_party().did)), "subject_mismatch", id="sub-not-subject"),
    pytest.param(_payload_edit(lambda p: p.update(type=["ModelAccessCredential"])), "type_mismatch", id="no-vc-type"),
    pytest.param(
        _payload_edit(lambda p: p["@context"].append({"tier": "https://attacker.example/tier"})),
        "context_not_allowed",
        id="inline-context",
    ),
    pytest.param(
        _payload_edit(lambda p: p["@context"].append("https://attacker.example/ctx")),
        "context_not_allowed",
        id="unknown-context",
    ),
    pytest.param(
        _payload_edit(lambda p: p.update({"@context": [CONTEXT_V1]})), "context_not_allowed", id="v1-context-in-vc-jwt"
    ),
    pytest.param(
        # An issuer URL needs its controller document fetched: not with the local resolver.
        _payload_edit(lambda p: p.update(issuer="https://issuer.example"), kid=False), "did_method_not_supported",
        id="url-issuer-without-network",
    ),
    pytest.param(
        _payload_edit(lambda p: p.update(issuer="urn:example:issuer"), kid=False), "did_invalid", id="urn-issuer"
    ),
    pytest.param(
        _payload_edit(lambda p: p.update(issuer="did:unknownmethod:abc"), kid=False),
        "did_method_not_supported",
        id="unknown-did-method",
    ),
    pytest.param(
        _payload_edit(lambda p: p.update(issuer=make_party().did)), "untrusted_key", id="issuer-swapped-kid-kept"
    ),
    pytest.param(_payload_edit(lambda p: p.update(credentialSubject=[{}, {}])), "malformed", id="many-subjects"),
    pytest.param(_presentation_as_credential, "type_mismatch", id="presentation-as-credential"),
    pytest.param(_header_with(typ="dpop+jwt"), "type_mismatch", id="dpop-typ"),
    pytest.param(_garbage("not.a.jwt"), "malformed", id="garbage"),
    pytest.param(_garbage("a.b"), "malformed", id="two-parts"),
    pytest.param(_garbage("eyJhbGciOiJFZERTQSJ9.e30=.AAAA"), "malformed", id="padded-base64"),
    pytest.param(_garbage("eyJhbGciOiJFZERTQSJ9.e3+/.AAAA"), "malformed", id="standard-base64-alphabet"),
    pytest.param(_garbage("é.é.é"), "malformed", id="non-ascii"),
    pytest.param(_garbage(""), "malformed", id="empty"),
]


@pytest.mark.parametrize("build, code", CREDENTIAL_REFUSALS)
def test_credential_refusals(verifier, issuer, holder, build, code):
    refuses(code, verifier.verify_credential, build(issuer, holder))


def test_non_string_token_is_malformed(verifier):
    refuses("malformed", verifier.verify_credential, 12345)


def test_error_status_codes(verifier, issuer, holder):
    err = refuses("signature_invalid", verifier.verify_credential, _signed_by_other_key(issuer, holder))
    assert err.status == 401 and err.to_dict()["error"] == "signature_invalid"
    assert refuses("too_large", verifier.verify_credential, _oversized(issuer, holder)).status == 413
    assert refuses("malformed", verifier.verify_credential, "x").status == 400


# --- key purposes (a DID document with separate keys per purpose) ----------------------------


@pytest.fixture
def split_keys(static: StaticMethod):
    """did:test:org with one key only for authentication and one only for assertionMethod."""
    auth, assertion = PrivateKey.generate(), PrivateKey.generate("ES256")
    did = DID("did:test:org")
    static.docs[did] = {
        "id": did,
        "verificationMethod": [
            {"id": f"{did}#auth", "type": "Multikey", "controller": did, "publicKeyMultibase": multikey_encode(auth.public_key)},
            {"id": f"{did}#assert", "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": assertion.public_key.jwk()},
        ],
        "authentication": [f"{did}#auth"],
        "assertionMethod": ["#assert"],
    }
    return did, auth, assertion


def test_key_not_authorised_for_assertion(verifier, split_keys, holder):
    did, auth, _ = split_keys
    token = issue_credential(auth, issuer=did, kid=f"{did}#auth", subject=holder.did, valid_from=NOW - 5)
    refuses("untrusted_key", verifier.verify_credential, token)


def test_key_not_authorised_for_authentication(verifier, split_keys, issuer):
    did, _, assertion = split_keys
    vc = vc_for(issuer, did)
    vp = create_presentation(
        assertion, holder=did, kid=f"{did}#assert", credentials=[vc], audience=AUD, nonce=NONCE, issued_at=NOW
    )
    refuses("untrusted_key", verifier.verify_presentation, vp, audience=AUD, nonce=NONCE)


def test_split_keys_each_for_its_purpose(verifier, split_keys, issuer):
    did, auth, assertion = split_keys
    token = issue_credential(assertion, issuer=did, kid=f"{did}#assert", subject=did, valid_from=NOW - 5)
    assert verifier.verify_credential(token).kid == f"{did}#assert"
    vp = create_presentation(auth, holder=did, kid=f"{did}#auth", credentials=[token], audience=AUD, nonce=NONCE, issued_at=NOW)
    assert verifier.verify_presentation(vp, audience=AUD, nonce=NONCE).kid == f"{did}#auth"
    # Without kid the right key is chosen by purpose and algorithm.
    payload = split(token)[1]
    assert verifier.verify_credential(forge({"alg": "ES256", "typ": "vc+jwt"}, payload, assertion)).kid == f"{did}#assert"


def test_unknown_did_document(verifier, holder):
    token = issue_credential(PrivateKey.generate(), issuer="did:test:nobody", kid="did:test:nobody#k", subject=holder.did, valid_from=NOW)
    refuses("did_not_found", verifier.verify_credential, token)


# --- presentations --------------------------------------------------------------------------


def _vp_edit(edit, key_of=lambda holder: holder.key):
    def build(issuer: Party, holder: Party) -> str:
        header, payload = split(vp_for(holder, [vc_for(issuer, holder.did)]))
        edit(payload)
        return forge(header, payload, key_of(holder))

    return build


def _vp_other_holder(issuer: Party, holder: Party) -> str:
    thief = make_party()
    return vp_for(thief, [vc_for(issuer, holder.did)])


def _vp_with_bad_credential(issuer: Party, holder: Party) -> str:
    return vp_for(holder, [_tampered_payload(issuer, holder)])


def _vp_with_expired_credential(issuer: Party, holder: Party) -> str:
    return vp_for(holder, [vc_for(issuer, holder.did, valid_until=NOW - 3000)])


def _vp_kid_other_did(issuer: Party, holder: Party) -> str:
    thief = make_party()
    header, payload = split(vp_for(holder, [vc_for(issuer, holder.did)]))
    header["kid"] = thief.kid
    return forge(header, payload, thief.key)


def _vp_too_many(issuer: Party, holder: Party) -> str:
    vc = vc_for(issuer, holder.did)
    return vp_for(holder, [vc] * 17)


def _vp_credential_as_object(issuer: Party, holder: Party) -> str:
    header, payload = split(vp_for(holder, [vc_for(issuer, holder.did)]))
    payload["verifiableCredential"] = [{"type": "VerifiableCredential", "issuer": issuer.did}]
    return forge(header, payload, holder.key)


PRESENTATION_REFUSALS = [
    pytest.param(_vp_edit(lambda p: p.update(aud="https://elsewhere")), "audience_mismatch", id="wrong-audience"),
    pytest.param(_vp_edit(lambda p: p.pop("aud")), "audience_mismatch", id="no-audience"),
    pytest.param(_vp_edit(lambda p: p.update(nonce="other")), "nonce_mismatch", id="wrong-nonce"),
    pytest.param(_vp_edit(lambda p: p.pop("nonce")), "nonce_mismatch", id="no-nonce"),
    pytest.param(_vp_edit(lambda p: p.update(exp=NOW - 100)), "expired", id="expired-presentation"),
    pytest.param(_vp_edit(lambda p: p.update(iat=NOW + 600)), "not_yet_valid", id="issued-in-future"),
    pytest.param(_vp_edit(lambda p: p.update(nonce=7)), "malformed", id="nonce-not-string"),
    pytest.param(_vp_edit(lambda p: p.update(type=["VerifiableCredential"])), "type_mismatch", id="not-a-vp-type"),
    pytest.param(_vp_edit(lambda p: p.update(holder=make_party().did)), "untrusted_key", id="holder-field-other-did"),
    pytest.param(_vp_edit(lambda p: None, key_of=lambda h: PrivateKey.generate()), "signature_invalid", id="vp-signed-by-other-key"),
    pytest.param(_vp_other_holder, "holder_mismatch", id="stolen-credential"),
    pytest.param(_vp_kid_other_did, "untrusted_key", id="vp-kid-of-another-did"),
    pytest.param(_vp_with_bad_credential, "signature_invalid", id="tampered-embedded-credential"),
    pytest.param(_vp_with_expired_credential, "expired", id="expired-embedded-credential"),
    pytest.param(_vp_too_many, "malformed", id="too-many-credentials"),
    pytest.param(_vp_credential_as_object, "malformed", id="embedded-non-jwt-credential"),
    pytest.param(lambda i, h: vc_for(i, h.did), "type_mismatch", id="credential-as-presentation"),
]


@pytest.mark.parametrize("build, code", PRESENTATION_REFUSALS)
def test_presentation_refusals(verifier, issuer, holder, build, code):
    refuses(code, verifier.verify_presentation, build(issuer, holder), audience=AUD, nonce=NONCE)


def test_vc_jwt11_presentation_holder_must_be_iss(verifier, issuer, holder):
    header, payload = split(vp_for(holder, [vc_for(issuer, holder.did, FORMAT_VC_JWT11)], FORMAT_VC_JWT11))
    payload["vp"]["holder"] = make_party().did
    refuses("issuer_mismatch", verifier.verify_presentation, forge(header, payload, holder.key), audience=AUD, nonce=NONCE)


def test_max_age(verifier, issuer, holder):
    vp = vp_for(holder, [vc_for(issuer, holder.did)], issued_at=NOW - 200, lifetime=3600)
    assert verifier.verify_presentation(vp, audience=AUD, nonce=NONCE, max_age=300)
    refuses("expired", verifier.verify_presentation, vp, audience=AUD, nonce=NONCE, max_age=60)


def test_checks_skipped_only_when_asked(verifier, issuer, holder):
    vp = vp_for(holder, [vc_for(issuer, holder.did)], audience="https://x", nonce="y")
    assert verifier.verify_presentation(vp, audience=None, nonce=None).nonce == "y"
    with pytest.raises(TypeError):
        verifier.verify_presentation(vp)  # audience and nonce must be decided by the caller


def test_algorithm_allow_list_is_the_callers(issuer, holder, clock):
    token = vc_for(make_party("ES256K"), holder.did)
    refuses("algorithm_not_allowed", Verifier(algorithms=["EdDSA", "ES256"], clock=clock).verify_credential, token)
    with pytest.raises(ValueError):
        Verifier(algorithms=["HS256"])


def test_fully_specified_ed25519_alg_is_bound_to_ed25519_keys(verifier, issuer, holder):
    payload = _vc_payload(issuer, holder)
    ok = forge({"alg": "Ed25519", "typ": "vc+jwt", "kid": issuer.kid}, payload, issuer.key)
    assert verifier.verify_credential(ok).issuer == issuer.did
    # Without kid too: the issuer's key is found by the curve the algorithm names.
    assert verifier.verify_credential(forge({"alg": "Ed25519", "typ": "vc+jwt"}, payload, issuer.key)).kid == issuer.kid
    p256 = make_party("ES256")
    payload["issuer"] = p256.did
    header = {"alg": "Ed25519", "typ": "vc+jwt", "kid": p256.kid}
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    bad = f"{signing_input}.{b64url_encode(p256.key.sign(signing_input.encode()))}"
    refuses("algorithm_not_allowed", verifier.verify_credential, bad)
