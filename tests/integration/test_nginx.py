"""The shipped NGINX snippet (plugins/nginx/vcgate.conf) in a real nginx, with a real ``vcgate serve``.

One nginx, one auth service and one echo upstream per module. The snippet is rendered with
only its three addresses changed (:func:`render_nginx_site`), so what is tested is what ships.
The policy is headers-only (auth_request has no body: a rule on the OpenAI ``model`` would be
refused ``body_required``).

The 503 case is produced honestly: the service runs without a status source (no ``--rpc``, no
``--status-lists``) and the policy's default is ``status: required``, so a credential that
carries a status entry cannot be decided now -> ``status_unavailable``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from tests.integration.gateway_support import (
    NGINX_HINT,
    AuthService,
    EchoUpstream,
    GatewayWorld,
    Nginx,
    free_port,
    gateway_world,
    nginx_binary,
    render_nginx_site,
)
from tests.support import require_real

pytestmark = pytest.mark.integration

MODELS = "/v1/models"
CHAT = "/v1/chat/completions"
TOKEN_PATH = "/.well-known/vcgate/token"
SPOOF = "did:web:evil.example"


@dataclass
class Stack:
    world: GatewayWorld
    base: str
    upstream: EchoUpstream
    nginx: Nginx
    status_vc: str


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The stack with ``vcgate serve`` as one process, and as two workers sharing Redis."""
    if nginx_binary() is None:
        require_real("nginx with the auth_request module", NGINX_HINT)
    from vcgate.credentials import issue_credential

    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    world = gateway_world(tmp, base, headers_only=True)
    now = time.time()
    status_vc = issue_credential(
        world.issuer.key, issuer=world.issuer.did, kid=world.issuer.kid, subject=world.agent.did,
        types=["ModelAccessCredential"], claims={"models": ["llama-3-70b"]},
        valid_from=now - 60, valid_until=now + 3600,
        status={"id": "https://status.example/lists/1#5", "type": "BitstringStatusListEntry",
                "statusPurpose": "revocation", "statusListIndex": "5",
                "statusListCredential": "https://status.example/lists/1"},
    )
    redis = None
    args: tuple[str, ...] = ("--workers", "1")
    if request.param > 1:
        from tests.integration.test_redis_store import _start_redis

        redis = _start_redis(tmp)
        args = ("--workers", str(request.param), "--redis", redis.url)
    try:
        yield from _stack(tmp, port, base, world, status_vc, args)
    finally:
        if redis is not None:
            redis.stop()


def _stack(tmp: Path, port: int, base: str, world: Any, status_vc: str, args: tuple[str, ...]) -> Iterator[Stack]:
    with EchoUpstream() as upstream, AuthService(world.policy, args=args) as service:
        site = render_nginx_site(listen_port=port, vcgate_port=service.port, model_port=upstream.port)
        with Nginx(tmp / "nginx", site, ports=(port,)) as nginx:
            yield Stack(world, base, upstream, nginx, status_vc)


@pytest.fixture
def s(stack: Stack) -> Stack:
    stack.upstream.clear()
    return stack


def reached(s: Stack) -> list[str]:
    return [seen.path for seen in s.upstream.seen]


