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



# --- credential_sets (OpenID4VP 1.0 section 6.2, "Selecting Credentials") -----------------------

# 1.0/examples/query_lang/credentials_alternatives.json of the specification, verbatim: "the
# Wallet is requested to deliver the pid Credential, or the other_pid Credential, or both
# pid_reduced_cred_1 and pid_reduced_cred_2. Additionally, the nice_to_have Credential may
# optionally be delivered."
CREDENTIALS_ALTERNATIVES = {
    "credentials": [
        {"id": "pid", "format": "dc+sd-jwt",
         "meta": {"vct_values": ["https://credentials.example.com/identity_credential"]},
         "claims": [{"path": ["given_name"]}, {"path": ["family_name"]}, {"path": ["address", "street_address"]}]},
        {"id": "other_pid", "format": "dc+sd-jwt", "meta": {"vct_values": ["https://othercredentials.example/pid"]},
         "claims": [{"path": ["given_name"]}, {"path": ["family_name"]}, {"path": ["address", "street_address"]}]},
        {"id": "pid_reduced_cred_1", "format": "dc+sd-jwt",
         "meta": {"vct_values": ["https://credentials.example.com/reduced_identity_credential"]},
         "claims": [{"path": ["family_name"]}, {"path": ["given_name"]}]},
        {"id": "pid_reduced_cred_2", "format": "dc+sd-jwt",
         "meta": {"vct_values": ["https://cred.example/residence_credential"]},
         "claims": [{"path": ["postal_code"]}, {"path": ["locality"]}, {"path": ["region"]}]},
        {"id": "nice_to_have", "format": "dc+sd-jwt", "meta": {"vct_values": ["https://company.example/company_rewards"]},
         "claims": [{"path": ["rewards_number"]}]},
    ],
    "credential_sets": [
        {"options": [["pid"], ["other_pid"], ["pid_reduced_cred_1", "pid_reduced_cred_2"]]},
        {"required": False, "options": [["nice_to_have"]]},
    ],
}
# 1.0/examples/query_lang/claims_alternatives.json, verbatim.
CLAIMS_ALTERNATIVES = {
    "credentials": [{
        "id": "pid", "format": "dc+sd-jwt",
        "meta": {"vct_values": ["https://credentials.example.com/identity_credential"]},
        "claims": [{"id": "a", "path": ["family_name"]}, {"id": "b", "path": ["postal_code"]},
                   {"id": "c", "path": ["locality"]}, {"id": "d", "path": ["region"]},
                   {"id": "e", "path": ["date_of_birth"]}],
        "claim_sets": [["a", "c", "d", "e"], ["a", "b", "e"]],
    }]
}
NAME = {"given_name": "Erika", "family_name": "Mustermann"}
WALLET = {
    "pid": ("https://credentials.example.com/identity_credential", {**NAME, "address": {"street_address": "Heidestr. 17"}}),
    "other_pid": ("https://othercredentials.example/pid", {**NAME, "address": {"street_address": "Heidestr. 17"}}),
    "reduced_1": ("https://credentials.example.com/reduced_identity_credential", NAME),
    "reduced_2": ("https://cred.example/residence_credential", {"postal_code": "51147", "locality": "Köln", "region": "NRW"}),
    "rewards": ("https://company.example/company_rewards", {"rewards_number": "r-1"}),
    "pid_no_address": ("https://credentials.example.com/identity_credential", NAME),
}


@pytest.mark.parametrize(
    "held, expected",
    [
        pytest.param(["pid"], {"pid": "pid"}, id="first-option"),
        pytest.param(["other_pid"], {"other_pid": "other_pid"}, id="second-option"),
        pytest.param(["reduced_1", "reduced_2"], {"pid_reduced_cred_1": "reduced_1", "pid_reduced_cred_2": "reduced_2"},
                     id="two-credentials-together"),
        pytest.param(["reduced_2", "other_pid", "pid"], {"pid": "pid"}, id="the-verifiers-preferred-option-wins"),
        pytest.param(["reduced_1"], {}, id="half-an-option-returns-nothing"),
        pytest.param(["pid_no_address", "reduced_1"], {}, id="a-credential-lacking-a-claim-does-not-count"),
        pytest.param(["pid", "rewards"], {"pid": "pid", "nice_to_have": "rewards"}, id="optional-set-included"),
        pytest.param(["rewards"], {}, id="optional-alone-returns-nothing"),
        pytest.param([], {}, id="empty-wallet"),
    ],
)
def test_credential_sets_of_the_specification_example(held, expected):
    chosen = select(parse_dcql(CREDENTIALS_ALTERNATIVES), [(h, (WALLET[h][0],), WALLET[h][1]) for h in held])
    assert {qid: handle for qid, (handle, _) in chosen.items()} == expected
    if "pid_reduced_cred_2" in chosen:  # exactly the claims each query asks for
        assert chosen["pid_reduced_cred_2"][1] == [("postal_code",), ("locality",), ("region",)]


