"""The ASGI and WSGI middleware in-process: Starlette through httpx, Flask through its test client."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.testclient import TestClient

from tests.middleware.apps import flask_app, starlette_app
from tests.middleware.helpers import make_world
from vcgate.middleware import VCGateMiddleware

AUD = "http://testserver"
CHAT = "/v1/chat/completions"


class Client:
    """One interface over both apps: (status, headers, json)."""

    def __init__(self, kind, gate, **kw):
        self.kind = kind
        if kind == "asgi":
            # Starlette's TestClient drives the ASGI app in-process through httpx.
            self.c = TestClient(starlette_app(gate, **kw), base_url=AUD)
        else:
            self.c = flask_app(gate, **kw).test_client()

    def request(self, method, path, *, headers=None, content=None, data=None):
        if self.kind == "asgi":
            r = self.c.request(method, path, headers=headers, content=content, data=data)
            return r.status_code, r.headers, r.json()
        r = self.c.open(path, method=method, headers=headers, data=content if content is not None else data,
                        base_url=AUD)
        return r.status_code, r.headers, json.loads(r.data)


@pytest.fixture(params=["asgi", "wsgi"])
def env(request):
    w = make_world(AUD)
    return w, Client(request.param, w.gate)


def nonce(client):
    status, headers, body = client.request("GET", "/v1/models")
    assert status == 401
    return body["nonce"]


BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})


def test_challenge_and_metadata(env):
    w, c = env
    status, headers, body = c.request("POST", CHAT, content=BODY, headers={"content-type": "application/json"})
    assert status == 401 and body["error"] == "credential_required"
    assert headers["www-authenticate"].startswith("VP realm=") or "VP realm=" in headers["www-authenticate"]
    status, _, body = c.request("GET", "/.well-known/oauth-protected-resource")
    assert status == 200 and body["vcgate_token_endpoint"] == AUD + "/.well-known/vcgate/token"
    assert c.request("GET", "/healthz")[0] == 200


def test_spoofed_header_stripped_grants_and_decision_delivered(env):
    w, c = env
    vp = w.presentation(nonce(c))
    status, _, body = c.request("POST", CHAT, content=BODY, headers={
        "authorization": f"VP {vp}", "content-type": "application/json",
        "x-vcgate-subject": "did:web:evil", "x-vcgate-tier": "gold"})
    assert status == 200, body
    assert body["headers"] == {"x-vcgate-subject": w.holder.did, "x-vcgate-issuer": w.issuer.did}
    assert body["body"] == BODY  # the app still gets the full body the gate read
    assert body["rule"] == "chat" and body["subject"] == w.holder.did


def test_body_model_rule(env):
    w, c = env
    vp = w.presentation(nonce(c))
    other = json.dumps({"model": "gpt-5-secret"})
    status, _, body = c.request("POST", CHAT, content=other,
                                headers={"authorization": f"VP {vp}", "content-type": "application/json"})
    assert status == 403 and body["error"] == "claim_mismatch"
    assert any("gpt-5-secret" in r["message"] for r in body["details"]["reasons"])


def test_oversize_body_413(env):
    w, c = env
    big = json.dumps({"model": "gpt-4o", "pad": "x" * (1024 * 1024)})
    status, _, body = c.request("POST", CHAT, content=big, headers={"content-type": "application/json"})
    assert status == 413 and body["error"] == "too_large"


def test_session_mode(env):
    from vcgate.session import create_proof

    w, c = env
    vp = w.presentation(nonce(c))
    proof = create_proof(w.holder.key, htm="POST", htu=AUD + "/.well-known/vcgate/token", clock=w.clock)
    status, headers, body = c.request("POST", "/.well-known/vcgate/token", data={"vp_token": vp},
                                      headers={"DPoP": proof})
    assert status == 200, body
    token = body["access_token"]
    proof = create_proof(w.holder.key, htm="GET", htu=AUD + "/v1/models", access_token=token, clock=w.clock)
    h = {"authorization": f"DPoP {token}", "DPoP": proof}
    status, _, body = c.request("GET", "/v1/models", headers=h)
    assert status == 200 and body["rule"] == "list-models"
    status, _, body = c.request("GET", "/v1/models", headers=h)
    assert status == 401 and body["error"] == "dpop_replayed"


def test_lifespan_passes_through():
    w = make_world(AUD)
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])
        msg = await receive()
        seen.append(msg["type"])
        await send({"type": "lifespan.startup.complete"})

    mw = VCGateMiddleware(app, gate=w.gate)
    sent = []

    async def receive():
        return {"type": "lifespan.startup"}

    async def send(msg):
        sent.append(msg)

    asyncio.run(mw({"type": "lifespan"}, receive, send))
    assert seen == ["lifespan", "lifespan.startup"] and sent == [{"type": "lifespan.startup.complete"}]