def assert_refusal(r: requests.Response | httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = json.loads(r.content)
    assert body["error"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert r.headers["x-vcgate-error"] == code
    assert r.headers["cache-control"] == "no-store"
    return body


# --- allowed ---------------------------------------------------------------------------------------


def test_direct_mode_reaches_upstream_with_the_grants_and_not_the_clients(s: Stack) -> None:
    session = requests.Session()
    session.auth = s.world.holder().requests_auth(mode="direct")
    r = session.get(s.base + MODELS, timeout=10, headers={
        "X-Vcgate-Subject": SPOOF, "X-Vcgate-Issuer": SPOOF, "X-Vcgate-Decision-Subject": SPOOF})
    assert r.status_code == 200, r.text
    assert reached(s) == [MODELS]
    seen = s.upstream.last()
    assert seen.headers["x-vcgate-subject"] == [s.world.agent.did]
    assert seen.headers["x-vcgate-issuer"] == [s.world.issuer.did]
    assert "x-vcgate-decision-subject" not in seen.headers
    # The credential stops at the gateway; the original Host (with its port) goes on.
    assert "authorization" not in seen.headers and "dpop" not in seen.headers
    assert seen.header("host") == s.base.removeprefix("http://")


def test_aliases_of_the_grant_headers_never_reach_upstream(s: Stack) -> None:
    """X_Vcgate_Subject / X.Vcgate.Subject read as X-Vcgate-Subject in WSGI/CGI backends.

    nginx drops header names with '_' or '.' (ignore_invalid_headers on, underscores_in_headers
    off, its defaults): keep them so.
    """
    session = requests.Session()
    session.auth = s.world.holder().requests_auth(mode="direct")
    r = session.get(s.base + MODELS, timeout=10, headers={"X_Vcgate_Subject": SPOOF, "X.Vcgate.Subject": SPOOF})
    assert r.status_code == 200, r.text
    seen = s.upstream.last()
    aliases = {k: v for k, v in seen.headers.items() if re.sub(r"[^a-z0-9]", "-", k) == "x-vcgate-subject"}
    assert aliases == {"x-vcgate-subject": [s.world.agent.did]}


def test_public_route_sends_no_grant_and_drops_the_clients(s: Stack) -> None:
    # No grant on a public rule: the variables are empty, and an empty proxy_set_header is not sent.
    r = requests.get(s.base + "/healthz", timeout=10, headers={"X-Vcgate-Subject": SPOOF, "X-Vcgate-Issuer": SPOOF})
    assert r.status_code == 200, r.text
    seen = s.upstream.last()
    assert seen.path == "/healthz"
    assert "x-vcgate-subject" not in seen.headers and "x-vcgate-issuer" not in seen.headers


# --- refused -----------------------------------------------------------------------------------------


def test_no_credential_is_a_401_challenge_with_a_json_body(s: Stack) -> None:
    r = requests.get(s.base + MODELS, timeout=10, headers={"X-Vcgate-Subject": SPOOF})
    body = assert_refusal(r, 401, "credential_required")
    challenges = r.raw.headers.getlist("WWW-Authenticate")
    assert len(challenges) == 1, challenges  # once, not duplicated by the error_page
    assert challenges[0].startswith("VP ")
    assert f'realm="{s.base}"' in challenges[0]
    assert 'nonce="' in challenges[0]
    assert f'token_endpoint="{s.base}{TOKEN_PATH}"' in challenges[0]
    assert body["message"]
    # the JSON body names the nonce and the token endpoint, as the middleware's 401 does
    assert body["token_endpoint"] == f"{s.base}{TOKEN_PATH}"
    assert body["nonce"] and f'nonce="{body["nonce"]}"' in challenges[0]
    assert reached(s) == []


def test_untrusted_issuer_is_403_and_never_reaches_upstream(s: Stack) -> None:
    session = requests.Session()
    session.auth = s.world.holder(credentials=[s.world.untrusted_vc]).requests_auth(mode="direct")
    r = session.get(s.base + MODELS, timeout=10, headers={"X-Vcgate-Subject": s.world.agent.did})
    assert_refusal(r, 403, "issuer_not_trusted")
    assert "www-authenticate" not in r.headers
    assert reached(s) == []


def test_unknown_status_comes_back_as_the_real_503(s: Stack) -> None:
    session = requests.Session()
    session.auth = s.world.holder(credentials=[s.status_vc]).requests_auth(mode="direct")
    r = session.get(s.base + MODELS, timeout=10)
    assert_refusal(r, 503, "status_unavailable")  # sent by the service as 403 + X-Vcgate-Status: 503
    assert "x-vcgate-status" not in r.headers
    assert reached(s) == []


def test_ambiguous_path_comes_back_as_the_real_400(s: Stack) -> None:
    r = requests.get(s.base + "/v1/x/%2e%2e/models", timeout=10)
    assert_refusal(r, 400, "request_invalid")
    assert reached(s) == []


def test_client_cannot_rewrite_the_request_line_the_service_sees(s: Stack) -> None:
    r = requests.get(s.base + MODELS, timeout=10, headers={
        "X-Original-URI": "/healthz", "X-Original-Method": "GET", "X-Original-Host": "evil.example"})
    assert_refusal(r, 401, "credential_required")
    assert f'realm="{s.base}"' in r.headers["www-authenticate"]
    assert reached(s) == []


# --- session mode ------------------------------------------------------------------------------------


def test_session_mode_through_nginx_with_the_httpx_auth(s: Stack) -> None:
    sent: list[httpx.Request] = []
    client = httpx.Client(auth=s.world.holder().httpx_auth(), timeout=10,
                          event_hooks={"request": [sent.append]})
    with client:
        for _ in range(3):
            r = client.get(s.base + MODELS, headers={"X-Vcgate-Subject": SPOOF})
            assert r.status_code == 200, r.text
        chat = json.dumps({"model": "llama-3-70b", "messages": [{"role": "user", "content": "hi"}]})
        r = client.post(s.base + CHAT, content=chat, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text

    # challenge -> token endpoint (through nginx) -> DPoP calls, one presentation for all of them
    assert [(q.method, q.url.path) for q in sent] == [
        ("GET", MODELS), ("POST", TOKEN_PATH), ("GET", MODELS), ("GET", MODELS), ("GET", MODELS), ("POST", CHAT)]
    dpop_calls = [q for q in sent if q.url.path != TOKEN_PATH][1:]
    assert all(q.headers["authorization"].startswith("DPoP ") for q in dpop_calls)
    assert len({q.headers["authorization"] for q in dpop_calls}) == 1  # the session is reused
    assert len({q.headers["dpop"] for q in dpop_calls}) == len(dpop_calls)

    assert reached(s) == [MODELS, MODELS, MODELS, CHAT]
    for seen in s.upstream.seen:
        assert seen.headers["x-vcgate-subject"] == [s.world.agent.did]
    assert s.upstream.last().body == chat.encode()  # auth_request leaves the body to the upstream

    # The same proof again: refused as a replay, and nothing more reaches the upstream.
    s.upstream.clear()
    last = dpop_calls[-2]
    r = requests.get(s.base + MODELS, timeout=10,
                     headers={"Authorization": last.headers["authorization"], "DPoP": last.headers["dpop"]})
    assert_refusal(r, 401, "dpop_replayed")
    assert r.headers["www-authenticate"].startswith("VP ")
    assert reached(s) == []


def test_session_mode_with_the_requests_auth(s: Stack) -> None:
    session = requests.Session()
    session.auth = s.world.holder().requests_auth()
    for _ in range(2):
        r = session.get(s.base + MODELS, timeout=10)
        assert r.status_code == 200, r.text
    assert reached(s) == [MODELS, MODELS]
    assert s.upstream.last().headers["x-vcgate-subject"] == [s.world.agent.did]


def test_client_cannot_move_the_host_a_proof_is_checked_against(s: Stack) -> None:
    """A proof made for another origin fails here even if the client names that origin.

    The service takes X-Original-Host (subrequest) and X-Forwarded-Host (token endpoint)
    before Host; the snippet pins both to $http_host.
    """
    sent: list[httpx.Request] = []
    holder = s.world.holder()
    with httpx.Client(auth=holder.httpx_auth(), timeout=10, event_hooks={"request": [sent.append]}) as client:
        assert client.get(s.base + MODELS).status_code == 200
    token = sent[-1].headers["authorization"].removeprefix("DPoP ")
    elsewhere = "evil.example:8443"
    proof = holder.proof(htm="GET", htu=f"http://{elsewhere}{MODELS}", access_token=token)
    s.upstream.clear()
    r = requests.get(s.base + MODELS, timeout=10, headers={
        "Authorization": f"DPoP {token}", "DPoP": proof,
        "X-Original-Host": elsewhere, "X-Forwarded-Host": elsewhere})
    assert r.status_code == 401, r.text
    assert reached(s) == []


def test_metadata_and_token_endpoint_are_served_unguarded(s: Stack) -> None:
    r = requests.get(s.base + "/.well-known/oauth-protected-resource", timeout=10,
                     headers={"X-Forwarded-Host": "evil.example"})
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["resource"] == s.base
    assert meta["vcgate_token_endpoint"] == s.base + TOKEN_PATH
    r = requests.post(s.base + TOKEN_PATH, data={}, timeout=10)
    assert r.status_code != 200 and r.json()["error"]  # the auth service's own answer, not an auth_request
    assert reached(s) == []
