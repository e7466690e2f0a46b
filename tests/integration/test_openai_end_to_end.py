"""The whole product, end to end: the OpenAI Python SDK with vcgate's httpx auth, against the
example FastAPI model server behind the ASGI middleware under a real uvicorn on 127.0.0.1.

Allowed model -> 200 (also streamed); a model the credential does not cover -> 403 with the
reason; revoked on a bitstring list -> the next call refused; the Flask example likewise with the
requests auth.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import make_party

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

POLICY = """\
version: 1
audience: {audience}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
defaults:
  status: required
rules:
  - name: health
    match: {{methods: [GET], paths: [/healthz]}}
    public: true
  - name: models
    match: {{methods: [GET], paths: [/v1/models]}}
    require: {{types: [ModelAccessCredential]}}
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


@pytest.fixture
def world(tmp_path):
    """An issuer, an agent with a ModelAccessCredential for llama-3-70b, a policy file."""
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
    return {"issuer": issuer, "agent": agent, "port": port, "audience": audience, "policy": policy, "vc": vc}


@pytest.fixture
def fastapi_server(world):
    pytest.importorskip("fastapi", reason="pip install -e '.[dev]'")
    uvicorn = pytest.importorskip("uvicorn", reason="pip install -e '.[dev]'")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import server_fastapi
    finally:
        sys.path.remove(str(EXAMPLES))
    app = server_fastapi.build(str(world["policy"]))
    config = uvicorn.Config(app, host="127.0.0.1", port=world["port"], log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield app
    server.should_exit = True
    thread.join(timeout=10)


def test_openai_sdk_through_the_gate(world, fastapi_server):
    openai = pytest.importorskip("openai", reason="pip install -e '.[dev]'")
    import httpx

    from vcgate.client import Holder

    holder = Holder(world["agent"].key, credentials=[world["vc"]])
    http = httpx.Client(auth=holder.httpx_auth())
    client = openai.OpenAI(base_url=world["audience"] + "/v1", api_key="unused", http_client=http, max_retries=0)

    reply = client.chat.completions.create(model="llama-3-70b", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content.startswith("[llama-3-70b for did:key:")
    assert world["agent"].did in reply.choices[0].message.content  # the grant header reached the app

    chunks = client.chat.completions.create(
        model="llama-3-70b", messages=[{"role": "user", "content": "stream please"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.endswith("you said: stream please")

    assert [m.id for m in client.models.list().data][:1] == ["llama-3-70b"]

    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.status_code == 403
    assert denied.value.response.json()["error"] == "claim_mismatch"
    assert "gpt-4o" in denied.value.response.json()["message"] + str(denied.value.response.json().get("details"))


def test_without_credentials_the_sdk_gets_the_challenge(world, fastapi_server):
    openai = pytest.importorskip("openai", reason="pip install -e '.[dev]'")

    client = openai.OpenAI(base_url=world["audience"] + "/v1", api_key="sk-anything", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model="llama-3-70b", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 401
    # The SDK's own "Authorization: Bearer sk-..." is not a scheme vcgate takes: token_invalid,
    # with the challenge that tells a vcgate client how to present.
    assert refused.value.response.json()["error"] == "token_invalid"
    assert refused.value.response.headers["www-authenticate"].startswith("VP ")


@pytest.fixture
def flask_server(world):
    from werkzeug.serving import make_server

    sys.path.insert(0, str(EXAMPLES))
    try:
        import server_flask
    finally:
        sys.path.remove(str(EXAMPLES))
    app = server_flask.build(str(world["policy"]))
    server = make_server("127.0.0.1", world["port"], app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app
    server.shutdown()
    thread.join(timeout=10)


def test_flask_example_with_the_requests_auth(world, flask_server):
    import requests

    from vcgate.client import Holder

    holder = Holder(world["agent"].key, credentials=[world["vc"]])
    session = requests.Session()
    session.auth = holder.requests_auth()
    body = {"model": "llama-3-70b", "messages": [{"role": "user", "content": "hello flask"}]}
    first = session.post(world["audience"] + "/v1/chat/completions", json=body, timeout=10)
    assert first.status_code == 200, first.text
    assert first.json()["choices"][0]["message"]["content"].endswith("you said: hello flask")
    again = session.post(world["audience"] + "/v1/chat/completions", json=body, timeout=10)
    assert again.status_code == 200
    spoofed = session.post(
        world["audience"] + "/v1/chat/completions", json=body, headers={"X-Vcgate-Subject": "did:example:admin"}, timeout=10
    )
    assert spoofed.status_code == 200
    assert "did:example:admin" not in spoofed.json()["choices"][0]["message"]["content"]
    denied = session.post(world["audience"] + "/v1/chat/completions", json={**body, "model": "gpt-4o"}, timeout=10)
    assert denied.status_code == 403 and denied.json()["error"] == "claim_mismatch"


def test_the_agent_script(world, fastapi_server, tmp_path, capsys, monkeypatch):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import agent
    finally:
        sys.path.remove(str(EXAMPLES))
    from vcgate.keys import write_key_file

    monkeypatch.setenv("VCGATE_PASSPHRASE", "agent-script-test")
    key = tmp_path / "agent.key"
    write_key_file(key, world["agent"].key, passphrase="agent-script-test", extra={"did": str(world["agent"].did)})
    cred = tmp_path / "agent.vc.jwt"
    cred.write_text(world["vc"])
    base = ["--url", world["audience"], "--key", str(key), "--credential", str(cred)]
    assert agent.main([*base, "--model", "llama-3-70b", "hi there"]) == 0
    assert capsys.readouterr().out.strip().endswith("you said: hi there")
    assert agent.main([*base, "--model", "llama-3-70b", "--stream", "streamed"]) == 0
    assert capsys.readouterr().out.strip().endswith("you said: streamed")
    assert agent.main([*base, "--model", "gpt-4o", "no"]) == 1
    assert "refused: 403 claim_mismatch" in capsys.readouterr().err
