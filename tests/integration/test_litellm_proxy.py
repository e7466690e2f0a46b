"""The real LiteLLM proxy (PyPI ``litellm[proxy]``) with vcgate as its ``custom_auth``, in front
of a fake OpenAI upstream on 127.0.0.1 that records what reaches it.

The agent is the OpenAI SDK with vcgate's httpx auth, through LiteLLM: session mode (the token
endpoint the plugin installs on LiteLLM's app) and direct mode. Refusals: a model the credential
does not cover (403 ``claim_mismatch``), no credential (401 challenge), a forged credential, an
untrusted issuer -- each with the vcgate code visible to the client and the upstream not called.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import forge, make_party, require_real

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MASTER_KEY = "sk-" + secrets.token_hex(32)
STARTUP_TIMEOUT = 180.0  # importing LiteLLM's proxy alone takes tens of seconds on a 2-core box

POLICY = """\
version: 1
audience: {audience}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
rules:
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions, /chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
"""

SHIPPED_CONFIG = REPO / "plugins" / "litellm" / "config.yaml"


def _config(upstream: str) -> str:
    """The shipped plugins/litellm/config.yaml with its model list pointed at the fake upstream."""
    import yaml

    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    params = {"api_base": f"{upstream}/v1", "api_key": "sk-upstream-secret"}
    config["model_list"] = [
        {"model_name": name, "litellm_params": {"model": f"openai/{name}", **params}} for name in ("llama-3-70b", "gpt-4o")
    ]
    config.setdefault("litellm_settings", {}).update(num_retries=0, request_timeout=20)
    return yaml.safe_dump(config)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Upstream(BaseHTTPRequestHandler):
    """A fake OpenAI server: answers chat completions, records each call's headers and body."""

    calls: list[dict]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.calls.append({
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "pairs": [(k.lower(), v) for k, v in self.headers.items()],
            "body": body,
        })
        user = body["messages"][-1]["content"] if body.get("messages") else ""
        reply = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"[upstream {body.get('model')}] you said: {user}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def upstream():
    calls: list[dict] = []
    handler = type("Handler", (_Upstream,), {"calls": calls})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "calls": calls}
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from vcgate.credentials import issue_credential

    issuer, stranger, agent = make_party("EdDSA"), make_party("EdDSA"), make_party("ES256")
    port = _free_port()
    audience = f"http://127.0.0.1:{port}"
    tmp = tmp_path_factory.mktemp("litellm")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY.format(audience=audience, issuer=issuer.did))
    now = time.time()

    def vc(by):
        return issue_credential(
            by.key, issuer=by.did, kid=by.kid, subject=agent.did, types=["ModelAccessCredential"],
            claims={"models": ["llama-3-70b"]}, valid_from=now - 60, valid_until=now + 3600,
        )

    return {
        "issuer": issuer, "agent": agent, "port": port, "audience": audience, "policy": policy, "tmp": tmp,
        "vc": vc(issuer), "untrusted_vc": vc(stranger),
    }


def _litellm_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("litellm")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "litellm.proxy.proxy_cli"]


