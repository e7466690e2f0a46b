"""Limits and shared sessions through the ASGI middleware, two gateway replicas, real Redis.

Each replica is a ``Gate`` with its own Redis connections (counters, sessions, nonces, replay)
wrapped by ``VCGateMiddleware`` around a fake OpenAI upstream that answers JSON or a stream
and reports ``usage``. The ``redis_server`` fixture starts ``redis-server`` on 127.0.0.1;
without it the tests skip with the install hint, and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading

import httpx
import pytest

from tests.fake_openai import answer
from tests.integration.test_redis_store import redis_server  # noqa: F401  (the fixture)
from tests.middleware.helpers import STATUS_TYPE, FakeStatus, policy_text
from tests.support import NOW, make_party
from vcgate.credentials import Verifier, create_presentation, issue_credential
from vcgate.gate import Gate
from vcgate.middleware import VCGateMiddleware
from vcgate.policy import Policy
from vcgate.session import create_proof
from vcgate.status import StatusChecker
from vcgate.stores import (
    RedisCounterStore,
    RedisNonceStore,
    RedisReplayStore,
    RedisSessionStore,
    redis_client,
)

pytestmark = pytest.mark.integration

AUD = "http://testserver"
CHAT = "/v1/chat/completions"
TOKEN = "/.well-known/vcgate/token"


class Upstream:
    """A fake OpenAI chat-completions server (ASGI): records what it received and used."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.bodies: list[dict] = []
        self.used: list[int] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        with self.lock:
            response, prompt, completion = answer(body, rng=self.rng)
            self.bodies.append(json.loads(body))
            self.used.append(prompt + completion)
        stream = json.loads(body).get("stream") is True
        ctype = b"text/event-stream" if stream else b"application/json"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", ctype)]})
        if stream:  # several chunks, as a model server streams
            for i in range(0, len(response), 50):
                await send({"type": "http.response.body", "body": response[i : i + 50], "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": response})


class Replicas:
    def __init__(self, server, limits: str) -> None:
        self.issuer, self.holder, key = make_party(), make_party(), make_party().key
        self.key = key
        self.policy = Policy.from_yaml(policy_text(AUD, self.issuer.did) + limits)
        self.upstream = Upstream()
        self.gates = []
        for _ in range(2):
            client = redis_client(server.url, timeout=2.0)
            gate = Gate(policy=self.policy, verifier=Verifier(clock=lambda: NOW), status=StatusChecker([FakeStatus()]),
                        clock=lambda: NOW, gateway_key=key, nonce_store=RedisNonceStore(client),
                        replay_store=RedisReplayStore(client), counter_store=RedisCounterStore(client),
                        session_store=RedisSessionStore(client))
            self.gates.append(gate)
        self.apps = [VCGateMiddleware(self.upstream, gate=g) for g in self.gates]

    def credential(self, **limits) -> str:
        return issue_credential(self.issuer.key, issuer=self.issuer.did, kid=self.issuer.kid, subject=self.holder.did,
                                types=["ModelAccessCredential"], claims={"models": ["gpt-4o"], "limits": limits},
                                valid_from=NOW - 3600, status={"type": STATUS_TYPE, "id": "test:1"})

    async def token(self, app, credential: str) -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=AUD) as c:
            nonce = (await c.get("/v1/models")).json()["nonce"]
            vp = create_presentation(self.holder.key, holder=self.holder.did, kid=self.holder.kid, credentials=[credential],
                                     audience=AUD, nonce=nonce, issued_at=NOW)
            proof = create_proof(self.holder.key, htm="POST", htu=AUD + TOKEN, clock=lambda: NOW)
            r = await c.post(TOKEN, data={"vp_token": vp}, headers={"DPoP": proof})
            assert r.status_code == 200, r.text
            return r.json()["access_token"]

    async def calls(self, app, token: str, bodies: list[bytes]) -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=AUD) as c:
            async def one(body: bytes) -> httpx.Response:
                proof = create_proof(self.holder.key, htm="POST", htu=AUD + CHAT, access_token=token, clock=lambda: NOW)
                return await c.post(CHAT, content=body, headers={"authorization": f"DPoP {token}", "DPoP": proof,
                                                                  "content-type": "application/json"})
            return list(await asyncio.gather(*(one(b) for b in bodies)))


def _in_threads(jobs) -> list:
    """Run each coroutine factory in its own thread and event loop (a replica each), at once."""
    results: list = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = asyncio.run(jobs[i]())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def chat(**fields) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}], **fields}).encode()


RPM = "limits:\n  - {name: agent-rpm, key: $subject, requests: $claims.limits.rpm, per: 1m}\n"


def test_200_concurrent_calls_two_replicas_exactly_50_admitted(redis_server):  # noqa: F811
    r = Replicas(redis_server, RPM)
    a, b = r.apps
    token = asyncio.run(r.token(a, r.credential(rpm=50)))  # issued by A, used at A and B
    results = _in_threads([lambda: r.calls(a, token, [chat()] * 100), lambda: r.calls(b, token, [chat()] * 100)])
    statuses = [resp.status_code for batch in results for resp in batch]
    assert statuses.count(200) == 50 and statuses.count(429) == 150, sorted(set(statuses))
    assert len(r.upstream.bodies) == 50
    refused = next(resp for batch in results for resp in batch if resp.status_code == 429)
    assert refused.json()["error"] == "quota_exceeded" and "agent-rpm" in refused.json()["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-policy"] == '"agent-rpm";q=50;w=60'
    assert refused.headers["ratelimit"].startswith('"agent-rpm";r=0;t=')
    allowed = next(resp for batch in results for resp in batch if resp.status_code == 200)
    assert allowed.headers["ratelimit-policy"] == '"agent-rpm";q=50;w=60'


