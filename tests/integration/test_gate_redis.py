"""Two gateway replicas (two ``Gate`` objects) sharing one real Redis (issue 4, item 8).

Both gates have the same gateway key and policy; each has its own Redis connection and its
own in-process session cache. The ``redis_server`` fixture (from ``test_redis_store``) starts
``redis-server`` on 127.0.0.1 with a free port; without it the tests skip with the install
hint, and fail under CI=true.
"""

from __future__ import annotations

import pytest

from tests.integration.test_redis_store import redis_server  # noqa: F401  (the fixture)
from tests.middleware.helpers import World, make_world
from tests.support import make_party
from vcgate.credentials import Verifier
from vcgate.gate import Decision, Gate, RequestView
from vcgate.session import create_proof
from vcgate.status import StatusChecker
from vcgate.stores import RedisNonceStore, RedisReplayStore, redis_client

pytestmark = pytest.mark.integration

AUD = "https://gw.example"
CHAT = "/v1/chat/completions"
TOKEN = "/.well-known/vcgate/token"


def _stores(server) -> dict:
    client = redis_client(server.url, timeout=0.5)
    return {"replay_store": RedisReplayStore(client), "nonce_store": RedisNonceStore(client)}


def replicas(server) -> tuple[World, Gate]:
    """Replica A (with its world: parties, clock) and replica B: same key and policy, same Redis."""
    key = make_party().key
    w = make_world(AUD, gateway_key=key, **_stores(server))
    b = Gate(policy=w.gate.policy, verifier=Verifier(clock=w.clock), status=StatusChecker([w.status]),
             gateway_key=key, clock=w.clock, **_stores(server))
    return w, b


def view(method: str = "POST", path: str = CHAT, *, headers=(), model: str | None = "gpt-4o") -> RequestView:
    return RequestView(method=method, path=path, host="gw.example", scheme="https", headers=headers, model=model,
                       body_available=model is not None)


def nonce_from(gate: Gate) -> str:
    d = gate.check(view())
    assert d.status == 401 and d.code == "credential_required"
    return d.body["nonce"]


def session_call(gate: Gate, token: str, proof: str) -> Decision:
    return gate.check(view(headers=[("Authorization", f"DPoP {token}"), ("DPoP", proof)]))


def test_proof_used_at_a_is_refused_at_b(redis_server):  # noqa: F811
    w, b = replicas(redis_server)
    a = w.gate
    proof = create_proof(w.holder.key, htm="POST", htu=AUD + TOKEN, clock=w.clock)
    status, _, body = a.token_endpoint(view(path=TOKEN, headers=[("DPoP", proof)], model=None),
                                       {"vp_token": w.presentation(nonce_from(a))})
    assert status == 200, body
    token = body["access_token"]

    proof = create_proof(w.holder.key, htm="POST", htu=AUD + CHAT, access_token=token, clock=w.clock)
    d = session_call(a, token, proof)
    assert d.allow and d.mode == "session" and d.subject == w.holder.did
    # Replayed against the other replica: the shared replay cache refuses it before B's
    # (empty) session cache is consulted.
    d = session_call(b, token, proof)
    assert (d.allow, d.status, d.code) == (False, 401, "dpop_replayed"), d
    d = session_call(a, token, proof)
    assert d.code == "dpop_replayed"
    # B accepts A's token signature and a fresh proof, but does not hold the session: present again.
    d = session_call(b, token, create_proof(w.holder.key, htm="POST", htu=AUD + CHAT, access_token=token,
                                            clock=w.clock))
    assert (d.status, d.code) == (401, "token_invalid") and d.body["details"]["reason"] == "session_unknown"


def test_token_proof_replayed_at_the_other_token_endpoint(redis_server):  # noqa: F811
    w, b = replicas(redis_server)
    a = w.gate
    proof = create_proof(w.holder.key, htm="POST", htu=AUD + TOKEN, clock=w.clock)
    status, _, body = a.token_endpoint(view(path=TOKEN, headers=[("DPoP", proof)], model=None),
                                       {"vp_token": w.presentation(nonce_from(a))})
    assert status == 200, body
    status, _, body = b.token_endpoint(view(path=TOKEN, headers=[("DPoP", proof)], model=None),
                                       {"vp_token": w.presentation(nonce_from(b))})
    assert (status, body["error"]) == (401, "dpop_replayed")


def test_challenge_nonce_from_a_is_consumed_once_at_b(redis_server):  # noqa: F811
    w, b = replicas(redis_server)
    a = w.gate
    n = nonce_from(a)
    d = b.check(view(headers=[("Authorization", f"VP {w.presentation(n)}")]))
    assert d.allow and d.mode == "direct" and d.subject == w.holder.did, d
    # The same nonce, in a fresh presentation, back at A: already consumed (at B).
    d = a.check(view(headers=[("Authorization", f"VP {w.presentation(n)}")]))
    assert (d.allow, d.status, d.code) == (False, 401, "nonce_mismatch"), d
    d = b.check(view(headers=[("Authorization", f"VP {w.presentation(n)}")]))
    assert d.code == "nonce_mismatch"
