"""Delegation chains through the policy engine, the way the gateway feeds it.

Each case signs a real presentation (the leaf's key unless the case says otherwise), verifies
it as the gate does (``holder_binding=False``: binding is the policy's), checks the status of
every presented credential with a real StatusChecker over signed Bitstring lists, and asks the
policy. A refusal raised by verification and one decided by the engine both end in a code.
"""

from __future__ import annotations

from collections.abc import Callable
import pytest

from tests.chains import TABLE, World
from tests.support import NOW, Party
from vcgate.credentials import create_presentation
from vcgate.errors import PolicyError, VCGateError
from vcgate.policy import Policy, PolicyDecision, RequestFacts, StatusOutcome

AUD = "https://gw.example"
CHAT = RequestFacts("POST", "/v1/chat/completions", model="llama-3", body_available=True)


def policy_text(org: str, delegation: str = "delegation: {max_depth: 2, types: [ModelAccessCredential]}", chat_require: str = "") -> str:
    return f"""
version: 1
audience: {AUD}
trusted_issuers:
  - did: {org}
{delegation}
rules:
  - name: people-only
    match: {{paths: [/v1/fine_tuning/**]}}
    require:
      types: [ModelAccessCredential]
      delegation: {{allowed: false}}
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
        limits.rpm: {{max: 1000}}
{chat_require}
    grants:
      headers:
        X-Vcgate-Principal: $principal
        X-Vcgate-Actors: $actors
        X-Vcgate-Chain: $chain
        X-Vcgate-Subject: $subject
        X-Vcgate-Holder: $holder
        X-Vcgate-Rpm: $claims.limits.rpm
"""


def decide(
    w: World,
    tokens: list[str],
    *,
    signer: Party | None = None,
    policy: Policy | None = None,
    request: RequestFacts = CHAT,
    now: float = NOW,
    verify_at: float | None = None,
) -> PolicyDecision | VCGateError:
    """The gate's steps for a direct-mode call, with real parts."""
    signer = signer or _leaf_party(w, tokens)
    vp = create_presentation(signer.key, holder=signer.did, kid=signer.kid, credentials=tokens,
                             audience=AUD, nonce="n", issued_at=verify_at or now)
    verifier = w.verifier(verify_at if verify_at is not None else now)
    try:
        pres = verifier.verify_presentation(vp, audience=AUD, nonce="n", holder_binding=False)
    except VCGateError as exc:
        return exc
    status = w.status(verifier)
    results: dict[str, StatusOutcome] = {}
    for cred in pres.credentials:
        if cred.status:
            try:
                status.check(cred)
                results[cred.token] = StatusOutcome.OK
            except Exception as exc:  # noqa: BLE001 -- as the gate maps every status failure
                results[cred.token] = StatusOutcome.from_error(exc)
    policy = policy or Policy.from_yaml(policy_text(w.org.did))
    return policy.decide(request, pres.credentials, now=now, holder=pres.holder, status_results=results)


def _leaf_party(w: World, tokens: list[str]) -> Party:
    from vcgate.credentials.delegation import _unverified

    subject = _unverified(tokens[-1]).subject
    return next(p for p in (w.user, w.agent, w.sub, w.subsub) if p.did == subject)


def code_of(outcome: PolicyDecision | VCGateError) -> str | None:
    return outcome.code


@pytest.fixture
def w() -> World:
    return World()


@pytest.mark.parametrize("depth", [1, 2])
def test_valid_chain_allowed_with_who_acts_for_whom(w: World, depth: int) -> None:
    decision = decide(w, w.chain(depth))
    assert isinstance(decision, PolicyDecision) and decision.allow, decision
    actors = [w.agent.did, w.sub.did][:depth]
    headers = decision.grants.headers
    assert headers["X-Vcgate-Principal"] == w.user.did
    assert headers["X-Vcgate-Subject"] == w.user.did  # RFC 8693: sub is the principal
    assert headers["X-Vcgate-Holder"] == actors[-1]
    assert headers["X-Vcgate-Actors"] == '["' + '","'.join(actors) + '"]'
    assert headers["X-Vcgate-Chain"] == '["' + '","'.join([w.user.did, *actors]) + '"]'
    assert headers["X-Vcgate-Rpm"] == ("50" if depth == 2 else "100")  # effective, narrowed
    assert decision.chain is not None and decision.chain.actors == tuple(actors)
    assert decision.to_dict()["actors"] == actors