@pytest.mark.parametrize(
    "claims, expected",
    [
        pytest.param({"family_name": "M", "postal_code": "1", "locality": "K", "region": "N", "date_of_birth": "x"},
                     [("family_name",), ("locality",), ("region",), ("date_of_birth",)], id="first-set-preferred"),
        pytest.param({"family_name": "M", "postal_code": "1", "date_of_birth": "x"},
                     [("family_name",), ("postal_code",), ("date_of_birth",)], id="second-set"),
        pytest.param({"family_name": "M", "postal_code": "1"}, None, id="no-set-satisfied"),
    ],
)
def test_claim_sets_of_the_specification_example(claims, expected):
    chosen = select(parse_dcql(CLAIMS_ALTERNATIVES), [("c", ("https://credentials.example.com/identity_credential",), claims)])
    assert (chosen["pid"][1] if chosen else None) == expected


def test_without_credential_sets_every_credential_is_required():
    # 1.0/examples/query_lang/multi_credentials.json: "all of them must be returned"; vcgate's
    # holder has no mdoc, so it returns nothing rather than the pid alone.
    multi = {"credentials": [CREDENTIALS_ALTERNATIVES["credentials"][0],
                             {"id": "mdl", "format": "mso_mdoc", "meta": {"doctype_value": "org.iso.7367.1.mVRC"},
                              "claims": [{"path": ["org.iso.7367.1", "vehicle_holder"]}]}]}
    assert select(parse_dcql(multi), [("pid", (WALLET["pid"][0],), WALLET["pid"][1])]) == {}


@pytest.mark.parametrize("sets", [
    pytest.param([], id="empty"),
    pytest.param([{"options": []}], id="no-options"),
    pytest.param([{"options": [[]]}], id="empty-option"),
    pytest.param([{"options": [["nope"]]}], id="unknown-id"),
    pytest.param([{"options": [["pid"]], "required": "yes"}], id="required-not-boolean"),
    pytest.param([["pid"]], id="not-an-object"),
])
def test_invalid_credential_sets_are_refused(sets):
    with pytest.raises(VCGateError) as exc:
        parse_dcql({**CREDENTIALS_ALTERNATIVES, "credential_sets": sets})
    assert exc.value.code == "malformed"


def test_holder_presents_the_option_it_holds(clock):
    issuer, agent = make_party(), make_party()
    cred = issue_sd_jwt_vc(issuer.key, issuer=issuer.did, kid=issuer.kid, vct=WALLET["other_pid"][0],
                           claims={**WALLET["other_pid"][1], "email": "e@x"}, valid_from=NOW - 60, holder_kid=agent.kid)
    pres = Verifier(clock=clock).verify_presentation(
        Holder(agent.key, credentials=[cred], clock=clock).present(audience="https://gw", nonce="n",
                                                                   dcql=CREDENTIALS_ALTERNATIVES),
        audience="https://gw", nonce="n")
    assert dict(pres.credentials[0].claims) == {**NAME, "address": {"street_address": "Heidestr. 17"}}  # no e-mail


def test_a_rule_that_accepts_delegation_offers_a_chain_as_an_alternative():
    from vcgate.credentials.dcql import dcql_for_rule
    from vcgate.policy import Policy

    issuer = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    policy = Policy.from_yaml(
        f"version: 1\naudience: https://gw\ntrusted_issuers: [{{did: '{issuer}'}}]\ndelegation: {{max_depth: 1}}\n"
        "rules:\n"
        "  - {name: chat, match: {paths: [/v1/chat]}, require: {types: [ModelAccessCredential], claims: {org: {equals: acme}}}}\n"
        "  - {name: own, match: {paths: [/v1/own]}, require: {types: [ModelAccessCredential], delegation: {allowed: false}}}\n"
    )
    chat, own = policy.rules
    doc = policy.document
    query = dcql_for_rule(chat, delegation=doc.delegation)
    assert query["credentials"][1] == {"id": "vcgate_delegation", "format": "jwt_vc_json",
                                       "meta": {"type_values": [["DelegationCredential"]]}}
    assert query["credential_sets"] == [{"options": [["vcgate"], ["vcgate", "vcgate_delegation"]]}]
    assert "credential_sets" not in dcql_for_rule(own, delegation=doc.delegation)
    # A holder of the credential itself answers with the first option.
    chosen = select(parse_dcql(query), [("mine", ("ModelAccessCredential",), {"org": "acme", "email": "e"})])
    assert chosen == {"vcgate": ("mine", [("org",)])}
