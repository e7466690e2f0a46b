"""vLLM's ``--middleware`` wiring, end to end: the OpenAI SDK with vcgate's httpx auth against an
OpenAI-compatible FastAPI app under a real uvicorn on 127.0.0.1.

vLLM itself cannot run here (a 336 MB wheel pinned to CUDA torch builds, and a model's weights
from a hub), so the app is built the way vLLM's ``build_app`` builds it: ``FastAPI(lifespan=...)``,
CORS first, then the ``--middleware`` loop copied from vLLM. Only the routes are stand-ins.
"""

# No `from __future__ import annotations` here: FastAPI resolves the route functions' annotations
# (Request, WebSocket, imported inside build_app) at runtime, and strings would not resolve.
import argparse
import importlib
import inspect
import json
import socket
import threading
import time
from contextlib import asynccontextmanager

import pytest

from tests.support import make_party, require_real

pytestmark = pytest.mark.integration

MIDDLEWARE = "vcgate.integrations.vllm.VCGateMiddleware"

POLICY = """\
version: 1
audience: {audience}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
rules:
  - name: health
    match: {{methods: [GET], paths: [/health]}}
    public: true
  - name: models
    match: {{methods: [GET], paths: [/v1/models]}}
    require: {{types: [ModelAccessCredential]}}
  - name: realtime
    match: {{methods: [GET], paths: [/v1/realtime]}}
    require: {{types: [ModelAccessCredential]}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_app(args: argparse.Namespace):
    """An OpenAI-compatible app assembled as vLLM assembles its own."""
    from fastapi import FastAPI, Request, WebSocket
    from fastapi.middleware.cors import CORSMiddleware

    @asynccontextmanager
    async def lifespan(app):
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health():
        return {}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "llama-3-70b", "object": "model", "created": 0, "owned_by": "vllm"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        who = request.headers.get("x-vcgate-subject")
        return {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"[{body['model']} for {who}]"}}],
        }

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket):
        await ws.accept()
        await ws.send_text(ws.headers.get("x-vcgate-subject") or "")
        await ws.close()

    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_credentials=False,
                       allow_methods=["*"], allow_headers=["*"])

    # Copied from vLLM (vllm/entrypoints/serve/middleware/register.py, init_entrypoints_middleware,
    # vLLM 0.33.0; the same loop sat in vllm/entrypoints/openai/api_server.py build_app before).
    for middleware in args.middleware:
        module_path, object_name = middleware.rsplit(".", 1)
        imported = getattr(importlib.import_module(module_path), object_name)
        if inspect.isclass(imported):
            app.add_middleware(imported)  # type: ignore[arg-type]
        elif inspect.iscoroutinefunction(imported):
            app.middleware("http")(imported)
        else:
            raise ValueError(
                f"Invalid middleware {middleware}. Must be a function or a class."
            )
    return app


@pytest.fixture
def world(tmp_path, monkeypatch):
    from vcgate.credentials import issue_credential

    issuer, agent = make_party("EdDSA"), make_party("ES256")
    port = _free_port()
    audience = f"http://127.0.0.1:{port}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(audience=audience, issuer=issuer.did))
    now = time.time()
    vc = issue_credential(
        issuer.key, issuer=issuer.did, kid=issuer.kid, subject=agent.did, types=["ModelAccessCredential"],
        claims={"models": ["llama-3-70b"]}, valid_from=now - 60, valid_until=now + 3600,
    )
    # What an operator exports before `vllm serve`: the middleware reads nothing else.
    monkeypatch.setenv("VCGATE_POLICY", str(policy))
    monkeypatch.setenv("VCGATE_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    return {"agent": agent, "port": port, "audience": audience, "vc": vc, "audit": tmp_path / "audit.jsonl"}


@pytest.fixture
def vllm_server(world):
    pytest.importorskip("fastapi", reason="pip install -e '.[dev]'")
    uvicorn = pytest.importorskip("uvicorn", reason="pip install -e '.[dev]'")
    from vcgate.integrations.vllm import VCGateMiddleware

    app = build_app(argparse.Namespace(middleware=[MIDDLEWARE]))
    config = uvicorn.Config(app, host="127.0.0.1", port=world["port"], log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn exited during start-up"
        time.sleep(0.02)
    state = {"stopped": False}

    def stop():
        if not state["stopped"]:
            state["stopped"] = True
            server.should_exit = True
            thread.join(timeout=10)
            assert not thread.is_alive(), "uvicorn did not stop"

    yield {"app": app, "stop": stop}
    stop()
    VCGateMiddleware.runtimes.close_all()


def _openai(world):
    openai = pytest.importorskip("openai", reason="pip install -e '.[dev]'")
    import httpx

    from vcgate.client import Holder

    holder = Holder(world["agent"].key, credentials=[world["vc"]])
    http = httpx.Client(auth=holder.httpx_auth(), timeout=10)
    return openai, holder, openai.OpenAI(base_url=world["audience"] + "/v1", api_key="unused", http_client=http,
                                         max_retries=0)


def test_openai_sdk_through_vllm_middleware(world, vllm_server):
    openai, _holder, client = _openai(world)

    reply = client.chat.completions.create(model="llama-3-70b", messages=[{"role": "user", "content": "hi"}])
    # The grant header reached the model server: the middleware decided and forwarded.
    assert reply.choices[0].message.content == f"[llama-3-70b for {world['agent'].did}]"
    assert [m.id for m in client.models.list().data] == ["llama-3-70b"]

    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.status_code == 403
    assert denied.value.response.json()["error"] == "claim_mismatch"


def test_spoofed_grant_header_does_not_reach_the_model_server(world, vllm_server):
    import httpx

    from vcgate.client import Holder

    holder = Holder(world["agent"].key, credentials=[world["vc"]])
    with httpx.Client(auth=holder.httpx_auth(), timeout=10) as http:
        r = http.post(world["audience"] + "/v1/chat/completions", headers={"X-Vcgate-Subject": "did:example:admin"},
                      json={"model": "llama-3-70b", "messages": []})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == f"[llama-3-70b for {world['agent'].did}]"


def test_without_a_credential_the_challenge(world, vllm_server):
    import httpx

    r = httpx.post(world["audience"] + "/v1/chat/completions", json={"model": "llama-3-70b", "messages": []}, timeout=10)
    assert r.status_code == 401
    assert r.json()["error"] == "credential_required"
    challenges = r.headers.get_list("www-authenticate")
    assert challenges[0].startswith("VP ") and 'nonce="' in challenges[0]
    assert any(c.startswith("DPoP ") for c in challenges)
    assert httpx.get(world["audience"] + "/health", timeout=10).status_code == 200
    meta = httpx.get(world["audience"] + "/.well-known/oauth-protected-resource", timeout=10).json()
    assert meta["resource"] == world["audience"]


def test_websocket_handshake_is_decided(world, vllm_server):
    try:
        import websockets.sync.client as websockets
        from websockets.exceptions import InvalidStatus
    except ImportError:
        require_real("websockets", "pip install -e '.[dev]'")
    import httpx

    from vcgate.client import Holder

    url = f"ws://127.0.0.1:{world['port']}/v1/realtime"
    with pytest.raises(InvalidStatus) as refused:
        websockets.connect(url, open_timeout=10)
    assert refused.value.response.status_code in (401, 403)

    # Direct mode: a presentation carrying a nonce from a challenge opens the socket, and the
    # app sees the grant header, not the client's own.
    challenge = httpx.get(world["audience"] + "/v1/models", timeout=10)
    nonce = challenge.json()["nonce"]
    vp = Holder(world["agent"].key, credentials=[world["vc"]]).present(audience=world["audience"], nonce=nonce)
    with websockets.connect(url, open_timeout=10,
                            additional_headers={"Authorization": f"VP {vp}", "X-Vcgate-Subject": "did:example:x"}) as ws:
        assert ws.recv(timeout=10) == world["agent"].did


def test_shutdown_closes_the_runtime(world, vllm_server):
    import httpx

    from vcgate.audit import verify_file
    from vcgate.errors import AuditUnavailableError
    from vcgate.integrations.vllm import VCGateMiddleware

    assert httpx.get(world["audience"] + "/v1/models", timeout=10).status_code == 401
    (runtime,) = VCGateMiddleware.runtimes.runtimes()
    assert runtime.audit is not None  # VCGATE_AUDIT_LOG reached the gate
    vllm_server["stop"]()
    # The lifespan shutdown dropped and closed the runtime: the audit log takes no more records.
    assert len(VCGateMiddleware.runtimes) == 0
    with pytest.raises(AuditUnavailableError):
        runtime.audit.append({"outcome": "allow"})
    report = verify_file(world["audit"])
    assert report.ok and report.records >= 1
