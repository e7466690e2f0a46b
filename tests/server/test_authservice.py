"""The auth service's dialects, in process: Flask test client and the gRPC servicer object.

The real gateways in front of it are exercised in tests/integration (NGINX, Envoy); here each
dialect's contract is pinned down: where the original request is read from, what an allow and
a refusal look like, that client ``x-vcgate-*`` headers are never passed on, metrics, health.
"""

from __future__ import annotations

import json

import pytest

from tests.middleware.helpers import make_world
from vcgate.session import create_proof

pytest.importorskip("flask", reason="pip install -e '.[dev]'")
pytest.importorskip("prometheus_client", reason="pip install -e '.[dev]'")

from vcgate.server import AuthService, create_app

AUD = "https://gw.example"
CHAT = "/v1/chat/completions"
MODELS = "/v1/models"
TOKEN = "/.well-known/vcgate/token"


@pytest.fixture
def world():
    return make_world(AUD)


@pytest.fixture
def service(world):
    return AuthService(world.gate)


@pytest.fixture
def client(service):
    return create_app(service).test_client()


def nginx_headers(method: str, uri: str, **extra: str) -> dict[str, str]:
    return {"X-Original-Method": method, "X-Original-URI": uri, "Host": "gw.example", "X-Forwarded-Proto": "https",
            **extra}


def traefik_headers(method: str, uri: str, **extra: str) -> dict[str, str]:
    return {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri, "X-Forwarded-Host": "gw.example",
            "X-Forwarded-Proto": "https", **extra}


def nonce(client) -> str:
    r = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS))
    assert r.status_code == 401
    return r.get_json()["nonce"]


def session(world, client) -> str:
    """A token from the token endpoint, reached as a gateway would forward it."""
    proof = create_proof(world.holder.key, htm="POST", htu=AUD + TOKEN, clock=world.clock)
    r = client.post(TOKEN, data={"vp_token": world.presentation(nonce(client))},
                    headers={"DPoP": proof, "Host": "gw.example", "X-Forwarded-Proto": "https"})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["access_token"]


def dpop_headers(world, token: str, method: str, path: str) -> dict[str, str]:
    proof = create_proof(world.holder.key, htm=method, htu=AUD + path, access_token=token, clock=world.clock)
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


# --- NGINX auth_request ---------------------------------------------------------------------------


def test_nginx_challenge_is_a_401_with_the_code_in_headers(client):
    r = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS))
    assert r.status_code == 401
    assert r.headers.getlist("WWW-Authenticate")[0].startswith('VP realm="https://gw.example", nonce="')
    assert r.headers["X-Vcgate-Error"] == "credential_required"
    assert r.get_json()["error"] == "credential_required"


def test_nginx_session_call_allows_with_grants_and_reads_the_original_request(world, client):
    token = session(world, client)
    r = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **dpop_headers(world, token, "GET", MODELS)))
    assert r.status_code == 200, r.get_json()
    assert r.headers["X-Vcgate-Subject"] == world.holder.did
    assert r.data == b""
    # The same proof again: refused as a replay (the service keeps the jti).
    r2 = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **dpop_headers(world, token, "GET", MODELS)))
    assert r2.status_code == 200
    same = dpop_headers(world, token, "GET", MODELS)
    assert client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **same)).status_code == 200
    r3 = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **same))
    assert (r3.status_code, r3.headers["X-Vcgate-Error"]) == (401, "dpop_replayed")


def test_nginx_proof_for_another_url_is_refused(world, client):
    """The htu is rebuilt from X-Forwarded-Proto + Host + X-Original-URI: a proof for another path fails."""
    token = session(world, client)
    r = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **dpop_headers(world, token, "GET", "/v1/other")))
    assert r.status_code == 401 and r.headers["X-Vcgate-Error"].startswith("dpop_")


def test_nginx_other_statuses_travel_as_403_with_the_real_status(world, client):
    # A 503 from the gate (status of the credential cannot be checked) must reach NGINX as
    # 403 + X-Vcgate-Status, because auth_request turns anything but 2xx/401/403 into a 500.
    world.gate.nonce_store.issue = lambda ttl: (_ for _ in ()).throw(__import__("vcgate").errors.StoreUnavailableError())
    r = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS))
    assert r.status_code == 403
    assert r.headers["X-Vcgate-Status"] == "503"
    assert r.headers["X-Vcgate-Error"] == "store_unavailable"


