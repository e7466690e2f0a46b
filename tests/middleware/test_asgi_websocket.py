"""WebSocket handshakes through the core ASGI middleware: decided like GET, refused before accept."""

from __future__ import annotations

import pytest

from tests.middleware.helpers import make_world

starlette = pytest.importorskip("starlette", reason="pip install -e '.[dev]'")

from starlette.applications import Starlette  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from starlette.testclient import TestClient, WebSocketDenialResponse  # noqa: E402

from vcgate import RequestView  # noqa: E402
from vcgate.middleware import VCGateMiddleware  # noqa: E402

AUD = "http://testserver"


def app_for(world, opened: list):
    async def endpoint(ws):
        opened.append(ws.scope.get("vcgate"))
        await ws.accept()
        await ws.send_json({"subject": ws.headers.get("x-vcgate-subject")})
        await ws.close()

    return VCGateMiddleware(Starlette(routes=[WebSocketRoute("/v1/models", endpoint)]), gate=world.gate)


def test_handshake_without_credential_gets_the_challenge_and_never_opens():
    world, opened = make_world(AUD), []
    with TestClient(app_for(world, opened)) as client, pytest.raises(WebSocketDenialResponse) as refused:
        with client.websocket_connect("/v1/models"):
            pass
    assert refused.value.status_code == 401
    assert refused.value.json()["error"] == "credential_required"
    assert refused.value.headers["www-authenticate"].startswith("VP ")
    assert opened == []


def test_handshake_with_a_presentation_opens_with_grants_and_no_spoofing():
    world, opened = make_world(AUD), []
    nonce = world.gate.check(RequestView(method="GET", path="/v1/models", host="testserver"))
    vp = world.presentation(nonce.body["nonce"])
    with TestClient(app_for(world, opened)) as client:
        with client.websocket_connect("/v1/models", headers={"Authorization": f"VP {vp}",
                                                             "X-Vcgate-Subject": "did:example:mallory"}) as ws:
            assert ws.receive_json() == {"subject": world.holder.did}
    assert opened[0].allow and opened[0].mode == "direct"


def test_other_scopes_pass_through():
    """The lifespan is the app's, not the gate's."""
    world, started = make_world(AUD), []

    async def lifespan_app(scope, receive, send):
        assert scope["type"] == "lifespan"
        started.append((await receive())["type"])
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    with TestClient(VCGateMiddleware(lifespan_app, gate=world.gate)):
        pass
    assert started == ["lifespan.startup"]