def test_direct_credential_has_an_empty_actor_list(w: World) -> None:
    decision = decide(w, [w.root()], signer=w.user)
    assert isinstance(decision, PolicyDecision) and decision.allow
    assert decision.grants.headers["X-Vcgate-Actors"] == "[]"
    assert decision.grants.headers["X-Vcgate-Chain"] == f'["{w.user.did}"]'
    assert decision.chain is None


def test_requirements_see_the_narrowed_claims(w: World) -> None:
    mistral = RequestFacts("POST", "/v1/chat/completions", model="mistral-7b", body_available=True)
    assert decide(w, [w.root()], signer=w.user, request=mistral).allow  # the user may
    tokens = w.chain(1)  # the agent got llama-3 and gpt-4o only
    decision = decide(w, tokens, request=mistral)
    assert code_of(decision) == "claim_mismatch"
    assert "mistral-7b" in decision.message


def test_delegator_credential_never_counts_alone(w: World) -> None:
    """With holder binding off, the agent still cannot use the user's root at full width."""
    text = policy_text(w.org.did).replace("limits.rpm: {max: 1000}", "limits.rpm: {max: 1000}\n      holder_binding: false")
    policy = Policy.from_yaml(text)
    mistral = RequestFacts("POST", "/v1/chat/completions", model="mistral-7b", body_available=True)
    assert code_of(decide(w, w.chain(1), policy=policy, request=mistral)) == "claim_mismatch"


@pytest.mark.parametrize(("build", "code", "hop"), TABLE)
def test_chain_table_through_the_policy(w: World, build: Callable[[World], list[str]], code: str, hop: int) -> None:
    tokens = build(w)
    signer = _leaf_party(w, tokens)
    outcome = decide(w, tokens, signer=signer)
    assert code_of(outcome) == code, outcome
    assert f"hop {hop}" in outcome.message


def test_depth_over_policy_limit(w: World) -> None:
    outcome = decide(w, w.chain(3))
    assert code_of(outcome) == "delegation_depth_exceeded"
    assert "hop 3" in outcome.message
    narrow = Policy.from_yaml(policy_text(w.org.did, chat_require="      delegation: {max_depth: 1}"))
    assert code_of(decide(w, w.chain(2), policy=narrow)) == "delegation_depth_exceeded"
    assert decide(w, w.chain(1), policy=narrow).allow


@pytest.mark.parametrize(
    ("delegation", "path", "code"),
    [
        pytest.param("", "/v1/chat/completions", "delegation_not_allowed", id="policy-without-delegation"),
        pytest.param("delegation: {allowed: false}", "/v1/chat/completions", "delegation_not_allowed", id="turned-off"),
        pytest.param("delegation: {types: [ResearchCredential]}", "/v1/chat/completions", "delegation_not_allowed", id="root-type-not-delegable"),
        pytest.param("delegation: {max_depth: 2}", "/v1/fine_tuning/jobs", "delegation_not_allowed", id="rule-people-only"),
    ],
)
def test_delegation_not_allowed(w: World, delegation: str, path: str, code: str) -> None:
    policy = Policy.from_yaml(policy_text(w.org.did, delegation=delegation))
    request = RequestFacts("POST", path, model="llama-3", body_available=True)
    assert code_of(decide(w, w.chain(1), policy=policy, request=request)) == code
    assert decide(w, [w.root()], signer=w.user, policy=policy, request=request).allow  # the user still may


def test_expired_middle_link_direct_and_in_a_session(w: World) -> None:
    tokens = w.delegate([w.root()], w.user, w.agent, valid_for=600)
    tokens = w.delegate(tokens, w.agent, w.sub, valid_for=500)
    assert decide(w, tokens).allow
    outcome = decide(w, tokens, now=NOW + 1000)  # a fresh presentation: the verifier refuses
    assert code_of(outcome) == "delegation_expired" and "hop 1" in outcome.message
    # A session verified the chain earlier; the engine re-checks every hop at each call.
    outcome = decide(w, tokens, verify_at=NOW, now=NOW + 1000)
    assert code_of(outcome) == "delegation_expired" and "hop 1" in outcome.message