def test_nginx_without_original_request_headers_is_a_config_error(client):
    r = client.get("/nginx/auth", headers={"Host": "gw.example"})
    assert r.status_code == 403
    assert (r.headers["X-Vcgate-Status"], r.headers["X-Vcgate-Error"]) == ("400", "request_invalid")
    assert "X-Original-Method" in r.get_json()["message"]


def test_nginx_cannot_decide_model_rules_without_a_body(world, client):
    token = session(world, client)
    r = client.get("/nginx/auth", headers=nginx_headers("POST", CHAT, **dpop_headers(world, token, "POST", CHAT)))
    assert r.status_code == 403
    assert r.headers["X-Vcgate-Error"] == "body_required"


def test_refusal_message_header_is_one_line(client):
    r = client.get("/nginx/auth", headers=nginx_headers("GET", "/v1/models%0d%0aX-Evil:%201"))
    for value in r.headers.getlist("X-Vcgate-Message"):
        assert "\r" not in value and "\n" not in value


# --- Traefik ForwardAuth ----------------------------------------------------------------------------


def test_traefik_refusal_keeps_its_status_and_both_challenges(client):
    r = client.get("/traefik/auth", headers=traefik_headers("GET", MODELS))
    assert r.status_code == 401
    values = r.headers.getlist("WWW-Authenticate")
    assert [v.split(" ", 1)[0] for v in values] == ["VP", "DPoP"]
    assert 'token_endpoint="https://gw.example/.well-known/vcgate/token"' in values[0]


def test_traefik_allow_with_grants(world, client):
    token = session(world, client)
    r = client.get("/traefik/auth", headers=traefik_headers("GET", MODELS, **dpop_headers(world, token, "GET", MODELS)))
    assert r.status_code == 200, r.get_json()
    assert r.headers["X-Vcgate-Subject"] == world.holder.did


def test_traefik_missing_forwarded_headers(client):
    r = client.get("/traefik/auth", headers={"Host": "gw.example"})
    assert (r.status_code, r.get_json()["error"]) == (400, "request_invalid")


# --- Envoy ext_authz HTTP ---------------------------------------------------------------------------


def test_envoy_http_allow_removes_client_grant_headers(world, client):
    token = session(world, client)
    body = json.dumps({"model": "gpt-4o", "messages": []})
    headers = {"Host": "gw.example", "X-Forwarded-Proto": "https", "Content-Type": "application/json",
               "x-vcgate-subject": "did:example:mallory", "x-vcgate-role": "admin",
               **dpop_headers(world, token, "POST", CHAT)}
    r = client.post("/envoy" + CHAT, data=body, headers=headers)
    assert r.status_code == 200, r.get_json()
    assert r.headers["X-Vcgate-Subject"] == world.holder.did  # overwrites the client's
    # The granted names are overwritten by Envoy; the rest must be removed, in both spellings
    # (behind WSGI the service cannot tell x-vcgate-role from x_vcgate_role).
    assert r.headers["x-envoy-auth-headers-to-remove"] == "x_vcgate_subject,x-vcgate-role,x_vcgate_role"


def test_envoy_http_model_from_the_body(world, client):
    token = session(world, client)
    headers = {"Host": "gw.example", "X-Forwarded-Proto": "https", "Content-Type": "application/json"}
    r = client.post("/envoy" + CHAT, data=json.dumps({"model": "llama-3"}),
                    headers={**headers, **dpop_headers(world, token, "POST", CHAT)})
    assert r.status_code == 403
    assert r.get_json()["error"] == "claim_mismatch"
    assert r.headers["X-Vcgate-Error"] == "claim_mismatch"