@pytest.fixture(scope="module")
def litellm_proxy(world, upstream):
    # Top-level names only: find_spec("litellm.proxy") would import litellm here (and it fetches
    # a price list from GitHub at import).
    if any(importlib.util.find_spec(name) is None for name in ("litellm", "fastapi", "apscheduler", "openai")):
        require_real("the LiteLLM proxy", "pip install -e '.[litellm,dev]' (litellm[proxy])")
    config = world["tmp"] / "config.yaml"
    config.write_text(_config(upstream["url"]))
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("VCGATE_", "LITELLM_", "OPENAI_", "DATABASE_URL", "REDIS_"))
    }
    env.update(
        VCGATE_POLICY=str(world["policy"]),
        # LiteLLM refuses to start without a strong master key; with custom_auth it opens nothing.
        LITELLM_MASTER_KEY=MASTER_KEY,
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the price list from GitHub at start-up
        LITELLM_TELEMETRY="False",
        LITELLM_LOG="ERROR",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])),
    )
    log_path = world["tmp"] / "litellm.log"
    log = open(log_path, "wb")  # noqa: SIM115 -- the child writes to it until teardown
    proc = subprocess.Popen(
        [*_litellm_cmd(), "--config", str(config), "--host", "127.0.0.1", "--port", str(world["port"])],
        cwd=world["tmp"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait_ready(proc, world["audience"], log_path)
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _wait_ready(proc: subprocess.Popen, base: str, log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"litellm exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
        try:
            # The token endpoint is what the plugin adds: once it answers, custom_auth is loaded.
            r = httpx.get(base + "/.well-known/vcgate/token", timeout=2)
            if r.status_code == 405:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"litellm did not start within {STARTUP_TIMEOUT}s:\n{log_path.read_text(errors='replace')[-4000:]}")


def _client(world, *, mode="session", credentials=None):
    import httpx
    import openai

    from vcgate.client import Holder

    holder = Holder(world["agent"].key, credentials=credentials or [world["vc"]])
    http = httpx.Client(auth=holder.httpx_auth(mode=mode), timeout=30)
    return openai.OpenAI(base_url=world["audience"] + "/v1", api_key="unused", http_client=http, max_retries=0)


def _hello(client, model="llama-3-70b", text="hello"):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])


@pytest.fixture
def calls(upstream):
    upstream["calls"].clear()
    return upstream["calls"]


@pytest.mark.parametrize("mode", ["session", "direct"])
def test_allowed_completion_through_litellm(world, litellm_proxy, calls, mode):
    pytest.importorskip("openai", reason="pip install -e '.[dev]'")
    client = _client(world, mode=mode)
    reply = _hello(client, text=f"hello {mode}")
    assert reply.choices[0].message.content == f"[upstream llama-3-70b] you said: hello {mode}"
    again = _hello(client, text="again")  # session: the token; direct: a new challenge and presentation
    assert again.choices[0].message.content.endswith("you said: again")
    assert len(calls) == 2
    seen = calls[0]["headers"]
    # LiteLLM called the model with its own upstream key, never the agent's credential.
    assert seen["authorization"] == "Bearer sk-upstream-secret"
    assert "dpop" not in seen
    # The grant header reached the model through the plugin's callback.
    assert seen["x-vcgate-subject"] == str(world["agent"].did)


