"""Delegation chains for tests: real keys, did:key identities, real signed status lists.

``World`` holds an issuer (the organisation), a user, an agent, a sub-agent and a
sub-sub-agent; each delegator publishes its own Bitstring status list through an injected
fetcher, so revoking any link is a real re-signed list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import NOW, Party, make_party
from vcgate.credentials import Verifier, issue_credential
from vcgate.credentials.delegation import DELEGATION_TYPE, digest_sri, issue_delegation
from vcgate.credentials.jws import sign_jws
from vcgate.credentials.jwt import CONTEXT_V2, to_xsd_datetime
from vcgate.status import StatusChecker
from vcgate.status.bitstring import BitstringStatusMethod, StatusList

ROOT_CLAIMS = {
    "models": ["llama-3", "gpt-4o", "mistral-7b"],
    "scopes": ["chat", "embeddings"],
    "limits": {"rpm": 100, "tokens": 100_000},
    "tier": "gold",
}


class Lists:
    """Each delegator's status list, published through the injected fetcher."""

    def __init__(self) -> None:
        self.published: dict[str, bytes] = {}
        self.lists: dict[str, tuple[StatusList, Party]] = {}

    def __call__(self, url: str) -> bytes:
        return self.published[url]

    def entry(self, party: Party) -> dict[str, Any]:
        url = f"https://status.example/{party.did.method_specific_id[-12:]}"
        if url not in self.lists:
            self.lists[url] = (StatusList.create(url), party)
        lst, _ = self.lists[url]
        entry = lst.entry(lst.allocate())
        self.publish(url)
        return entry

    def publish(self, url: str) -> None:
        lst, party = self.lists[url]
        self.published[url] = lst.to_credential(party.key, issuer=party.did, kid=party.kid, valid_from=NOW - 60).encode()

    def revoke(self, entry: dict[str, Any]) -> None:
        url = entry["statusListCredential"]
        self.lists[url][0].set(int(entry["statusListIndex"]))
        self.publish(url)


@dataclass
class World:
    org: Party = field(default_factory=make_party)
    user: Party = field(default_factory=make_party)
    agent: Party = field(default_factory=make_party)
    sub: Party = field(default_factory=lambda: make_party("ES256"))
    subsub: Party = field(default_factory=make_party)
    lists: Lists = field(default_factory=Lists)

    def root(self, *, status: bool = False, max_depth: int | None = None, **kw: Any) -> str:
        args: dict[str, Any] = dict(
            issuer=self.org.did, kid=self.org.kid, subject=self.user.did, types=["ModelAccessCredential"],
            claims=ROOT_CLAIMS, valid_from=NOW - 3600, valid_until=NOW + 86400,
        )
        if status:
            args["status"] = self.lists.entry(self.org)
        if max_depth is not None:
            args["extra"] = {"delegation": {"maxDepth": max_depth}}
        args.update(kw)
        return issue_credential(self.org.key, **args)

    def delegate(self, chain: list[str], by: Party, to: Party, claims: dict[str, Any] | None = None, *,
                 status: bool = False, valid_for: float = 3600, **kw: Any) -> list[str]:
        link = issue_delegation(
            by.key, kid=by.kid, chain=chain, subject=to.did, claims=claims, valid_from=NOW - 60,
            valid_until=NOW + valid_for, status=self.lists.entry(by) if status else None, **kw,
        )
        return [*chain, link]

    def chain(self, depth: int, **root: Any) -> list[str]:
        parties = [self.user, self.agent, self.sub, self.subsub]
        tokens = [self.root(**root)]
        narrowing = [{"models": ["llama-3", "gpt-4o"]}, {"limits": {"rpm": 50}}, {"scopes": ["chat"]}]
        for hop in range(depth):
            tokens = self.delegate(tokens, parties[hop], parties[hop + 1], narrowing[hop])
        return tokens

    def verifier(self, now: float = NOW) -> Verifier:
        return Verifier(clock=lambda: now, leeway=0)

    def status(self, verifier: Verifier) -> StatusChecker:
        return StatusChecker([BitstringStatusMethod(verifier=verifier, fetch=self.lists)])


def raw_link(by: Party, parent: str, subject: str, *, claims: dict[str, Any] | None = None,
             valid_until: float = NOW + 600, binding: dict[str, Any] | None = None, types: list[str] | None = None,
             valid_from: float = NOW - 60) -> str:
    """A link signed by hand, for the attacks issue_delegation refuses to produce."""
    body = {
        "@context": [CONTEXT_V2],
        "id": "urn:uuid:hand-made",
        "type": types or ["VerifiableCredential", DELEGATION_TYPE],
        "issuer": by.did,
        "validFrom": to_xsd_datetime(valid_from),
        "validUntil": to_xsd_datetime(valid_until),
        "credentialSubject": {"id": subject, **(claims or {})},
        "delegation": binding if binding is not None else {"parent": {"digestSRI": digest_sri(parent)}},
    }
    return sign_jws(by.key, body, typ="vc+jwt", kid=by.kid)


