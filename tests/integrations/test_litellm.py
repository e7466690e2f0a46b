"""The LiteLLM adapter's mapping, without a LiteLLM process: Starlette requests in, LiteLLM's
``UserAPIKeyAuth`` / ``ProxyException`` out. The real proxy is tests/integration/test_litellm_proxy.py."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.support import make_party

AUDIENCE = "http://gw.test"

POLICY = """\
version: 1
audience: {audience}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
rules:
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
    grants:
      scopes: [chat]
      headers:
        X-Vcgate-Subject: $subject
"""


@pytest.fixture(scope="module", autouse=True)
def litellm_types():
    with pytest.MonkeyPatch.context() as mp:
        # Importing litellm fetches a price list from GitHub unless told not to.
        mp.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        pytest.importorskip("litellm", reason="pip install -e '.[litellm]'")
        pytest.importorskip("starlette", reason="pip install -e '.[dev]'")
        from litellm.proxy._types import ProxyException, UserAPIKeyAuth

        yield ProxyException, UserAPIKeyAuth


@pytest.fixture
def world(tmp_path):
    from vcgate.credentials import issue_credential
    from vcgate.integrations.litellm import LiteLLMGate
    from vcgate.keys import PrivateKey
    from vcgate.assembly import GateConfig

    issuer, agent = make_party("EdDSA"), make_party("ES256")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(audience=AUDIENCE, issuer=issuer.did))
    now = time.time()
    vc = issue_credential(
        issuer.key, issuer=issuer.did, kid=issuer.kid, subject=agent.did, types=["ModelAccessCredential"],
        claims={"models": ["llama-3-70b"]}, valid_from=now - 60, valid_until=now + 3600,
    )
    built: list[int] = []

    def config():
        built.append(1)
        return GateConfig(policy=str(policy))

    plugin = LiteLLMGate(config=config, gate_options={"gateway_key": PrivateKey.generate("EdDSA"), "max_body": 4096})
    yield {"agent": agent, "vc": vc, "plugin": plugin, "built": built}
    plugin.close()


def _request(method="POST", path="/v1/chat/completions", headers=(), body=b"", scheme="http"):
    from starlette.requests import Request

    raw = [(b"host", b"gw.test"), *[(k.lower().encode(), v.encode()) for k, v in headers]]
    if body and not any(k == b"content-length" for k, _ in raw):
        raw.append((b"content-length", str(len(body)).encode()))
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http", "method": method, "path": path.split("?")[0], "raw_path": path.encode(),
        "query_string": path.partition("?")[2].encode(), "headers": raw, "scheme": scheme,
        "server": ("gw.test", 80), "client": ("127.0.0.1", 5000),
    }
    return Request(scope, receive)


def _chat(model="llama-3-70b", **kw):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = [("content-type", "application/json"), *kw.pop("headers", [])]
    return _request(body=body, headers=headers, **kw)


def run(coro):
    return asyncio.run(coro)


def _vp(world, nonce):
    from vcgate.client import Holder

    return Holder(world["agent"].key, credentials=[world["vc"]]).present(audience=AUDIENCE, nonce=nonce)


def _challenge(world, litellm_types):
    ProxyException, _ = litellm_types
    with pytest.raises(ProxyException) as exc:
        run(world["plugin"].authenticate(_chat(), None))
    return exc.value


def test_view_keeps_raw_path_scheme_and_repeated_headers():
    from vcgate.integrations.litellm import view_of

    request = _request(
        method="POST", path="/v1/chat%2Fcompletions?x=1", headers=[("Authorization", "VP a"), ("authorization", "VP b")],
        scheme="https",
    )
    view = view_of(request)
    assert (view.method, view.path, view.query, view.host, view.scheme) == (
        "POST", "/v1/chat%2Fcompletions", "x=1", "gw.test", "https",
    )
    assert view.get_all("authorization") == ["VP a", "VP b"]
    assert view.url == "https://gw.test/v1/chat%2Fcompletions"


def test_no_credential_raises_the_challenge_as_proxy_exception(world, litellm_types):
    exc = _challenge(world, litellm_types)
    assert exc.code == "401"  # LiteLLM's exception handler answers with this status
    assert exc.type == "credential_required"
    body = exc.to_dict()
    vcgate = body["provider_specific_fields"]["vcgate"]
    assert vcgate["error"] == "credential_required" and vcgate["token_endpoint"] == AUDIENCE + "/.well-known/vcgate/token"
    # Both challenges in one field: ProxyException.headers is a dict.
    challenge = exc.headers["WWW-Authenticate"]
    assert challenge.startswith(f'VP realm="{AUDIENCE}", nonce="{vcgate["nonce"]}"')
    assert ', DPoP algs="' in challenge
    assert exc.headers["Cache-Control"] == "no-store"
    assert "Content-Type" not in exc.headers
    from vcgate.client.holder import parse_challenges

    assert [c.scheme for c in parse_challenges(challenge)] == ["vp", "dpop"]


def test_direct_presentation_is_allowed_as_user_api_key_auth(world, litellm_types):
    _, UserAPIKeyAuth = litellm_types
    nonce = _challenge(world, litellm_types).to_dict()["provider_specific_fields"]["vcgate"]["nonce"]
    auth = run(world["plugin"].authenticate(_chat(headers=[("Authorization", f"VP {_vp(world, nonce)}")]), None))
    assert isinstance(auth, UserAPIKeyAuth)
    did = str(world["agent"].did)
    assert auth.user_id == did
    assert auth.user_role.value == "internal_user"
    assert auth.api_key == f"vcgate:{did}"  # the key id LiteLLM logs: the subject, never the presentation
    meta = auth.metadata["vcgate"]
    assert meta["rule"] == "chat" and meta["mode"] == "direct" and meta["scopes"] == ["chat"]
    assert meta["grant_headers"] == {"X-Vcgate-Subject": did}
    assert world["built"] == [1]  # one gate for the process, however many calls


def test_model_outside_the_credential_is_403_with_the_code(world, litellm_types):
    ProxyException, _ = litellm_types
    nonce = _challenge(world, litellm_types).to_dict()["provider_specific_fields"]["vcgate"]["nonce"]
    with pytest.raises(ProxyException) as exc:
        run(world["plugin"].authenticate(_chat("gpt-4o", headers=[("Authorization", f"VP {_vp(world, nonce)}")]), None))
    assert (exc.value.code, exc.value.type) == ("403", "claim_mismatch")
    assert "WWW-Authenticate" not in exc.value.headers  # a new presentation would not help


def test_the_model_comes_from_the_body_bytes_litellm_parses(world, litellm_types):
    """The gate reads the same bytes LiteLLM parses (Starlette's cached body), under the
    pipeline's strict rules: a body two parsers could read differently is refused."""
    ProxyException, _ = litellm_types
    nonce = _challenge(world, litellm_types).to_dict()["provider_specific_fields"]["vcgate"]["nonce"]
    request = _chat("gpt-4o", headers=[("Authorization", f"VP {_vp(world, nonce)}")])
    with pytest.raises(ProxyException) as exc:
        run(world["plugin"].authenticate(request, None))
    assert exc.value.type == "claim_mismatch"

    nonce = _challenge(world, litellm_types).to_dict()["provider_specific_fields"]["vcgate"]["nonce"]
    twice = b'{"model": "llama-3-70b", "model": "gpt-4o", "messages": []}'  # orjson keeps the last
    request = _request(body=twice, headers=[("content-type", "application/json"),
                                            ("Authorization", f"VP {_vp(world, nonce)}")])
    with pytest.raises(ProxyException) as exc:
        run(world["plugin"].authenticate(request, None))
    assert (exc.value.code, exc.value.type) == ("400", "body_invalid")


def test_declared_body_over_the_cap_is_413(world, litellm_types):
    ProxyException, _ = litellm_types
    request = _chat(headers=[("content-length", str(10**6))])
    with pytest.raises(ProxyException) as exc:
        run(world["plugin"].authenticate(request, None))
    assert (exc.value.code, exc.value.type) == ("413", "too_large")


def test_token_endpoint_issues_a_session_token(world):
    from vcgate.client import Holder

    holder = Holder(world["agent"].key, credentials=[world["vc"]])
    nonce = _challenge_nonce(world)
    url = AUDIENCE + "/.well-known/vcgate/token"
    form = f"vp_token={holder.present(audience=AUDIENCE, nonce=nonce)}".encode()
    request = _request(
        path="/.well-known/vcgate/token", body=form,
        headers=[("content-type", "application/x-www-form-urlencoded"), ("DPoP", holder.proof(htm="POST", htu=url))],
    )
    response = run(world["plugin"].token_endpoint(request))
    assert response.status_code == 200, response.body
    assert json.loads(response.body)["token_type"] == "DPoP"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers.getlist("content-type") == ["application/json"]


def _challenge_nonce(world):
    try:
        run(world["plugin"].authenticate(_chat(), None))
    except Exception as exc:  # noqa: BLE001 -- the ProxyException carrying the challenge
        return exc.to_dict()["provider_specific_fields"]["vcgate"]["nonce"]
    raise AssertionError("no challenge")


@pytest.mark.parametrize(
    ("method", "body", "headers", "status", "code"),
    [
        pytest.param("GET", b"", [], 405, "method_not_allowed", id="get"),
        pytest.param("POST", b"vp_token=x", [("content-length", str(10**6))], 413, "too_large", id="declared-too-large"),
        pytest.param("POST", b"v" * 5000, [], 413, "too_large", id="too-large"),
        pytest.param("POST", b"", [("content-type", "application/x-www-form-urlencoded")], 400, "malformed", id="no-vp"),
    ],
)
def test_token_endpoint_refusals(world, method, body, headers, status, code):
    request = _request(method=method, path="/.well-known/vcgate/token", body=body, headers=headers)
    response = run(world["plugin"].token_endpoint(request))
    assert response.status_code == status
    assert json.loads(response.body)["error"] == code


def test_grant_headers_hook_strips_client_headers_and_adds_grants(litellm_types):
    from vcgate.integrations.litellm import GrantHeaders

    _, UserAPIKeyAuth = litellm_types
    auth = UserAPIKeyAuth(user_id="did:key:z1", metadata={"vcgate": {"grant_headers": {"X-Vcgate-Subject": "did:key:z1"}}})
    data = {
        "model": "m",
        "headers": {"x-vcgate-subject": "evil", "x-trace": "1"},
        "extra_headers": {"X-VCGATE-ROLE": "admin", "x-keep": "2"},
    }
    out = run(GrantHeaders().async_pre_call_hook(user_api_key_dict=auth, cache=None, data=data, call_type="completion"))
    assert out["headers"] == {"x-trace": "1"}
    assert out["extra_headers"] == {"x-keep": "2", "X-Vcgate-Subject": "did:key:z1"}
    # A call LiteLLM authenticated some other way gets no grants, and still no client x-vcgate-*.
    plain = run(GrantHeaders().async_pre_call_hook(
        user_api_key_dict=UserAPIKeyAuth(), cache=None, data={"extra_headers": {"x-vcgate-a": "b"}}, call_type="completion"
    ))
    assert plain["extra_headers"] == {}


def test_install_routes_puts_the_token_endpoint_first_once():
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from vcgate.integrations.litellm import install_routes

    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def catch_all(path: str):
        return {"caught": path}

    async def endpoint(request):
        from starlette.responses import JSONResponse

        return JSONResponse({"token": request.method}, status_code=200)

    assert install_routes(app, endpoint=endpoint) is True
    assert install_routes(app, endpoint=endpoint) is False
    with TestClient(app) as client:
        assert client.post("/.well-known/vcgate/token").json() == {"token": "POST"}
        assert client.get("/.well-known/vcgate/token").json() == {"token": "GET"}
        assert client.get("/other").json() == {"caught": "other"}


def test_importing_outside_the_proxy_installs_nothing():
    import sys

    import vcgate.integrations.litellm  # noqa: F401

    assert "litellm.proxy.proxy_server" not in sys.modules
