"""Delegation chains end to end through the ASGI middleware, in direct and session mode.

A user holds a credential from the organisation; ``Holder.delegate`` hands a narrower slice to
an agent, which delegates to a sub-agent; the sub-agent's ``Holder`` presents the whole chain
(httpx auth, direct mode) to a real ``Gate`` behind ``VCGateMiddleware``, whose status checker
reads each delegator's signed Bitstring status list.
"""

from __future__ import annotations

import textwrap

import pytest
from starlette.testclient import TestClient

from tests.chains import World
from tests.middleware.apps import starlette_app
from tests.support import NOW, make_party
from vcgate.client import Holder
from vcgate.errors import VCGateError
from vcgate.gate import Gate
from vcgate.policy import Policy

AUD = "http://testserver"


def policy(org: str, max_depth: int = 2) -> Policy:
    return Policy.from_yaml(textwrap.dedent(f"""\
        version: 1
        audience: {AUD}
        trusted_issuers:
          - did: {org}
        delegation:
          max_depth: {max_depth}
          types: [ModelAccessCredential]
        rules:
          - name: chat
            match: {{methods: [POST], paths: [/v1/chat/completions]}}
            require:
              types: [ModelAccessCredential]
              claims:
                models: {{contains: $model}}
            grants:
              headers:
                X-Vcgate-Principal: $principal
                X-Vcgate-Actors: $actors
                X-Vcgate-Rpm: $claims.limits.rpm
        """))


@pytest.fixture
def w() -> World:
    return World()


def gate_for(w: World, **kw: object) -> Gate:
    verifier = w.verifier()
    return Gate(policy=policy(w.org.did, **kw), verifier=verifier, status=w.status(verifier),  # type: ignore[arg-type]
                clock=lambda: NOW, gateway_key=make_party().key)


def holders(w: World) -> tuple[Holder, Holder, Holder]:
    clock = lambda: NOW  # noqa: E731
    user = Holder(w.user.key, credentials=[w.root(status=True)], clock=clock)
    entry = w.lists.entry(w.user)
    agent = Holder(w.agent.key, clock=clock, credentials=user.delegate(
        subject=w.agent.did, claims={"models": ["llama-3", "gpt-4o"]}, status=entry))
    sub = Holder(w.sub.key, clock=clock, credentials=agent.delegate(
        subject=w.sub.did, claims={"limits": {"rpm": 10}}, valid_for=900, status=w.lists.entry(w.agent)))
    return user, agent, sub


def chat(gate: Gate, holder: Holder, model: str) -> dict[str, object]:
    with TestClient(starlette_app(gate), base_url=AUD) as c:
        r = c.post("/v1/chat/completions", json={"model": model}, auth=holder.httpx2_auth(mode="direct"))
    return {"status": r.status_code, **r.json()}


def test_sub_agent_presents_the_whole_chain(w: World) -> None:
    _, agent, sub = holders(w)
    assert len(sub.credentials) == 3  # root, the agent's delegation, its own
    out = chat(gate_for(w), sub, "llama-3")
    assert out["status"] == 200, out
    assert out["headers"] == {
        "x-vcgate-principal": w.user.did,
        "x-vcgate-actors": f'["{w.agent.did}","{w.sub.did}"]',
        "x-vcgate-rpm": "10",
    }
    assert out["subject"] == w.user.did  # the decision's subject: on whose behalf
    assert chat(gate_for(w), agent, "gpt-4o")["status"] == 200


def test_refusals_through_the_middleware(w: World) -> None:
    user, agent, sub = holders(w)
    gate = gate_for(w)
    out = chat(gate, sub, "mistral-7b")  # the user has it, the agent did not pass it on
    assert (out["status"], out["error"]) == (403, "claim_mismatch")
    assert (chat(gate_for(w, max_depth=1), sub, "llama-3")["error"]) == "delegation_depth_exceeded"
    # Revoking the agent's delegation refuses the sub-agent on its next call.
    w.lists.revoke(dict(w.verifier().verify_credential(agent.credentials[1]).status[0]))
    out = chat(gate_for(w), sub, "llama-3")
    assert (out["status"], out["error"]) == (401, "delegation_revoked")
    assert "hop 1" in str(out["message"])
    assert chat(gate_for(w), user, "mistral-7b")["status"] == 200  # the user is untouched