def test_session_mode_used_the_token_endpoint(world, litellm_proxy, calls):
    import httpx

    from vcgate.client import Holder

    holder = Holder(world["agent"].key, credentials=[world["vc"]])
    auth = holder.httpx_auth()
    seen: list[tuple[str, str, int]] = []

    def record(response):
        seen.append((response.request.method, response.request.url.path, response.status_code))

    with httpx.Client(auth=auth, timeout=30, event_hooks={"response": [record]}) as http:
        body = {"model": "llama-3-70b", "messages": [{"role": "user", "content": "hi"}]}
        r = http.post(world["audience"] + "/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
    assert [s for s in seen] == [
        ("POST", "/v1/chat/completions", 401),
        ("POST", "/.well-known/vcgate/token", 200),
        ("POST", "/v1/chat/completions", 200),
    ]
    assert len(calls) == 1


def test_client_x_vcgate_headers_do_not_reach_the_model(world, litellm_proxy, calls):
    client = _client(world)
    reply = client.chat.completions.create(
        model="llama-3-70b", messages=[{"role": "user", "content": "spoof"}],
        extra_headers={"X-Vcgate-Subject": "did:example:admin", "X-Vcgate-Role": "admin"},
        extra_body={"extra_headers": {"x-vcgate-subject": "did:example:admin", "x-vcgate-role": "admin"}},
    )
    assert reply.choices[0].message.content.endswith("you said: spoof")
    vcgate_headers = [(k, v) for k, v in calls[-1]["pairs"] if k.startswith("x-vcgate-")]
    assert vcgate_headers == [("x-vcgate-subject", str(world["agent"].did))]


def test_model_not_covered_is_refused_with_the_code(world, litellm_proxy, calls):
    openai = pytest.importorskip("openai", reason="pip install -e '.[dev]'")
    client = _client(world)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        _hello(client, model="gpt-4o")
    assert denied.value.status_code == 403
    error = denied.value.response.json()["error"]
    assert error["type"] == "claim_mismatch"
    assert error["code"] == "403"
    assert error["provider_specific_fields"]["vcgate"]["error"] == "claim_mismatch"
    assert denied.value.type == "claim_mismatch"  # the SDK exposes it
    assert calls == []


def test_no_credential_gets_the_challenge(world, litellm_proxy, calls):
    import httpx

    body = {"model": "llama-3-70b", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(world["audience"] + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "credential_required"
    vcgate = r.json()["error"]["provider_specific_fields"]["vcgate"]
    assert vcgate["token_endpoint"] == world["audience"] + "/.well-known/vcgate/token"
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith(f'VP realm="{world["audience"]}", nonce="{vcgate["nonce"]}"')
    assert 'DPoP algs="' in challenge
    assert r.headers["cache-control"] == "no-store"
    # The OpenAI SDK's own "Bearer sk-..." is no vcgate credential either.
    r = httpx.post(world["audience"] + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer sk-x"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["type"] == "token_invalid"
    assert r.headers["www-authenticate"].startswith("VP ")
    # Nor is LiteLLM's master key: custom_auth decides every route LiteLLM authenticates.
    r = httpx.post(
        world["audience"] + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    )
    assert r.status_code == 401 and r.json()["error"]["type"] == "token_invalid"
    assert calls == []


def test_forged_credential_is_refused(world, litellm_proxy, calls):
    import httpx

    from vcgate.client import Holder

    body = {"model": "llama-3-70b", "messages": [{"role": "user", "content": "hi"}]}
    url = world["audience"] + "/v1/chat/completions"
    first = httpx.post(url, json=body, timeout=30)
    nonce = first.json()["error"]["provider_specific_fields"]["vcgate"]["nonce"]
    # A credential "issued" by the trusted issuer but signed by the agent's own key.
    header = {"alg": "EdDSA", "typ": "vc+jwt", "kid": world["issuer"].kid}
    payload = json.loads(_payload(world["vc"]))
    forged_vc = forge(header, payload, make_party("EdDSA").key)
    vp = Holder(world["agent"].key, credentials=[forged_vc]).present(audience=world["audience"], nonce=nonce)
    r = httpx.post(url, json=body, headers={"Authorization": f"VP {vp}"}, timeout=30)
    assert r.status_code == 401, r.text
    assert r.json()["error"]["type"] == "signature_invalid"
    assert 'error="signature_invalid"' in r.headers["www-authenticate"]
    assert calls == []


def _payload(jwt: str) -> str:
    import base64

    part = jwt.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


def test_untrusted_issuer_is_refused(world, litellm_proxy, calls):
    openai = pytest.importorskip("openai", reason="pip install -e '.[dev]'")
    # Direct mode: custom_auth refuses the call, in LiteLLM's error shape.
    client = _client(world, mode="direct", credentials=[world["untrusted_vc"]])
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _hello(client)
    assert refused.value.status_code == 403
    assert refused.value.response.json()["error"]["type"] == "issuer_not_trusted"
    # Session mode: the token endpoint refuses the token, in the protocol's own shape.
    client = _client(world, mode="session", credentials=[world["untrusted_vc"]])
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _hello(client)
    assert refused.value.status_code == 403
    assert refused.value.response.request.url.path == "/.well-known/vcgate/token"
    assert refused.value.response.json()["error"] == "issuer_not_trusted"
    assert calls == []
