"""DCQL (OpenID4VP 1.0): the query builder, validation, path semantics, and the holder's choice."""

from __future__ import annotations

import pytest

from tests.support import NOW, make_party
from vcgate.client import Holder
from vcgate.credentials import Verifier
from vcgate.credentials.dcql import claim_values, dcql_query, parse_dcql, select
from vcgate.credentials.sdjwt import holder_view, issue_sd_jwt_vc
from vcgate.errors import VCGateError

VCT = "https://vcgate.example/credentials/model-access"
CLAIMS = {"org": "acme", "cost_centre": "cc-7", "email": "ada@acme.example", "roles": ["admin", "ops"],
          "address": {"country": "DE", "city": "Berlin"}}

# OpenID4VP 1.0 section 6 / appendix D style queries.
SPEC_STYLE = {
    "credentials": [{
        "id": "my_credential",
        "format": "dc+sd-jwt",
        "meta": {"vct_values": ["https://credentials.example.com/identity_credential"]},
        "claims": [{"path": ["last_name"]}, {"path": ["first_name"]}, {"path": ["address", "street_address"]}],
    }]
}


def test_builder_output_parses_and_round_trips():
    q = dcql_query(vct_values=[VCT], claims=[["org"], ["address", "country"]])
    assert q == {"credentials": [{"id": "vcgate", "format": "dc+sd-jwt", "meta": {"vct_values": [VCT]},
                                  "claims": [{"path": ["org"]}, {"path": ["address", "country"]}]}]}
    assert parse_dcql(SPEC_STYLE).credentials[0].claims[2].path == ("address", "street_address")


@pytest.mark.parametrize("query", [
    pytest.param([], id="not-an-object"),
    pytest.param({"credentials": []}, id="no-credentials"),
    pytest.param({"credentials": [{"format": "dc+sd-jwt"}]}, id="no-id"),
    pytest.param({"credentials": [{"id": "a", "format": "dc+sd-jwt", "claims": [{"path": []}]}]}, id="empty-path"),
    pytest.param({"credentials": [{"id": "a", "format": "dc+sd-jwt", "claims": [{"path": [-1]}]}]}, id="negative-index"),
    pytest.param({"credentials": [{"id": "a", "format": "dc+sd-jwt", "claims": [{"path": ["x"], "values": []}]}]}, id="empty-values"),
    pytest.param({"credentials": [{"id": "a", "format": "dc+sd-jwt", "claims": [{"path": ["x"], "id": "x"}],
                                   "claim_sets": [["y"]]}]}, id="claim-set-unknown-id"),
    pytest.param({"credentials": [{"id": "a", "format": "f"}, {"id": "a", "format": "f"}]}, id="duplicate-ids"),
])
def test_invalid_queries_are_refused(query):
    with pytest.raises(VCGateError) as exc:
        parse_dcql(query)
    assert exc.value.code == "malformed"


def test_path_semantics():
    assert claim_values(CLAIMS, ["roles", None]) == ["admin", "ops"]
    assert claim_values(CLAIMS, ["roles", 1]) == ["ops"]
    assert claim_values(CLAIMS, ["address", "country"]) == ["DE"]
    assert claim_values(CLAIMS, ["address", "zip"]) == []
    assert claim_values(CLAIMS, ["org", None]) == []


def test_select_checks_vct_values_and_claim_sets():
    creds = [("a", ("Other",), CLAIMS), ("b", (VCT,), CLAIMS)]
    q = parse_dcql(dcql_query(vct_values=[VCT], claims=[{"path": ["org"], "values": ["acme"]}]))
    assert select(q, creds) == {"vcgate": ("b", [("org",)])}
    assert select(parse_dcql(dcql_query(vct_values=[VCT], claims=[{"path": ["org"], "values": ["other"]}])), creds) == {}
    sets = {"credentials": [{"id": "c", "format": "dc+sd-jwt", "claims": [
        {"id": "mail", "path": ["phone"]}, {"id": "org", "path": ["org"]}, {"id": "cc", "path": ["cost_centre"]}],
        "claim_sets": [["mail"], ["org", "cc"]]}]}
    assert select(parse_dcql(sets), creds) == {"c": ("a", [("org",), ("cost_centre",)])}


def test_holder_discloses_exactly_what_the_query_asks(clock):
    issuer, holder = make_party(), make_party()
    sd_jwt = issue_sd_jwt_vc(issuer.key, issuer=issuer.did, kid=issuer.kid, vct=VCT, claims=CLAIMS,
                             valid_from=NOW - 60, holder_key=holder.key.public_key,
                             disclosable=["org", "cost_centre", "email", "roles[]", "address", "address.country", "address.city"])
    assert holder_view(sd_jwt) == ((VCT,), CLAIMS)
    agent = Holder(holder.key, credentials=[sd_jwt], clock=clock, disclose=[["org"]])
    verifier = Verifier(clock=clock)
    for query, expected in [
        (dcql_query(vct_values=[VCT], claims=[["cost_centre"]]), {"cost_centre": "cc-7", "roles": []}),
        (dcql_query(vct_values=[VCT], claims=[["address", "country"], ["roles", None]]),
         {"address": {"country": "DE"}, "roles": ["admin", "ops"]}),
        (None, {"org": "acme", "roles": []}),  # no query: the holder's default
    ]:
        pres = verifier.verify_presentation(agent.present(audience="https://gw", nonce="n", dcql=query),
                                            audience="https://gw", nonce="n")
        assert dict(pres.credentials[0].claims) == expected


def test_query_for_a_policy_rule_and_its_challenge_parameter():
    import json

    from vcgate.credentials.dcql import challenge_param, dcql_for_rule
    from vcgate.keys import b64url_decode
    from vcgate.policy import Policy

    policy = Policy.from_yaml(
        "version: 1\naudience: https://gw\ntrusted_issuers: [{did: 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'}]\n"
        "rules:\n"
        "  - {name: chat, match: {methods: [POST], paths: [/v1/chat]}, require: {types: [ModelAccessCredential], claims: {org: {equals: acme}, 'address.country': {one_of: [DE, FR]}}}}\n"
        "  - {name: open, match: {methods: [GET], paths: [/v1/models]}, require: {}}\n"
    )
    chat, open_ = policy.rules
    query = dcql_for_rule(chat)
    assert query == dcql_query(vct_values=["ModelAccessCredential"], claims=[["org"], ["address", "country"]])
    assert json.loads(b64url_decode(challenge_param(query))) == query
    assert dcql_for_rule(open_) is None