def test_token_issued_by_a_works_at_b_and_the_store_is_checked(redis_server):  # noqa: F811
    r = Replicas(redis_server, RPM)
    a, b = r.apps
    token = asyncio.run(r.token(a, r.credential(rpm=5)))
    (resp,) = asyncio.run(r.calls(b, token, [chat()]))
    assert resp.status_code == 200, resp.text
    # A session record that does not match the token is not used (Redis written by someone else).
    client = redis_client(redis_server.url)
    for key in client.keys("vcgate:session:*"):
        if b"holder:" not in key:
            client.set(key, b'{"h":"did:key:zMallory","c":[]}', keepttl=True)
    c = Gate(policy=r.policy, verifier=Verifier(clock=lambda: NOW), status=StatusChecker([FakeStatus()]),
             clock=lambda: NOW, gateway_key=r.key, nonce_store=RedisNonceStore(client),
             replay_store=RedisReplayStore(client), counter_store=RedisCounterStore(client),
             session_store=RedisSessionStore(client))
    (resp,) = asyncio.run(r.calls(VCGateMiddleware(r.upstream, gate=c), token, [chat()]))
    assert resp.status_code == 401 and resp.json()["details"]["reason"] == "session_unknown"


TOKENS = ("limits:\n  - {name: monthly-tokens, key: $subject, tokens: $claims.limits.tokens, per: 30d, reserve: 150}\n")


def test_token_budget_streamed_and_json_two_replicas_never_exceeds(redis_server):  # noqa: F811
    r = Replicas(redis_server, TOKENS)
    a, b = r.apps
    budget = 6000
    token = asyncio.run(r.token(a, r.credential(tokens=budget)))
    bodies = [chat(stream=bool(i % 2), messages=[{"role": "user", "content": "x" * (50 + 37 * i)}]) for i in range(40)]
    results = _in_threads([lambda: r.calls(a, token, bodies[:20]), lambda: r.calls(b, token, bodies[20:])])
    responses = [resp for batch in results for resp in batch]
    ok = [resp for resp in responses if resp.status_code == 200]
    assert ok and any(resp.status_code == 429 for resp in responses)
    # The upstream got an output cap and, for streams, was asked for usage; the clients did not see it.
    assert all(body["max_tokens"] == 150 for body in r.upstream.bodies)
    assert all(body["stream_options"] == {"include_usage": True} for body in r.upstream.bodies if body.get("stream"))
    assert not any(b'"choices": []' in resp.content for resp in ok)
    committed = r.gates[0].meter.store.peek(_counters(r))[0].used
    assert committed == sum(r.upstream.used) <= budget


def _counters(r: Replicas):
    """The counters the policy puts on the holder's chat calls."""
    from vcgate.policy import RequestFacts
    from vcgate.policy.limits import CallEstimate, Caller, plan_limits

    cred = Verifier(clock=lambda: NOW).verify_credential(r.credential(tokens=6000))
    d = r.policy.decide(RequestFacts("POST", CHAT, model="gpt-4o", body_available=True), [cred], now=NOW,
                        holder=r.holder.did, status_results={cred.token: "ok"})
    assert d.allow, d
    return plan_limits(r.policy.limits_for(d), r.policy.prices, Caller.from_decision(d), CallEstimate()).counters


def test_failed_upstream_releases_tokens_but_counts_the_request(redis_server):  # noqa: F811
    r = Replicas(redis_server, TOKENS + "  - {name: rpm, key: $subject, requests: 100, per: 1m}\n")

    async def broken(scope, receive, send):
        raise RuntimeError("upstream down")

    app = VCGateMiddleware(broken, gate=r.gates[0])
    token = asyncio.run(r.token(r.apps[0], r.credential(tokens=6000)))
    with pytest.raises(RuntimeError):
        asyncio.run(r.calls(app, token, [chat()]))
    states = r.gates[0].meter.store.peek(list(_counters(r)))
    assert [s.used for s in states] == [0, 1]


def test_wsgi_settles_usage_and_answers_ratelimit_headers(redis_server):  # noqa: F811
    from vcgate.middleware import VCGateWSGI

    r = Replicas(redis_server, TOKENS)
    token = asyncio.run(r.token(r.apps[0], r.credential(tokens=6000)))
    seen: list[bytes] = []

    def upstream(environ, start_response):
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        seen.append(body)
        response, prompt, completion = answer(body, rng=random.Random(5))
        r.upstream.used.append(prompt + completion)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [response[:20], response[20:]]

    app = VCGateWSGI(upstream, gate=r.gates[1])
    proof = create_proof(r.holder.key, htm="POST", htu=AUD + CHAT, access_token=token, clock=lambda: NOW)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url=AUD) as c:
        resp = c.post(CHAT, content=chat(), headers={"authorization": f"DPoP {token}", "DPoP": proof,
                                                      "content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert json.loads(seen[0])["max_tokens"] == 150
    assert resp.headers["ratelimit-policy"] == '"monthly-tokens";q=6000;w=2592000;qu="tokens"'
    assert r.gates[0].meter.store.peek(_counters(r))[0].used == r.upstream.used[0]