# --- the chain table: (build, code, hop) -- shared by the verification and policy tests ------


def _widen(claims: dict[str, Any]) -> Callable[[World], list[str]]:
    def build(w: World) -> list[str]:
        root = w.root()
        return [root, raw_link(w.user, root, w.agent.did, claims=claims)]
    return build


def _reparented(w: World) -> list[str]:
    root = w.root()
    first = w.delegate([root], w.user, w.agent, {"models": ["llama-3"]})
    second = w.delegate([root], w.user, w.agent, {"models": ["llama-3", "gpt-4o"]})
    # The sub-agent's link was made under the narrow delegation; presented under the wide one.
    leaf = w.delegate(first, w.agent, w.sub)[-1]
    return [root, second[1], leaf]


def _forged_link(w: World) -> list[str]:
    tokens = w.chain(2)
    head, payload, _ = tokens[1].split(".")
    other = w.delegate([tokens[0]], w.user, w.agent, {"models": ["llama-3", "gpt-4o", "mistral-7b"]})[1]
    tokens[1] = f"{head}.{payload}.{other.split('.')[2]}"  # the signature of another link
    return tokens


def _forged_root(w: World) -> list[str]:
    tokens = w.chain(1)
    mallory = make_party()
    forged = issue_credential(mallory.key, issuer=w.org.did, kid=w.org.kid, subject=w.user.did,
                              types=["ModelAccessCredential"], claims=ROOT_CLAIMS, valid_from=NOW - 60)
    # The link stays bound to the real root; present the forgery instead under its digest binding.
    return [forged, raw_link(w.user, forged, w.agent.did)]


def _link_beyond_parent(w: World) -> list[str]:
    tokens = w.chain(1)
    return [*tokens, raw_link(w.agent, tokens[1], w.sub.did, valid_until=NOW + 7200)]


def _depth_widened(w: World) -> list[str]:
    tokens = w.delegate([w.root()], w.user, w.agent, max_depth=1)
    return [*tokens, raw_link(w.agent, tokens[1], w.sub.did, binding={"parent": {"digestSRI": digest_sri(tokens[1])}, "maxDepth": 3})]


def _root_depth(w: World) -> list[str]:
    tokens = [w.root(max_depth=1)]
    tokens = w.delegate(tokens, w.user, w.agent)
    return [*tokens, raw_link(w.agent, tokens[1], w.sub.did)]


def _cycle(w: World) -> list[str]:
    tokens = w.delegate([w.root()], w.user, w.agent)
    return [*tokens, raw_link(w.agent, tokens[1], w.user.did)]


def _self_delegation(w: World) -> list[str]:
    root = w.root()
    return [root, raw_link(w.user, root, w.user.did)]


def _stranger(w: World) -> list[str]:
    root = w.root()
    mallory = make_party()
    return [root, raw_link(mallory, root, w.agent.did)]


def _orphan(w: World) -> list[str]:
    root = w.root()
    return [raw_link(w.user, root, w.agent.did)]


def _unbound(w: World) -> list[str]:
    root = w.root()
    return [root, raw_link(w.user, root, w.agent.did, binding={"maxDepth": 1})]


TABLE = [
    pytest.param(_widen({"models": ["llama-3", "gpt-5"]}), "delegation_list_widened", 1, id="widen-list-models"),
    pytest.param(_widen({"scopes": ["chat", "admin"]}), "delegation_list_widened", 1, id="widen-list-scopes"),
    pytest.param(_widen({"limits": {"rpm": 101}}), "delegation_limit_raised", 1, id="widen-limit"),
    pytest.param(_widen({"tier": "platinum"}), "delegation_claim_changed", 1, id="widen-changed-value"),
    pytest.param(_widen({"models": "llama-3"}), "delegation_claim_changed", 1, id="widen-changed-kind"),
    pytest.param(_widen({"limits": {"gpus": 4}}), "delegation_claim_added", 1, id="widen-added-claim"),
    pytest.param(_widen({"admin": True}), "delegation_claim_added", 1, id="widen-added-top-level"),
    pytest.param(_link_beyond_parent, "delegation_validity_widened", 2, id="widen-validity"),
    pytest.param(_depth_widened, "delegation_depth_widened", 2, id="widen-depth"),
    pytest.param(_reparented, "delegation_reparented", 2, id="reparented"),
    pytest.param(_forged_link, "delegation_signature_invalid", 1, id="forged-link"),
    pytest.param(_forged_root, "delegation_signature_invalid", 0, id="forged-root"),
    pytest.param(_root_depth, "delegation_depth_exceeded", 2, id="depth-over-root-limit"),
    pytest.param(_cycle, "delegation_cycle", 2, id="cycle-back-to-principal"),
    pytest.param(_self_delegation, "delegation_cycle", 1, id="cycle-self"),
    pytest.param(_stranger, "delegation_issuer_mismatch", 1, id="issuer-not-parent-subject"),
    pytest.param(_orphan, "delegation_parent_missing", 1, id="parent-missing"),
    pytest.param(_unbound, "delegation_invalid", 1, id="no-parent-binding"),
]
