"""Delegation chains rooted in an SD-JWT VC, and budgets for SD-JWT subjects, through the gate.

The organisation issues the user an SD-JWT VC (``cnf.kid``: the user's DID key); the user
delegates with ``Holder.delegate`` (a VC-JOSE link bound to the root's issuer-signed JWT); the
agent presents root and link in one VP JWT, the root with only the Disclosures the gate's query
and the link need. Narrowing runs on the disclosed claims only: what the root withholds is never
inherited, and a claim a check needs but the root does not disclose is ``claim_not_disclosed``.
"""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from tests.chains import ROOT_CLAIMS, World
from tests.middleware.apps import starlette_app
from tests.support import NOW, make_party
from vcgate.client import Holder
from vcgate.credentials import create_presentation
from vcgate.credentials.delegation import issue_delegation
from vcgate.credentials.sdjwt import holder_view, issue_sd_jwt_vc, parse_sd_jwt, present_sd_jwt
from vcgate.errors import VCGateError
from vcgate.gate import Gate
from vcgate.keys import b64url_decode
from vcgate.policy import Policy

AUD = "http://testserver"
CLAIMS = {**ROOT_CLAIMS, "email": "ada@acme.example"}


def policy(org: str, extra: str = "", limits: str = "") -> Policy:
    """``extra``: more claim constraints of the chat rule (one per line); ``limits``: top-level limits."""
    constraints = "".join(f"        {line}\n" for line in extra.splitlines())
    return Policy.from_yaml(
        f"version: 1\naudience: {AUD}\ntrusted_issuers:\n  - did: {org}\ndelegation:\n  max_depth: 2\n"
        "rules:\n  - name: chat\n    match: {methods: [POST], paths: [/v1/chat/completions]}\n"
        "    require:\n      types: [ModelAccessCredential]\n      claims:\n        models: {contains: $model}\n"
        f"{constraints}    grants:\n      headers:\n        X-Vcgate-Principal: $principal\n"
        f"        X-Vcgate-Actors: $actors\n{limits}"
    )


def gate_for(w: World, **kw: str) -> Gate:
    verifier = w.verifier()
    return Gate(policy=policy(w.org.did, **kw), verifier=verifier, status=w.status(verifier),  # type: ignore[arg-type]
                clock=lambda: NOW, gateway_key=make_party().key)


def sd_root(w: World, *, claims: dict = CLAIMS, status: bool = False, **kw) -> str:
    args = {"holder_kid": w.user.kid, **kw}
    return issue_sd_jwt_vc(w.org.key, issuer=w.org.did, kid=w.org.kid, vct="ModelAccessCredential", claims=claims,
                           valid_from=NOW - 3600, valid_until=NOW + 86400,
                           status={"bitstring_status_list": w.lists.entry(w.org)} if status else None, **args)


def agent_of(w: World, root: str, claims: dict | None = None) -> Holder:
    user = Holder(w.user.key, credentials=[root], clock=lambda: NOW)
    return Holder(w.agent.key, clock=lambda: NOW, credentials=user.delegate(subject=w.agent.did, claims=claims))


def chat(gate: Gate, holder: Holder, model: str = "llama-3", *, mode: str = "direct") -> tuple[dict, list[str]]:
    sent: list[str] = []
    with TestClient(starlette_app(gate), base_url=AUD) as c:
        c.event_hooks = {"request": [lambda r: sent.append(r.headers.get("authorization", ""))], "response": []}
        r = c.post("/v1/chat/completions", json={"model": model}, auth=holder.httpx2_auth(mode=mode))
    return {"status": r.status_code, **r.json()}, sent


def root_disclosed(authorization: str) -> dict:
    """The claims the SD-JWT root inside a ``VP <vp+jwt>`` header discloses."""
    vp = json.loads(b64url_decode(authorization.removeprefix("VP ").split(".")[1]))
    root = next(e["id"].split(",", 1)[1] for e in vp["verifiableCredential"] if "~" in e["id"])
    assert vp["verifiableCredential"][0]["id"].startswith("data:application/dc+sd-jwt,")
    return holder_view(parse_sd_jwt(root).presented)[1]


@pytest.fixture
def w() -> World:
    return World()