def test_envoy_http_raw_path_is_what_the_policy_sees(client):
    """Encoded slashes and dot segments are refused, not silently normalised by the router."""
    r = client.get("/envoy/v1/../v1/models", headers={"Host": "gw.example"})
    assert r.status_code == 400 and r.get_json()["error"] == "request_invalid"
    r = client.get("/envoy/v1%2fmodels", headers={"Host": "gw.example"})
    assert r.status_code == 400 and r.get_json()["error"] == "request_invalid"


def test_envoy_http_body_too_large(world, client):
    big = json.dumps({"model": "gpt-4o", "pad": "x" * (1024 * 1024)})
    r = client.post("/envoy" + CHAT, data=big, headers={"Host": "gw.example", "Content-Type": "application/json"})
    assert (r.status_code, r.get_json()["error"]) == (413, "too_large")


# --- token endpoint, metadata, health, metrics, errors ------------------------------------------------


def test_metadata(client):
    r = client.get("/.well-known/oauth-protected-resource")
    assert r.status_code == 200
    assert r.get_json()["resource"] == AUD
    assert r.get_json()["vcgate_token_endpoint"] == AUD + TOKEN


def test_token_endpoint_refuses_get_and_oversize(client):
    r = client.get(TOKEN, headers={"Host": "gw.example"})
    assert (r.status_code, r.get_json()["error"]) == (405, "method_not_allowed")
    r = client.post(TOKEN, data=b"vp_token=" + b"x" * (1024 * 1024 + 10), content_type="application/x-www-form-urlencoded")
    assert (r.status_code, r.get_json()["error"]) == (413, "too_large")


def test_unknown_path_is_json_404(client):
    r = client.get("/nope")
    assert (r.status_code, r.get_json()["error"]) == (404, "not_found")


def test_health_and_readiness(client, world, tmp_path):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.get_json()["status"] == "ready"


class _Mirror:
    registry = "0x" + "ab" * 20

    def __init__(self, healthy: bool) -> None:
        from vcgate.status.mirror import MirrorLag

        self._lag = MirrorLag(seconds=None if not healthy else 0.5, synced_block=10 if healthy else None,
                              head_block=12, blocks_behind=2 if healthy else None, healthy=healthy)

    def lag(self):
        return self._lag


def test_readiness_and_metrics_follow_the_mirror(world):
    sick = create_app(AuthService(world.gate, mirror=_Mirror(False))).test_client()
    r = sick.get("/readyz")
    assert r.status_code == 503 and r.get_json()["checks"]["mirror"]["healthy"] is False
    assert "vcgate_mirror_healthy{registry=\"0x" in sick.get("/metrics").text
    well = create_app(AuthService(world.gate, mirror=_Mirror(True))).test_client()
    assert well.get("/readyz").status_code == 200
    text = well.get("/metrics").text
    assert 'vcgate_mirror_lag_blocks{registry="0x' + "ab" * 20 + '"} 2.0' in text
    assert 'vcgate_mirror_healthy{registry="0x' + "ab" * 20 + '"} 1.0' in text


def test_readiness_fails_when_the_audit_log_is_closed(tmp_path):
    from vcgate.audit import AuditLog

    audit = AuditLog(tmp_path / "audit.jsonl", fsync=False)
    w = make_world(AUD, audit=audit)
    c = create_app(AuthService(w.gate)).test_client()
    assert c.get("/readyz").status_code == 200
    audit.close()
    r = c.get("/readyz")
    assert r.status_code == 503 and r.get_json()["checks"]["audit"] == "unavailable"


def test_metrics_count_decisions_by_adapter_outcome_and_code(world, client):
    client.get("/nginx/auth", headers=nginx_headers("GET", MODELS))
    client.get("/traefik/auth", headers=traefik_headers("GET", MODELS))
    token = session(world, client)  # one more nginx challenge inside, and one token
    client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **dpop_headers(world, token, "GET", MODELS)))
    text = client.get("/metrics").text
    assert 'vcgate_decisions_total{adapter="nginx",code="credential_required",outcome="deny"} 2.0' in text
    assert 'vcgate_decisions_total{adapter="traefik",code="credential_required",outcome="deny"} 1.0' in text
    assert 'vcgate_decisions_total{adapter="token",code="ok",outcome="allow"} 1.0' in text
    assert 'vcgate_decisions_total{adapter="nginx",code="ok",outcome="allow"} 1.0' in text
    assert 'vcgate_check_duration_seconds_count{adapter="nginx"} 3.0' in text
    assert 'vcgate_build_info{audience="https://gw.example"' in text