@pytest.mark.parametrize("hop", [0, 1, 2], ids=["revoked-root", "revoked-middle", "revoked-leaf"])
def test_revoked_link_anywhere(w: World, hop: int) -> None:
    tokens = [w.root(status=True)]
    tokens = w.delegate(tokens, w.user, w.agent, status=True)
    tokens = w.delegate(tokens, w.agent, w.sub, status=True)
    assert decide(w, tokens).allow
    w.lists.revoke(dict(w.verifier().verify_credential(tokens[hop]).status[0]))
    outcome = decide(w, tokens)
    assert code_of(outcome) == "delegation_revoked"
    assert f"hop {hop}" in outcome.message
    assert outcome.status == 401


def test_fail_open_status_notes_the_hop(w: World) -> None:
    tokens = [w.root()]
    tokens = w.delegate(tokens, w.user, w.agent, status=True)
    w.lists.published.clear()  # the user's list host is down
    text = policy_text(w.org.did).replace("limits.rpm: {max: 1000}", "limits.rpm: {max: 1000}\n      status: fail-open")
    decision = decide(w, tokens, policy=Policy.from_yaml(text))
    assert decision.allow
    assert [r.code for r in decision.reasons] == ["status_unavailable"] and "hop 1" in decision.reasons[0].message
    assert code_of(decide(w, tokens)) == "status_unavailable"  # required: refused, 503


def test_wrong_leaf_signer(w: World) -> None:
    outcome = decide(w, w.chain(2), signer=w.agent)
    assert code_of(outcome) == "delegation_holder_mismatch"


@pytest.mark.parametrize(
    ("snippet", "field"),
    [
        pytest.param("delegation: {max_depth: 0}", "delegation.max_depth", id="depth-zero"),
        pytest.param("delegation: {max_depth: 9}", "delegation.max_depth", id="depth-too-large"),
        pytest.param("delegation: {max_depth: two}", "delegation.max_depth", id="depth-not-int"),
        pytest.param("delegation: {allowed: yes}", "delegation.allowed", id="allowed-not-bool"),
        pytest.param("delegation: {depth: 2}", "delegation.depth", id="unknown-key"),
        pytest.param("delegation: [ModelAccessCredential]", "delegation", id="not-a-mapping"),
    ],
)
def test_delegation_settings_are_validated(snippet: str, field: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(policy_text("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", delegation=snippet))
    assert any(p.field == field for p in info.value.problems), info.value.problems


def test_settings_loaded() -> None:
    policy = Policy.from_yaml(policy_text("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"))
    settings = policy.document.delegation
    assert (settings.allowed, settings.max_depth, settings.types) == (True, 2, frozenset({"ModelAccessCredential"}))
    assert policy.rules[0].require.delegation is not None and policy.rules[0].require.delegation.allowed is False
    off = Policy.from_yaml(policy_text("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", delegation=""))
    assert off.document.delegation.allowed is False


def test_a_session_rechecks_every_hop_on_every_call(w: World) -> None:
    """The chain's assembly is memoised per policy; validity and status are not."""
    tokens = [w.root()]
    tokens = w.delegate(tokens, w.user, w.agent, valid_for=600, status=True)
    tokens = w.delegate(tokens, w.agent, w.sub, valid_for=500)
    verifier = w.verifier()
    creds = [verifier.verify_credential(t) for t in tokens]
    policy = Policy.from_yaml(policy_text(w.org.did))

    def call(now: float, outcome: str) -> PolicyDecision:
        return policy.decide(CHAT, creds, now=now, holder=w.sub.did, status_results={tokens[1]: outcome})

    assert call(NOW, "ok").allow
    assert call(NOW, "ok").allow
    assert call(NOW, "revoked").code == "delegation_revoked"
    assert call(NOW + 1000, "ok").code == "delegation_expired"
    assert call(NOW, "ok").allow