@pytest.mark.parametrize("mode", ["direct", "session"])
def test_sd_jwt_root_delegated_discloses_only_what_is_needed(w: World, mode: str) -> None:
    agent = agent_of(w, sd_root(w, status=True), {"models": ["llama-3"]})
    out, sent = chat(gate_for(w), agent, mode=mode)
    assert out["status"] == 200, out
    assert out["headers"] == {"x-vcgate-principal": w.user.did, "x-vcgate-actors": f'["{w.agent.did}"]'}
    vp_headers = [h for h in sent if h.startswith("VP ")]
    if mode == "session":  # the chain went to the token endpoint, in the form body
        assert not vp_headers
    else:
        # models: what the query and the link need; tier, limits, scopes and email stay with the agent.
        assert root_disclosed(vp_headers[-1]) == {"models": CLAIMS["models"]}
    out, _ = chat(gate_for(w), agent, "gpt-4o", mode=mode)  # the root grants it, the link did not pass it on
    assert (out["status"], out["error"]) == (403, "claim_mismatch"), out


def _direct(gate: Gate, w: World, root: str, link: str, disclose) -> dict:
    """The agent's own presentation of ``root`` (with ``disclose``) and ``link``, direct mode."""
    with TestClient(starlette_app(gate), base_url=AUD) as c:
        nonce = c.post("/v1/chat/completions", json={"model": "llama-3"}).json()["nonce"]
        vp = create_presentation(w.agent.key, holder=w.agent.did, kid=w.agent.kid, audience=AUD, nonce=nonce,
                                 credentials=[present_sd_jwt(root, disclose=disclose, holder_key=None), link],
                                 issued_at=NOW)
        r = c.post("/v1/chat/completions", json={"model": "llama-3"}, headers={"Authorization": f"VP {vp}"})
    return {"status": r.status_code, **r.json()}


def _link(w: World, root: str, claims: dict | None) -> str:
    return issue_delegation(w.user.key, kid=w.user.kid, chain=[root], subject=w.agent.did, claims=claims,
                            valid_from=NOW - 60, valid_until=NOW + 3600)


@pytest.mark.parametrize(
    "disclose, link_claims, extra, code",
    [
        # The link restates models, the root withholds it: the narrowing cannot be proven.
        pytest.param([["tier"]], {"models": ["llama-3"]}, "", "claim_not_disclosed", id="link-restates-withheld-claim"),
        # An undisclosed nested member must not widen: limits.rpm withheld with all of limits.
        pytest.param([["models"]], {"limits": {"rpm": 10}}, "", "claim_not_disclosed", id="nested-claim-withheld"),
        # The rule needs tier; the root withholds it, and the link cannot supply it.
        pytest.param([["models"]], {"models": ["llama-3"]}, "tier: {equals: gold}", "claim_not_disclosed",
                     id="rule-claim-withheld"),
        # All disclosed, and the link really widens: the usual delegation codes.
        # A list element the root lacks may be a withheld array-element Disclosure (or a decoy's
        # hidden neighbour): vcgate cannot tell, so it asks for the Disclosure; either way refused.
        pytest.param(None, {"models": ["llama-3", "o1"]}, "", "claim_not_disclosed", id="list-widened"),
        # A disclosed number is whole: raising it is the usual delegation refusal.
        pytest.param(None, {"limits": {"rpm": 1000}}, "", "delegation_limit_raised", id="limit-raised"),
    ],
)
def test_narrowing_on_disclosed_claims_only(w: World, disclose, link_claims, extra, code) -> None:
    root = sd_root(w)
    # Signed by hand with the user's real key: Holder.delegate refuses to sign a widening link.
    from vcgate.credentials.jws import sign_jws

    payload = json.loads(b64url_decode(_link(w, root, None).split(".")[1]))
    payload["credentialSubject"].update(link_claims)
    link = sign_jws(w.user.key, payload, typ="vc+jwt", kid=w.user.kid)
    out = _direct(gate_for(w, extra=extra), w, root, link, disclose)
    assert (out["status"], out["error"]) == (401 if code.startswith("delegation_") else 403, code), out


def test_link_bound_to_another_sd_jwt_root_is_reparented(w: World) -> None:
    root, other = sd_root(w), sd_root(w, claims={**CLAIMS, "tier": "silver"})
    out = _direct(gate_for(w), w, root, _link(w, other, None), None)
    assert out["error"] == "delegation_reparented", out