def test_holder_delegate_refuses_to_widen(w: World) -> None:
    _, agent, _ = holders(w)
    with pytest.raises(VCGateError) as info:
        agent.delegate(subject=w.sub.did, claims={"models": ["mistral-7b"]})
    assert info.value.code == "delegation_list_widened"
    two = Holder(w.agent.key, credentials=[*agent.credentials, w.root()])
    with pytest.raises(ValueError):
        two.delegate(subject=w.sub.did)


def test_session_mode_keeps_the_chain(w: World) -> None:
    """The token endpoint admits a chain with the policy engine and the session keeps its
    links: each call is decided on the narrowed claims (and every link's status, as in direct
    mode)."""
    _, _, sub = holders(w)
    gate = gate_for(w)
    with TestClient(starlette_app(gate), base_url=AUD) as c:
        auth = sub.httpx2_auth(mode="session")
        r = c.post("/v1/chat/completions", json={"model": "llama-3"}, auth=auth)
        assert r.status_code == 200, r.text
        assert r.json()["headers"]["x-vcgate-principal"] == w.user.did
        assert r.json()["headers"]["x-vcgate-actors"] == f'["{w.agent.did}","{w.sub.did}"]'
        r = c.post("/v1/chat/completions", json={"model": "mistral-7b"}, auth=auth)  # not passed on
        assert (r.status_code, r.json().get("error")) == (403, "claim_mismatch"), r.text


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_a_delegated_session_names_who_acts_for_whom_and_is_audited(w: World, tmp_path) -> None:
    """The access token is about the principal with an RFC 8693 nested `act`; the audit log
    records the principal, the actors and every hop; revoking the agent's delegation refuses
    the next call of the open session."""
    import json

    from vcgate.audit import AuditLog, read_records
    from vcgate.keys import b64url_decode
    from vcgate.status import StatusChecker
    from vcgate.status.bitstring import BitstringStatusMethod

    _, agent, sub = holders(w)
    verifier = w.verifier()
    status_clock = Clock()  # the status lists' cache: advanced past its TTL after the revocation
    status = StatusChecker([BitstringStatusMethod(verifier=verifier, fetch=w.lists, clock=status_clock)])
    log = AuditLog(tmp_path / "audit.jsonl", fsync=False)
    gate = Gate(policy=policy(w.org.did), verifier=verifier, status=status, clock=lambda: NOW,
                gateway_key=make_party().key, audit=log)
    with TestClient(starlette_app(gate), base_url=AUD) as c:
        auth = sub.httpx2_auth(mode="session")
        r = c.post("/v1/chat/completions", json={"model": "llama-3"}, auth=auth)
        assert r.status_code == 200, r.text
        scheme, _, token = r.request.headers["authorization"].partition(" ")
        assert scheme == "DPoP"
        claims = json.loads(b64url_decode(token.split(".")[1]))
        assert claims["sub"] == w.user.did and claims["client_id"] == w.sub.did
        assert claims["act"] == {"sub": w.sub.did, "act": {"sub": w.agent.did}}

        w.lists.revoke(dict(verifier.verify_credential(agent.credentials[1]).status[0]))
        status_clock.now += 3600
        r = c.post("/v1/chat/completions", json={"model": "llama-3"}, auth=auth)
        assert (r.status_code, r.json()["error"]) == (401, "delegation_revoked"), r.text
        # Refused on the open session; the client presented again and the token endpoint refused too.
        first = r.history[0]
        assert first.request.headers["authorization"].startswith("DPoP ")
        assert (first.status_code, first.json()["error"]) == (401, "delegation_revoked")
        assert r.request.url.path == "/.well-known/vcgate/token"
    log.close()
    records = [r for r in read_records(tmp_path / "audit.jsonl") if r.get("kind") == "decision"]
    hops = [verifier.verify_credential(t).id for t in sub.credentials]
    delegated = [r for r in records if "actors" in r]
    assert [(r.get("mode"), r.get("code")) for r in delegated] == [
        ("token", None), ("session", None), (None, "delegation_revoked"), (None, "delegation_revoked")]
    for rec in delegated:
        assert rec["principal"] == w.user.did
        assert rec["actors"] == [w.agent.did, w.sub.did]
        assert rec["hops"] == hops
