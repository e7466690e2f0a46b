"""Delegation chains at the verification level: the chain table, each refusal with its code.

Real keys and did:key identities throughout; revocation goes through real signed Bitstring
status lists (each delegator publishes its own), served by an injected fetcher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.chains import ROOT_CLAIMS, TABLE, World
from tests.support import NOW, make_party
from vcgate.credentials import Verifier, create_presentation, issue_credential
from vcgate.credentials.delegation import check_chain, digest_sri, narrow_claims, verify_chain
from vcgate.errors import VCGateError

@pytest.fixture
def w() -> World:
    return World()


# --- valid chains ---------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_valid_chain_narrows_and_names_everyone(w: World, depth: int) -> None:
    tokens = w.chain(depth)
    chain = verify_chain(tokens[::-1], verifier=w.verifier())  # any order: assembled by digest
    assert chain.depth == depth
    assert chain.principal == w.user.did
    parties = [w.agent.did, w.sub.did, w.subsub.did][:depth]
    assert chain.actors == tuple(parties)
    assert chain.parties == (w.user.did, *parties)
    assert chain.claims["models"] == ["llama-3", "gpt-4o"]  # narrowed at hop 1, inherited below
    assert chain.claims["limits"] == ({"rpm": 50, "tokens": 100_000} if depth >= 2 else ROOT_CLAIMS["limits"])
    assert chain.claims["scopes"] == (["chat"] if depth == 3 else ROOT_CLAIMS["scopes"])
    assert chain.claims["tier"] == "gold"  # never restated: inherited
    act = chain.act
    for actor in reversed(parties):  # RFC 8693: the current actor outermost
        assert act is not None and act["sub"] == actor
        act = act.get("act")
    assert act is None
    assert chain.valid_until == NOW + 3600
    assert [did for did, _ in chain.links] == list(chain.parties)
    assert chain.links[0][1] == ROOT_CLAIMS and chain.links[-1][1] == chain.claims


def test_presentation_by_the_leaf_passes_holder_binding(w: World) -> None:
    tokens = w.chain(2)
    verifier = w.verifier()
    vp = create_presentation(w.sub.key, holder=w.sub.did, kid=w.sub.kid, credentials=tokens,
                             audience="https://gw", nonce="n", issued_at=NOW)
    pres = verifier.verify_presentation(vp, audience="https://gw", nonce="n", holder_binding=True)
    chain = verify_chain([c.token for c in pres.credentials], verifier=verifier, holder=pres.holder)
    assert chain.leaf.subject == w.sub.did


def test_unrestated_claims_are_inherited_never_widened() -> None:
    parent = {"models": ["a", "b"], "limits": {"rpm": 10, "burst": 5}, "tier": "gold", "flag": True}
    assert narrow_claims(parent, {"limits": {"rpm": 3}}, hop=1) == {**parent, "limits": {"rpm": 3, "burst": 5}}
    assert narrow_claims(parent, {"models": []}, hop=1)["models"] == []
    assert narrow_claims(parent, {"flag": True, "tier": "gold"}, hop=1) == parent


# --- the refusal table ------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "code", "hop"), TABLE)
def test_chain_refusals(w: World, build: Callable[[World], list[str]], code: str, hop: int) -> None:
    with pytest.raises(VCGateError) as info:
        verify_chain(build(w), verifier=w.verifier())
    assert info.value.code == code, info.value.message
    assert info.value.details["hop"] == hop
    assert f"hop {hop}" in info.value.message


def test_depth_over_policy_limit(w: World) -> None:
    tokens = w.chain(3)
    assert verify_chain(tokens, verifier=w.verifier(), max_depth=3).depth == 3
    with pytest.raises(VCGateError) as info:
        verify_chain(tokens, verifier=w.verifier(), max_depth=2)
    assert info.value.code == "delegation_depth_exceeded"
    assert info.value.details["hop"] == 3


def test_expired_middle_link(w: World) -> None:
    tokens = w.delegate([w.root()], w.user, w.agent, valid_for=600)
    tokens = w.delegate(tokens, w.agent, w.sub, valid_for=500)
    assert verify_chain(tokens, verifier=w.verifier(NOW + 400)).depth == 2
    with pytest.raises(VCGateError) as info:
        verify_chain(tokens, verifier=w.verifier(NOW + 1000))
    assert info.value.code == "delegation_expired"
    assert info.value.details["hop"] == 1
    with pytest.raises(VCGateError) as info:  # the same, with signatures already verified
        check_chain([Verifier(clock=lambda: NOW).verify_credential(t) for t in tokens], now=NOW + 1000)
    assert (info.value.code, info.value.details["hop"]) == ("delegation_expired", 0 + 1)


def test_wrong_leaf_signer(w: World) -> None:
    tokens = w.chain(2)
    verifier = w.verifier()
    # The agent (hop 1) presents the chain meant for the sub-agent.
    vp = create_presentation(w.agent.key, holder=w.agent.did, kid=w.agent.kid, credentials=tokens,
                             audience="https://gw", nonce="n", issued_at=NOW)
    pres = verifier.verify_presentation(vp, audience="https://gw", nonce="n", holder_binding=False)
    with pytest.raises(VCGateError) as info:
        verify_chain([c.token for c in pres.credentials], verifier=verifier, holder=pres.holder)
    assert info.value.code == "delegation_holder_mismatch"
    with pytest.raises(VCGateError) as info:  # the plain verifier's holder binding says the same
        verifier.verify_presentation(vp, audience="https://gw", nonce="n", holder_binding=True)
    assert info.value.code == "holder_mismatch"


@pytest.mark.parametrize("hop", [0, 1, 2], ids=["revoked-root", "revoked-middle", "revoked-leaf"])
def test_revoked_link_anywhere(w: World, hop: int) -> None:
    tokens = [w.root(status=True)]
    tokens = w.delegate(tokens, w.user, w.agent, status=True)
    tokens = w.delegate(tokens, w.agent, w.sub, status=True)
    verifier = w.verifier()
    assert verify_chain(tokens, verifier=verifier, status=w.status(verifier)).depth == 2
    cred = verifier.verify_credential(tokens[hop])
    w.lists.revoke(dict(cred.status[0]))
    with pytest.raises(VCGateError) as info:
        verify_chain(tokens, verifier=verifier, status=w.status(verifier))
    assert info.value.code == "delegation_revoked"
    assert info.value.details["hop"] == hop


def test_issue_delegation_refuses_to_widen_and_clamps_validity(w: World) -> None:
    root = w.root(valid_until=NOW + 1800)
    with pytest.raises(VCGateError) as info:
        w.delegate([root], w.user, w.agent, {"models": ["gpt-5"]})
    assert info.value.code == "delegation_list_widened"
    with pytest.raises(VCGateError) as info:  # the key must be the parent subject's
        w.delegate([root], w.agent, w.sub)
    assert info.value.code == "delegation_issuer_mismatch"
    tokens = w.delegate([root], w.user, w.agent, valid_for=86400)
    assert verify_chain(tokens, verifier=w.verifier()).valid_until == NOW + 1800


def test_a_made_up_link_does_not_unbind_someone_elses_credential(w: World) -> None:
    """Holder binding exempts a chain's ancestors only when the chain holds and ends at the holder."""
    from tests.chains import raw_link

    victim = w.root()  # the user's credential, copied by mallory
    mallory, accomplice = make_party(), make_party()
    for to, code in ((mallory, "delegation_issuer_mismatch"), (accomplice, "holder_mismatch")):
        fake = raw_link(mallory, victim, to.did)  # "delegated" by mallory herself
        vp = create_presentation(mallory.key, holder=mallory.did, kid=mallory.kid, credentials=[victim, fake],
                                 audience="https://gw", nonce="n", issued_at=NOW)
        with pytest.raises(VCGateError) as info:
            w.verifier().verify_presentation(vp, audience="https://gw", nonce="n", holder_binding=True)
        assert info.value.code == code


def test_a_vcdm11_root_can_be_delegated(w: World) -> None:
    tokens = w.delegate([w.root(format="vc-jwt11")], w.user, w.agent, {"models": ["llama-3"]})
    chain = verify_chain(tokens, verifier=w.verifier())
    assert chain.claims["models"] == ["llama-3"] and chain.principal == w.user.did


def test_verify_presentation_with_holder_binding_names_a_broken_chain(w: World) -> None:
    tokens = TABLE[0].values[0](w)  # widen-list-models: the agent's link lists gpt-5
    vp = create_presentation(w.agent.key, holder=w.agent.did, kid=w.agent.kid, credentials=tokens,
                             audience="https://gw", nonce="n", issued_at=NOW)
    with pytest.raises(VCGateError) as info:
        w.verifier().verify_presentation(vp, audience="https://gw", nonce="n", holder_binding=True)
    assert info.value.code == "delegation_list_widened"