def test_a_selectively_disclosable_delegation_property_is_refused(w: World) -> None:
    # vcgate's issuer makes every claim disclosable by default: a maxDepth the holder could
    # withhold must not count (withholding it would lift the limit).
    root = sd_root(w, claims={**CLAIMS, "delegation": {"maxDepth": 0}})
    link = _link(w, present_sd_jwt(root, disclose=[["models"]], holder_key=None), None)
    out = _direct(gate_for(w), w, root, link, None)  # the Disclosure of 'delegation' presented
    assert out["error"] == "delegation_invalid", out


def test_a_root_bound_to_a_bare_key_cannot_be_delegated(w: World) -> None:
    root = sd_root(w, holder_kid=None, holder_key=w.user.key.public_key)
    with pytest.raises(VCGateError) as info:
        Holder(w.user.key, credentials=[root], clock=lambda: NOW).delegate(subject=w.agent.did)
    assert info.value.code == "delegation_issuer_mismatch"


def test_revoking_the_sd_jwt_root_refuses_the_delegate(w: World) -> None:
    root = sd_root(w, status=True)
    agent = agent_of(w, root, {"models": ["llama-3"]})
    assert chat(gate_for(w), agent)[0]["status"] == 200
    entry = w.verifier().verify_credential(root).status[0]
    w.lists.revoke(dict(entry))
    out, _ = chat(gate_for(w), agent)
    assert out["error"] == "delegation_revoked" and "hop 0" in out["message"], out


LIMITS = """\
limits:
  - name: agent-rpm
    key: $subject
    requests: $claims.limits.rpm
    per: 1m
"""


def test_budgets_count_sd_jwt_subjects(w: World) -> None:
    """``$subject`` of an SD-JWT VC is the holder ``cnf`` binds; ``$claims`` its disclosed claims.
    A limit whose number the holder withholds is refused (no default), never unlimited."""
    gate = gate_for(w, limits=LIMITS)
    small = sd_root(w, claims={**CLAIMS, "limits": {"rpm": 2}})
    holder = Holder(w.user.key, credentials=[small], clock=lambda: NOW)
    with TestClient(starlette_app(gate), base_url=AUD) as c:
        auth = holder.httpx2_auth(mode="session")
        rs = [c.post("/v1/chat/completions", json={"model": "llama-3"}, auth=auth) for _ in range(3)]
        assert [r.status_code for r in rs] == [200, 200, 429], [r.text for r in rs]
        # Another SD-JWT VC bound to the same holder counts against the same $subject.
        again = Holder(w.user.key, credentials=[sd_root(w, claims={**CLAIMS, "limits": {"rpm": 2}})], clock=lambda: NOW)
        assert c.post("/v1/chat/completions", json={"model": "llama-3"}, auth=again.httpx2_auth()).status_code == 429
        # The gate's query asks for what the limit reads (limits.rpm), so the holder discloses it;
        # a presentation that withholds it is refused, never unlimited.
        nonce = c.post("/v1/chat/completions", json={"model": "llama-3"}).json()
        assert nonce["dcql_query"]["credentials"][0]["claims"] == [{"path": ["models"]}, {"path": ["limits", "rpm"]}]
        # The policy accepts chains: the credential itself, or it as a root with a link.
        assert nonce["dcql_query"]["credential_sets"] == [{"options": [["vcgate"], ["vcgate", "vcgate_delegation"]]}]
        other = sd_root(w, holder_kid=w.agent.kid)
        vp = present_sd_jwt(other, disclose=[["models"]], holder_key=w.agent.key, audience=AUD, nonce=nonce["nonce"],
                            issued_at=NOW)
        r = c.post("/v1/chat/completions", json={"model": "llama-3"}, headers={"Authorization": f"VP {vp}"})
    assert r.json()["error"] == "limit_unresolved", r.text


def test_an_sd_jwt_vc_is_not_accepted_as_a_link(w: World) -> None:
    # A link must restate what it passes on in the clear: an SD-JWT VC typed as a delegation
    # (vct DelegationCredential, bound under the root) is refused.
    root = sd_root(w)
    from vcgate.credentials.delegation import digest_sri

    link = issue_sd_jwt_vc(w.user.key, issuer=w.user.did, kid=w.user.kid, vct="DelegationCredential",
                           claims={"models": ["llama-3"], "delegation": {"parent": {"digestSRI": digest_sri(root.split("~")[0])}}},
                           valid_from=NOW - 60, valid_until=NOW + 3600, holder_kid=w.agent.kid, disclosable=["models"])
    out = _direct(gate_for(w), w, root, link, None)
    assert out["error"] == "delegation_invalid" and "vc+jwt" in out["message"], out
