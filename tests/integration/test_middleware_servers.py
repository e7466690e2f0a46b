"""The middleware under real servers: Starlette under uvicorn, Flask under werkzeug's WSGI server.

The agent side is done by hand with ``requests`` (challenge, presentation, token, DPoP proofs)
exactly as docs/protocol.md describes it.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.middleware.apps import flask_app, starlette_app
from tests.middleware.helpers import make_world, real_clock
from vcgate.session import create_proof

uvicorn = pytest.importorskip("uvicorn")
from werkzeug.serving import make_server  # noqa: E402

CHAT = "/v1/chat/completions"
BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["uvicorn", "werkzeug"])
def server(request):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    w = make_world(base, clock=real_clock)
    if request.param == "uvicorn":
        config = uvicorn.Config(starlette_app(w.gate), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        srv = uvicorn.Server(config)
        t = threading.Thread(target=srv.run, daemon=True)
        t.start()
        deadline = time.time() + 10
        while not srv.started:
            assert time.time() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield w, base
        srv.should_exit = True
        t.join(5)
    else:
        srv = make_server("127.0.0.1", port, flask_app(w.gate), threaded=True)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        yield w, base
        srv.shutdown()
        t.join(5)


def challenge_nonce(base: str) -> str:
    r = requests.post(base + CHAT, data=BODY, headers={"content-type": "application/json"}, timeout=5)
    assert r.status_code == 401
    assert "VP realm=" in r.headers["www-authenticate"]
    return r.json()["nonce"]


def test_direct_mode_and_spoofed_header(server):
    w, base = server
    vp = w.presentation(challenge_nonce(base))
    r = requests.post(base + CHAT, data=BODY, timeout=5, headers={
        "content-type": "application/json", "authorization": f"VP {vp}", "x-vcgate-subject": "did:web:evil"})
    assert r.status_code == 200, r.text
    assert r.json()["headers"]["x-vcgate-subject"] == w.holder.did
    assert r.json()["body"] == BODY
    again = requests.post(base + CHAT, data=BODY, timeout=5,
                          headers={"content-type": "application/json", "authorization": f"VP {vp}"})
    assert again.status_code == 401 and again.json()["error"] == "nonce_mismatch"


def test_session_mode_and_replayed_proof(server):
    w, base = server
    vp = w.presentation(challenge_nonce(base))
    token_url = base + "/.well-known/vcgate/token"
    r = requests.post(token_url, data={"vp_token": vp}, timeout=5,
                      headers={"DPoP": create_proof(w.holder.key, htm="POST", htu=token_url)})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    token = r.json()["access_token"]
    proof = create_proof(w.holder.key, htm="POST", htu=base + CHAT, access_token=token)
    h = {"authorization": f"DPoP {token}", "DPoP": proof, "content-type": "application/json"}
    r = requests.post(base + CHAT, data=BODY, headers=h, timeout=5)
    assert r.status_code == 200, r.text
    assert r.json()["rule"] == "chat"
    r = requests.post(base + CHAT, data=BODY, headers=h, timeout=5)
    assert r.status_code == 401 and r.json()["error"] == "dpop_replayed"
    assert 'error="invalid_dpop_proof"' in r.headers["www-authenticate"]
