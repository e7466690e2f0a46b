"""Envoy ext_authz over gRPC: the ``Check`` RPC through a real gRPC server on 127.0.0.1.

The messages are built exactly as Envoy fills them (``attributes.request.http``: method, path
with query, host, scheme, lower-case ``headers`` map or raw ``header_map``, body); Envoy itself
in front of this is tests/integration/test_envoy.py.
"""

from __future__ import annotations

import json

import pytest

from tests.middleware.helpers import make_world
from vcgate.session import create_proof

grpc = pytest.importorskip("grpc", reason="pip install -e '.[dev]'")
pytest.importorskip("envoy.service.auth.v3.external_auth_pb2", reason="pip install -e '.[dev]' (xds-protos)")

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import (
    attribute_context_pb2,
    external_auth_pb2,
    external_auth_pb2_grpc,
)
from google.rpc import code_pb2

from vcgate import RequestView
from vcgate.server import AuthService
from vcgate.server.grpc_authz import serve_grpc

AUD = "https://gw.example"
CHAT = "/v1/chat/completions"
MODELS = "/v1/models"
TOKEN = "/.well-known/vcgate/token"


@pytest.fixture
def world():
    return make_world(AUD)


@pytest.fixture
def stub(world):
    service = AuthService(world.gate)
    server, port = serve_grpc(service, host="127.0.0.1", port=0, workers=2)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield external_auth_pb2_grpc.AuthorizationStub(channel), service
    channel.close()
    server.stop(grace=None)


def check_request(method: str, path: str, headers: dict[str, str], *, body: bytes = b"", raw: bool = False):
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method=method, path=path, host="gw.example", scheme="https", raw_body=body, size=len(body) or -1,
    )
    if raw:
        http.header_map.headers.extend(base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items())
    else:
        for k, v in headers.items():
            http.headers[k.lower()] = v
    req = external_auth_pb2.CheckRequest()
    req.attributes.request.http.CopyFrom(http)
    return req


def token_for(world, service) -> str:
    d = world.gate.check(RequestView(method="GET", path=MODELS, host="gw.example", scheme="https"))
    proof = create_proof(world.holder.key, htm="POST", htu=AUD + TOKEN, clock=world.clock)
    view = RequestView(method="POST", path=TOKEN, host="gw.example", scheme="https",
                                             headers=[("dpop", proof)])
    result = service.handle(view, "token", f"vp_token={world.presentation(d.body['nonce'])}".encode(), endpoints=True)
    status, body = result.status, json.loads(result.body)
    assert status == 200, body
    return body["access_token"]


def dpop(world, token: str, method: str, path: str) -> dict[str, str]:
    return {"authorization": f"DPoP {token}",
            "dpop": create_proof(world.holder.key, htm=method, htu=AUD + path, access_token=token, clock=world.clock)}


def headers_of(options) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for o in options:
        out.setdefault(o.header.key.lower(), []).append(o.header.value)
    return out


def test_challenge_is_a_denied_401_with_body_and_both_challenges(stub):
    client, _ = stub
    resp = client.Check(check_request("GET", MODELS, {}), timeout=5)
    assert resp.status.code == code_pb2.UNAUTHENTICATED
    assert resp.denied_response.status.code == 401
    h = headers_of(resp.denied_response.headers)
    assert [v.split(" ", 1)[0] for v in h["www-authenticate"]] == ["VP", "DPoP"]
    assert h["x-vcgate-error"] == ["credential_required"]
    assert json.loads(resp.denied_response.body)["error"] == "credential_required"


@pytest.mark.parametrize("raw", [False, True], ids=["headers-map", "raw-header-map"])
def test_allowed_call_sets_grants_and_removes_client_grant_headers(world, stub, raw):
    client, service = stub
    token = token_for(world, service)
    headers = {**dpop(world, token, "POST", CHAT), "content-type": "application/json",
               "x-vcgate-subject": "did:example:mallory", "x-vcgate-tier": "gold"}
    body = json.dumps({"model": "gpt-4o"}).encode()
    resp = client.Check(check_request("POST", CHAT, headers, body=body, raw=raw), timeout=5)
    assert resp.status.code == code_pb2.OK, resp
    ok = resp.ok_response
    h = headers_of(ok.headers)
    assert h["x-vcgate-subject"] == [world.holder.did]
    assert all(o.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD for o in ok.headers)
    assert list(ok.headers_to_remove) == ["x-vcgate-tier"]


def test_model_rule_uses_the_body(world, stub):
    client, service = stub
    token = token_for(world, service)
    headers = {**dpop(world, token, "POST", CHAT), "content-type": "application/json"}
    resp = client.Check(check_request("POST", CHAT, headers, body=json.dumps({"model": "llama-3"}).encode()), timeout=5)
    assert resp.status.code == code_pb2.PERMISSION_DENIED
    assert resp.denied_response.status.code == 403
    assert json.loads(resp.denied_response.body)["error"] == "claim_mismatch"
    # Without the body (with_request_body off) the model is unknown: refused, not guessed.
    headers = {**dpop(world, token, "POST", CHAT), "content-type": "application/json"}
    resp = client.Check(check_request("POST", CHAT, headers), timeout=5)
    assert json.loads(resp.denied_response.body)["error"] == "body_required"


def test_query_is_not_part_of_the_htu(world, stub):
    client, service = stub
    token = token_for(world, service)
    resp = client.Check(check_request("GET", MODELS + "?limit=5", dpop(world, token, "GET", MODELS)), timeout=5)
    assert resp.status.code == code_pb2.OK, resp


def test_metrics_count_grpc_decisions(world, stub):
    client, service = stub
    client.Check(check_request("GET", MODELS, {}), timeout=5)
    assert 'vcgate_decisions_total{adapter="envoy_grpc",code="credential_required",outcome="deny"} 1.0' in (
        service.metrics.render().decode()
    )


def test_refusal_headers_are_appended_so_both_challenges_survive(stub):
    client, _ = stub
    resp = client.Check(check_request("GET", MODELS, {}), timeout=5)
    www = [o for o in resp.denied_response.headers if o.header.key.lower() == "www-authenticate"]
    assert len(www) == 2
    assert all(o.append_action == base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD for o in www)