def test_two_services_do_not_share_metrics(world):
    a = create_app(AuthService(world.gate)).test_client()
    b = create_app(AuthService(world.gate)).test_client()
    a.get("/nginx/auth", headers=nginx_headers("GET", MODELS))
    assert 'adapter="nginx"' not in b.get("/metrics").text.split("vcgate_decisions_total", 1)[-1].split("# HELP")[0]


def test_token_endpoint_ignores_x_forwarded_host(world, client):
    """The DPoP htu is checked against the Host the gateway forwarded, not a client's X-Forwarded-Host."""
    proof = create_proof(world.holder.key, htm="POST", htu="https://evil.example" + TOKEN, clock=world.clock)
    r = client.post(TOKEN, data={"vp_token": world.presentation(nonce(client))},
                    headers={"DPoP": proof, "Host": "gw.example", "X-Forwarded-Host": "evil.example",
                             "X-Forwarded-Proto": "https"})
    assert r.status_code == 401 and r.get_json()["error"].startswith("dpop_")


def test_nginx_refuses_x_vcgate_headers_it_could_not_overwrite(world, client):
    """NGINX cannot strip by prefix: a name that is neither granted by the policy nor one of the
    service's own would pass through, so the request is refused before any crypto."""
    token = session(world, client)
    r = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **{"X-Vcgate-Role": "admin"},
                                                        **dpop_headers(world, token, "GET", MODELS)))
    assert (r.status_code, r.headers["X-Vcgate-Status"], r.headers["X-Vcgate-Error"]) == (403, "400", "request_invalid")
    assert "x-vcgate-role" in r.get_json()["message"]
    # Granted names (overwritten by the snippet) and the service's own names are fine.
    ok = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **{"X-Vcgate-Subject": "did:example:m",
                                                                         "X-Vcgate-Error": "x"},
                                                         **dpop_headers(world, token, "GET", MODELS)))
    assert ok.status_code == 200 and ok.headers["X-Vcgate-Subject"] == world.holder.did


def test_nginx_host_comes_from_host_only(world, client):
    """An X-Original-Host from the client cannot move the origin the DPoP proof is checked against."""
    token = session(world, client)
    proof = create_proof(world.holder.key, htm="GET", htu="https://evil.example" + MODELS, access_token=token,
                         clock=world.clock)
    r = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **{"X-Original-Host": "evil.example",
                                                        "Authorization": f"DPoP {token}", "DPoP": proof}))
    assert r.status_code == 401 and r.headers["X-Vcgate-Error"].startswith("dpop_")


def test_message_header_has_no_quotes_or_backslashes():
    from vcgate.server.authservice import _one_line

    assert _one_line('rule "a\\b"\r\nX: y') == "rule 'a/b'  X: y"


def test_a_failed_policy_reload_shows_in_readyz_and_metrics(tmp_path):
    world = make_world(AUD, tmp_path=tmp_path)
    client = create_app(AuthService(world.gate)).test_client()
    ok = client.get("/readyz").get_json()["checks"]["policy"]
    assert ok["status"] == "ok" and ok["reload_failures"] == 0 and len(ok["sha256"]) == 64
    world.policy_path.write_text(world.policy_path.read_text() + "  - name: x\x01\n")
    world.gate.reload_interval = 0
    r = client.get("/readyz")
    assert r.status_code == 200  # the last good policy still decides: ready, but stale
    stale = r.get_json()["checks"]["policy"]
    assert stale["status"] == "stale" and stale["reload_failures"] == 1 and stale["sha256"] == ok["sha256"]
    assert stale["last_error"] and stale["last_error_at"].endswith("Z")
    text = client.get("/metrics").get_data(as_text=True)
    assert "vcgate_policy_reload_failures_total 1.0" in text and "vcgate_policy_stale 1.0" in text
    assert f'sha256="{ok["sha256"]}"' in text
