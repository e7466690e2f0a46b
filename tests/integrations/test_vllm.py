"""``vcgate.integrations.vllm.VCGateMiddleware``: built as vLLM builds it (``cls(app)``, settings from
the environment), one gate per configuration however often Starlette builds the stack."""

from __future__ import annotations

import pytest

from vcgate.integrations.vllm import VCGateMiddleware
from vcgate.middleware.asgi import VCGateMiddleware as ASGIMiddleware
from vcgate.assembly import GateConfig

from ..support import make_party

starlette = pytest.importorskip("starlette", reason="pip install -e '.[dev]'")

POLICY = """\
version: 1
audience: http://testserver
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
rules:
  - name: models
    match: {{methods: [GET], paths: [/v1/models]}}
    require: {{types: [ModelAccessCredential]}}
"""


@pytest.fixture
def policy(tmp_path, monkeypatch):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(issuer=make_party().did))
    monkeypatch.setenv("VCGATE_POLICY", str(path))
    yield path
    VCGateMiddleware.runtimes.close_all()


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"model server"})


def test_constructed_with_the_app_alone_reads_the_environment(policy):
    mw = VCGateMiddleware(_app)
    assert isinstance(mw, ASGIMiddleware)
    assert mw.config == GateConfig.from_env()
    assert mw.gate.policy_path == str(policy)


def test_without_a_policy_it_refuses_to_start(monkeypatch):
    monkeypatch.delenv("VCGATE_POLICY", raising=False)
    with pytest.raises(ValueError, match="VCGATE_POLICY"):
        VCGateMiddleware(_app)


def test_equal_configs_share_one_gate_and_different_ones_do_not(policy, tmp_path):
    a, b = VCGateMiddleware(_app), VCGateMiddleware(_app)
    assert a.gate is b.gate
    other = tmp_path / "other.yaml"
    other.write_text(policy.read_text())
    c = VCGateMiddleware(_app, config=GateConfig(policy=str(other)))
    assert c.gate is not a.gate


def test_starlette_rebuilding_the_stack_keeps_one_gate(policy):
    from starlette.applications import Starlette

    app = Starlette()
    app.add_middleware(VCGateMiddleware)  # exactly how vLLM adds a --middleware class

    def gate_of(stack):
        node = stack
        while not isinstance(node, VCGateMiddleware):
            node = node.app
        return node.gate

    assert gate_of(app.build_middleware_stack()) is gate_of(app.build_middleware_stack())


def test_challenge_then_public_metadata_in_process(policy):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    app = Starlette()
    app.add_middleware(VCGateMiddleware)
    with TestClient(app) as client:
        r = client.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"] == "credential_required"
        assert client.get("/.well-known/oauth-protected-resource").json()["resource"] == "http://testserver"
    # Leaving the TestClient ran the lifespan shutdown: the runtime was closed and dropped.
    assert len(VCGateMiddleware.runtimes) == 0


def test_websocket_without_credentials_is_refused_before_accept(policy):
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.testclient import TestClient, WebSocketDenialResponse

    opened = []

    async def ws_endpoint(ws):
        opened.append(True)
        await ws.accept()
        await ws.close()

    app = Starlette(routes=[WebSocketRoute("/v1/models", ws_endpoint)])
    app.add_middleware(VCGateMiddleware)
    with TestClient(app) as client:
        with pytest.raises(WebSocketDenialResponse) as refused:
            with client.websocket_connect("/v1/models"):
                pass
    # The refusal is the gate's own answer (the server offers the http.response extension).
    assert refused.value.status_code == 401
    assert refused.value.json()["error"] == "credential_required"
    assert refused.value.headers["www-authenticate"].startswith("VP ")
    assert opened == []


def test_the_shipped_policy_loads(tmp_path):
    from pathlib import Path

    from vcgate.policy import Policy

    text = (Path(__file__).resolve().parents[2] / "plugins" / "vllm" / "policy.yaml").read_text()
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace("did:key:z6MkREPLACE-WITH-YOUR-ISSUER", str(make_party().did)))
    policy = Policy.from_file(path)
    assert policy.needs_body  # the model rule is what vLLM users want
