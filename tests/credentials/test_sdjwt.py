"""SD-JWT VC: the RFC 9901 examples, issue/present/verify round trips, and the refusal table.

Every refusal asserts its stable error code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.credentials import sdjwt_vectors as V
from tests.support import NOW, Party, forge, make_party
from vcgate.credentials import Verifier
from vcgate.credentials.jws import sign_jws
from vcgate.credentials.models import FORMAT_SD_JWT_VC
from vcgate.credentials.sdjwt import (
    SDJWTLimits,
    disclosure_digest,
    holder_id_of_jwk,
    issue_sd_jwt_vc,
    parse_sd_jwt,
    present_sd_jwt,
    verify_sd_jwt,
    verify_sd_jwt_presentation,
)
from vcgate.errors import VCGateError
from vcgate.keys import PrivateKey, PublicKey, b64url_decode, b64url_encode

AUD = "https://gateway.example"
NONCE = "n-0S6_WzA2Mj"
VCT = "https://vcgate.example/credentials/model-access"
CLAIMS = {"org": "acme", "cost_centre": "cc-7", "clearance": "secret", "email": "ada@acme.example"}


# --- RFC 9901 examples ---------------------------------------------------------------------------


def test_rfc_4_2_1_disclosure_digest():
    disclosure, digest = V.DISCLOSURE_4_2_1
    assert disclosure_digest(disclosure) == digest
    assert json.loads(b64url_decode(disclosure)) == ["_26bc4LT-ac6q2KI6cBW5es", "family_name", "Möbius"]


@pytest.mark.parametrize(
    "token, expected",
    [
        pytest.param(V.SECTION_5_1, V.SECTION_5_1_CLAIMS, id="5.1-all-disclosures-and-array-elements"),
        pytest.param(V.APPENDIX_A_1, V.APPENDIX_A_1_CLAIMS, id="A.1-nested-object-properties"),
    ],
)
def test_rfc_examples_verify_to_the_rfc_payload(token, expected):
    verifier = Verifier(clock=lambda: 1_700_000_000)
    assert verify_sd_jwt(verifier, token, issuer_key=PublicKey.from_jwk(V.ISSUER_JWK)) == expected


def test_rfc_a_2_recursive_disclosures():
    verifier = Verifier(clock=lambda: 1_700_000_000)
    claims = verify_sd_jwt(verifier, V.APPENDIX_A_2, issuer_key=PublicKey.from_jwk(V.ISSUER_JWK))
    verification = claims["verified_claims"]["verification"]
    # The evidence array element is itself disclosed, and its object holds a further digest.
    assert verification == {"trust_framework": "de_aml", "evidence": [{"method": "pipp"}], "time": "2012-04-23T18:25Z"}
    assert claims["verified_claims"]["claims"]["family_name"] == "Müller"
    assert claims["verified_claims"]["claims"]["address"]["street_address"] == "Weidenstraße 22"


def test_rfc_a_3_sd_jwt_vc_with_key_binding():
    verifier = Verifier(clock=lambda: V.APPENDIX_A_3_KB_IAT + 30)
    pres = verify_sd_jwt_presentation(
        verifier, V.APPENDIX_A_3_KB, audience=V.APPENDIX_A_3_KB_AUD, nonce=V.APPENDIX_A_3_KB_NONCE,
        limits=SDJWTLimits(), issuer_key=PublicKey.from_jwk(V.ISSUER_JWK),
    )
    cred = pres.credentials[0]
    assert cred.format == FORMAT_SD_JWT_VC and cred.types == ("urn:eudi:pid:de:1",)
    assert cred.claims == {"age_equal_or_over": {"18": True}, "nationalities": ["DE"]}
    holder_key = PublicKey.from_jwk(V.HOLDER_JWK)
    assert pres.holder_key == holder_key and pres.holder == cred.subject == holder_id_of_jwk(holder_key)
    assert (pres.nonce, pres.audience, pres.issued_at) == (V.APPENDIX_A_3_KB_NONCE, (V.APPENDIX_A_3_KB_AUD,), V.APPENDIX_A_3_KB_IAT)


def test_rfc_a_3_refused_for_another_verifier_and_when_stale():
    key = PublicKey.from_jwk(V.ISSUER_JWK)
    fresh = Verifier(clock=lambda: V.APPENDIX_A_3_KB_IAT)
    with pytest.raises(VCGateError) as exc:
        verify_sd_jwt_presentation(fresh, V.APPENDIX_A_3_KB, audience="https://other.example", nonce=None,
                                   limits=SDJWTLimits(), issuer_key=key)
    assert exc.value.code == "audience_mismatch"
    stale = Verifier(clock=lambda: V.APPENDIX_A_3_KB_IAT + 3600)
    with pytest.raises(VCGateError) as exc:
        verify_sd_jwt_presentation(stale, V.APPENDIX_A_3_KB, audience=None, nonce=None, limits=SDJWTLimits(), issuer_key=key)
    assert exc.value.code == "expired"


# --- round trips with DIDs -----------------------------------------------------------------------


@pytest.fixture
def verifier(clock) -> Verifier:
    return Verifier(clock=clock)


def _issue(issuer: Party, holder: Party | None, **kw: Any) -> str:
    args: dict[str, Any] = dict(issuer=str(issuer.did), kid=issuer.kid, vct=VCT, claims=CLAIMS,
                                valid_from=NOW - 60, valid_until=NOW + 3600)
    if holder is not None:
        args["holder_key"] = holder.key.public_key
    args.update(kw)
    return issue_sd_jwt_vc(issuer.key, **args)


def _present(sd_jwt: str, holder: Party, disclose=(("org",),), **kw: Any) -> str:
    args: dict[str, Any] = dict(holder_key=holder.key, audience=AUD, nonce=NONCE, issued_at=NOW)
    args.update(kw)
    return present_sd_jwt(sd_jwt, disclose=disclose, **args)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "ES256K"])
def test_issue_present_verify_discloses_only_what_is_asked(alg, verifier):
    issuer, holder = make_party(alg), make_party(alg)
    sd_jwt = _issue(issuer, holder)
    assert len(parse_sd_jwt(sd_jwt).disclosures) == len(CLAIMS)  # every claim disclosable by default
    full = verifier.verify_credential(sd_jwt)
    assert dict(full.claims) == CLAIMS and full.types == (VCT,) and full.issuer == issuer.did

    pres = verifier.verify_presentation(_present(sd_jwt, holder), audience=AUD, nonce=NONCE)
    cred = pres.credentials[0]
    assert dict(cred.claims) == {"org": "acme"}
    assert pres.holder == cred.subject == holder_id_of_jwk(holder.key.public_key)
    assert pres.holder_key == holder.key.public_key
    assert pres.nonce == NONCE and pres.audience == (AUD,)


def test_vct_iss_validity_cnf_and_status_stay_visible_and_decoys_are_added(issuer, holder):
    status = {"status_list": {"idx": 7, "uri": "https://issuer.example/status/1"}}
    sd_jwt = _issue(issuer, holder, status=status, decoys=2)
    payload = json.loads(b64url_decode(sd_jwt.split("~")[0].split(".")[1]))
    for name in ("iss", "vct", "iat", "nbf", "exp", "cnf", "status"):
        assert name in payload, name
    assert payload["_sd_alg"] == "sha-256"
    assert len(payload["_sd"]) == len(CLAIMS) + 2 and payload["_sd"] == sorted(payload["_sd"])
    assert not set(CLAIMS).intersection(payload)


def test_nested_and_array_disclosures_round_trip(issuer, holder, verifier):
    claims = {"org": "acme", "address": {"country": "DE", "city": "Berlin"}, "roles": ["admin", "ops"]}
    sd_jwt = _issue(issuer, holder, claims=claims, disclosable=["address", "address.country", "address.city", "roles[]"])
    pres = verifier.verify_presentation(
        _present(sd_jwt, holder, disclose=[("address", "country"), ("roles", None)]), audience=AUD, nonce=NONCE
    )
    assert dict(pres.credentials[0].claims) == {"org": "acme", "address": {"country": "DE"}, "roles": ["admin", "ops"]}


def test_holder_bound_by_did_in_cnf_kid(issuer, holder, verifier):
    sd_jwt = _issue(issuer, None, holder_kid=holder.kid)
    pres = verifier.verify_presentation(_present(sd_jwt, holder), audience=AUD, nonce=NONCE)
    assert pres.holder == holder.did == pres.credentials[0].subject


def test_vc_sd_jwt_typ_is_accepted(issuer, holder, verifier):
    sd_jwt = _issue(issuer, holder, typ="vc+sd-jwt")
    assert verifier.verify_credential(sd_jwt).format == FORMAT_SD_JWT_VC


def test_token_status_list_reference_becomes_a_status_entry(issuer, holder, verifier):
    sd_jwt = _issue(issuer, holder, status={"status_list": {"idx": 3, "uri": "https://issuer.example/sl"}})
    assert verifier.verify_credential(sd_jwt).status == (
        {"idx": 3, "uri": "https://issuer.example/sl", "type": "TokenStatusList"},
    )


BITSTRING_ENTRY = {"id": "https://issuer.example/status/1#94567", "type": "BitstringStatusListEntry",
                   "statusPurpose": "revocation", "statusListIndex": "94567",
                   "statusListCredential": "https://issuer.example/status/1"}


@pytest.mark.parametrize(
    "status, expected",
    [
        pytest.param({"bitstring_status_list": BITSTRING_ENTRY}, (BITSTRING_ENTRY,), id="bitstring-entry-as-is"),
        pytest.param({"bitstring_status_list": {**BITSTRING_ENTRY, "type": "TokenStatusList"}}, "malformed",
                     id="bitstring-member-with-another-type"),
        pytest.param({"bitstring_status_list": {k: v for k, v in BITSTRING_ENTRY.items() if k != "type"}}, "malformed",
                     id="bitstring-member-without-type"),
        pytest.param({"revocation_registry": {"x": 1}}, ({"x": 1, "type": "status.revocation_registry"},),
                     id="unknown-mechanism-left-to-the-checker"),
    ],
)
def test_status_mechanisms_become_status_entries(status, expected, issuer, holder, verifier):
    sd_jwt = _issue(issuer, holder, status=status)
    if isinstance(expected, str):
        with pytest.raises(VCGateError) as exc:
            verifier.verify_credential(sd_jwt)
        assert exc.value.code == expected
    else:
        assert verifier.verify_credential(sd_jwt).status == expected


# --- the refusal table ---------------------------------------------------------------------------


def _swap_payload(sd_jwt: str, issuer: Party, change: Callable[[dict[str, Any]], None], **header: Any) -> str:
    """Re-sign the issuer JWT with ``change`` applied to its payload (the issuer's own key)."""
    jwt, *rest = sd_jwt.split("~")
    payload = json.loads(b64url_decode(jwt.split(".")[1]))
    change(payload)
    return "~".join([sign_jws(issuer.key, payload, typ=header.pop("typ", "dc+sd-jwt"), kid=issuer.kid, **header), *rest])


def _disclosure(*parts: Any) -> str:
    return b64url_encode(json.dumps(list(parts)).encode())


def _kb(holder_key: PrivateKey, presented: str, **claims: Any) -> str:
    from vcgate.credentials.sdjwt import _sd_hash

    body = {"iat": int(NOW), "aud": AUD, "nonce": NONCE, "sd_hash": _sd_hash(presented)}
    body.update(claims)
    for k in [k for k, v in body.items() if v is None]:
        del body[k]
    return sign_jws(holder_key, body, typ="kb+jwt", kid=None)


def _tamper(parts: list[str], index: int) -> list[str]:
    salt, name, value = json.loads(b64url_decode(parts[index]))
    parts[index] = _disclosure(salt, name, value + "x")
    return parts


def _cases(issuer: Party, holder: Party) -> list[tuple[str, str]]:
    """(id, presentation or credential) pairs; each must be refused with its code."""
    base = _issue(issuer, holder)
    parts = base.split("~")  # [jwt, d1..dn, ""]
    presented = "~".join(parts[:2]) + "~"
    good_kb = _kb(holder.key, presented)
    other = make_party()

    def with_kb(text: str, **claims: Any) -> str:
        return text + _kb(holder.key, text, **claims)

    def drop_sd(payload: dict[str, Any]) -> None:  # the digest of the presented Disclosure
        payload["_sd"].remove(disclosure_digest(parts[1]))

    def dup_digest(payload: dict[str, Any]) -> None:
        payload["nested"] = {"_sd": [disclosure_digest(parts[1])]}

    forged_issuer_jwt = forge({"alg": "none", "typ": "dc+sd-jwt"}, json.loads(b64url_decode(parts[0].split(".")[1])))
    return [
        ("tampered-disclosure", "disclosure_unreferenced", with_kb("~".join(_tamper(parts[:2], 1)) + "~")),
        ("digest-mismatch", "disclosure_unreferenced",
         with_kb(_swap_payload(base, issuer, drop_sd).split("~")[0] + "~" + parts[1] + "~")),
        ("duplicate-disclosure", "disclosure_duplicate", with_kb("~".join([parts[0], parts[1], parts[1]]) + "~")),
        ("duplicate-digest-in-payload", "disclosure_duplicate",
         with_kb(_swap_payload(base, issuer, dup_digest).split("~")[0] + "~" + parts[1] + "~")),
        ("unreferenced-disclosure", "disclosure_unreferenced",
         with_kb(presented + _disclosure("c2FsdHNhbHRzYWx0", "org", "evil") + "~")),
        ("foreign-disclosure", "disclosure_unreferenced",
         with_kb(parts[0] + "~" + _issue(issuer, holder).split("~")[1] + "~")),
        ("array-disclosure-in-_sd", "disclosure_invalid",
         with_kb(_swap_payload(base, issuer, lambda p: p["_sd"].append(disclosure_digest(_disclosure("s", "v")))).split("~")[0]
                 + "~" + _disclosure("s", "v") + "~")),
        ("reserved-name-disclosure", "disclosure_invalid", with_kb(presented + _disclosure("s", "_sd", []) + "~")),
        ("malformed-disclosure", "disclosure_invalid", with_kb(presented + b64url_encode(b'{"a":1}') + "~")),
        ("kb-missing", "key_binding_required", presented),
        ("kb-wrong-sd_hash", "key_binding_invalid", presented + _kb(holder.key, parts[0] + "~")),
        ("kb-wrong-typ", "key_binding_invalid", presented + sign_jws(holder.key, json.loads(b64url_decode(good_kb.split(".")[1])), typ="JWT", kid=None)),
        ("kb-no-nonce", "key_binding_invalid", with_kb(presented, nonce=None)),
        ("kb-wrong-nonce", "nonce_mismatch", with_kb(presented, nonce="another")),
        ("kb-wrong-aud", "audience_mismatch", with_kb(presented, aud="https://elsewhere.example")),
        ("kb-stale-iat", "expired", with_kb(presented, iat=int(NOW) - 3600)),
        ("kb-future-iat", "not_yet_valid", with_kb(presented, iat=int(NOW) + 3600)),
        ("kb-signed-by-another-key", "signature_invalid", presented + _kb(other.key, presented)),
        ("kb-alg-none", "algorithm_not_allowed", presented + forge({"alg": "none", "typ": "kb+jwt"}, json.loads(b64url_decode(good_kb.split(".")[1])))),
        ("kb-alg-HS256", "algorithm_not_allowed", presented + forge({"alg": "HS256", "typ": "kb+jwt"}, json.loads(b64url_decode(good_kb.split(".")[1])), signature=b"x" * 32)),
        ("issuer-alg-none", "algorithm_not_allowed", with_kb(forged_issuer_jwt + "~" + parts[1] + "~")),
        ("issuer-signed-by-another-key", "signature_invalid",
         with_kb(sign_jws(other.key, json.loads(b64url_decode(parts[0].split(".")[1])), typ="dc+sd-jwt", kid=issuer.kid)
                 + "~" + parts[1] + "~")),
        ("unknown-_sd_alg", "sd_alg_unsupported", with_kb(_swap_payload(base, issuer, lambda p: p.update(_sd_alg="sha-512")).split("~")[0] + "~" + parts[1] + "~")),
        ("no-cnf-key", "key_binding_required", with_kb(_issue(issuer, None).split("~")[0] + "~")),
        ("not-an-sd-jwt-vc-typ", "type_mismatch", with_kb(_swap_payload(base, issuer, lambda p: None, typ="vc+jwt").split("~")[0] + "~")),
        ("expired-credential", "expired", with_kb(_issue(issuer, holder, valid_from=NOW - 7200, valid_until=NOW - 3600).split("~")[0] + "~")),
        ("no-vct", "malformed", with_kb(_swap_payload(base, issuer, lambda p: p.pop("vct")).split("~")[0] + "~")),
        ("issuer-not-a-did", "malformed", with_kb(_swap_payload(base, issuer, lambda p: p.update(iss="https://issuer.example")).split("~")[0] + "~")),
        ("oversized-disclosure", "too_large", with_kb(presented + _disclosure("s", "big", "x" * 5000) + "~")),
        ("too-many-disclosures", "too_large", with_kb(presented + (parts[1] + "~") * 64)),
    ]


_IDS = [c[0] for c in _cases(make_party(), make_party())]


@pytest.mark.parametrize("case_id", _IDS)
def test_refusals(case_id, issuer, holder, verifier):
    code, token = next((code, token) for cid, code, token in _cases(issuer, holder) if cid == case_id)
    with pytest.raises(VCGateError) as exc:
        verifier.verify_presentation(token, audience=AUD, nonce=NONCE)
    assert exc.value.code == code, exc.value.message


def test_the_untampered_base_case_of_the_table_is_accepted(issuer, holder, verifier):
    parts = _issue(issuer, holder).split("~")
    presented = "~".join(parts[:2]) + "~"
    assert verifier.verify_presentation(presented + _kb(holder.key, presented), audience=AUD, nonce=NONCE).holder


def test_a_presentation_is_not_a_credential(issuer, holder, verifier):
    with pytest.raises(VCGateError) as exc:
        verifier.verify_credential(_present(_issue(issuer, holder), holder))
    assert exc.value.code == "type_mismatch"


def test_caps_are_configurable(issuer, holder, clock):
    strict = Verifier(clock=clock, sd_jwt=SDJWTLimits(max_disclosures=2))
    with pytest.raises(VCGateError) as exc:
        strict.verify_credential(_issue(issuer, holder))
    assert exc.value.code == "too_large"


def test_issuer_refuses_to_conceal_vc_claims(issuer, holder):
    for name in ("vct", "iss", "exp", "status", "cnf"):
        with pytest.raises(VCGateError):
            _issue(issuer, holder, disclosable=[name])
