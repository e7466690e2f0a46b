"""The token endpoint's refusal carries the rule's DCQL query; the holder presents again with it.

Through the ASGI middleware (in-process) and through a real ``vcgate serve`` process. The
rule needs ``clearance``; the agent discloses only ``org`` when not asked (``Holder(disclose=)``).
"""

from __future__ import annotations

import json
import time
from urllib.parse import unquote

import pytest
from starlette.testclient import TestClient

from tests.middleware.apps import starlette_app
from tests.support import NOW, make_party
from vcgate.client import Holder, parse_challenges
from vcgate.credentials.sdjwt import holder_view, issue_sd_jwt_vc, parse_sd_jwt
from vcgate.gate import Gate
from vcgate.keys import b64url_decode
from vcgate.policy import Policy
from vcgate.session import create_proof

AUD = "https://models.example.com"
TOKEN = "/.well-known/vcgate/token"
CHAT = "/v1/chat/completions"
POLICY = """\
version: 1
audience: {audience}
trusted_issuers:
  - did: {issuer}
rules:
  - name: chat
    match: {{methods: [POST], paths: [{chat}]}}
    require:
      types: [ModelAccessCredential]
      claims:
        clearance: {{equals: secret}}
"""
CLAIMS = {"org": "acme", "clearance": "secret", "email": "ada@acme.example"}


def _parties(now: float):
    issuer, agent = make_party("EdDSA"), make_party("ES256")
    vc = issue_sd_jwt_vc(issuer.key, issuer=issuer.did, kid=issuer.kid, vct="ModelAccessCredential", claims=CLAIMS,
                         valid_from=now - 60, valid_until=now + 86400, holder_kid=agent.kid)
    return issuer, agent, vc


def _challenge_query(headers) -> tuple[str, dict]:
    vp = next(c for c in parse_challenges(headers.get_list("www-authenticate")) if c.scheme == "vp")
    return vp.get("nonce"), json.loads(b64url_decode(vp.get("dcql")))


def _disclosed(vp_token: str) -> dict:
    return holder_view(parse_sd_jwt(vp_token).presented)[1]


def _gate(issuer, *, audience: str = AUD) -> Gate:
    return Gate(policy=Policy.from_yaml(POLICY.format(audience=audience, issuer=issuer.did, chat=CHAT)),
                clock=lambda: NOW, gateway_key=make_party().key)


@pytest.fixture
def asgi():
    issuer, agent, vc = _parties(NOW)
    return _gate(issuer), issuer, agent, vc


def test_token_endpoint_refusal_carries_the_challenge_query_and_a_nonce(asgi):
    gate, _, agent, vc = asgi
    holder = Holder(agent.key, credentials=[vc], clock=lambda: NOW, disclose=[["org"]])
    with TestClient(starlette_app(gate), base_url=AUD) as c:
        challenge = c.post(CHAT, json={})
        assert challenge.status_code == 401
        nonce, asked = _challenge_query(challenge.headers)
        proof = create_proof(agent.key, htm="POST", htu=AUD + TOKEN, clock=lambda: NOW)
        r = c.post(TOKEN, data={"vp_token": holder.present(audience=AUD, nonce=nonce)}, headers={"DPoP": proof})
        body = r.json()
        assert (r.status_code, body["error"]) == (403, "claim_not_disclosed"), body
        assert body["dcql_query"] == asked == {"credentials": [{
            "id": "vcgate", "format": "dc+sd-jwt", "meta": {"vct_values": ["ModelAccessCredential"]},
            "claims": [{"path": ["clearance"]}]}]}
        assert body["nonce"] and body["nonce"] != nonce
        again = holder.present(audience=AUD, nonce=body["nonce"], dcql=body["dcql_query"])
        assert _disclosed(again) == {"clearance": "secret"}
        proof = create_proof(agent.key, htm="POST", htu=AUD + TOKEN, clock=lambda: NOW)
        r = c.post(TOKEN, data={"vp_token": again}, headers={"DPoP": proof})
        assert r.status_code == 200 and r.json()["token_type"] == "DPoP", r.text


def test_a_refusal_no_other_presentation_can_fix_carries_no_query(asgi):
    gate, _, agent, _ = asgi
    stranger = make_party("EdDSA")
    foreign = issue_sd_jwt_vc(stranger.key, issuer=stranger.did, kid=stranger.kid, vct="ModelAccessCredential",
                              claims=CLAIMS, valid_from=NOW - 60, holder_kid=agent.kid)
    holder = Holder(agent.key, credentials=[foreign], clock=lambda: NOW)
    with TestClient(starlette_app(gate), base_url=AUD) as c:
        nonce, _ = _challenge_query(c.post(CHAT, json={}).headers)
        proof = create_proof(agent.key, htm="POST", htu=AUD + TOKEN, clock=lambda: NOW)
        body = c.post(TOKEN, data={"vp_token": holder.present(audience=AUD, nonce=nonce)}, headers={"DPoP": proof}).json()
    assert body["error"] == "issuer_not_trusted" and "dcql_query" not in body and "nonce" not in body


def test_the_client_presents_again_with_the_token_endpoints_query(asgi):
    gate, issuer, agent, vc = asgi
    holder = Holder(agent.key, credentials=[vc], clock=lambda: NOW, disclose=[["org"]])
    seen: list[tuple[str, int, str | None, dict]] = []

    def record(response) -> None:
        response.read()
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        form = response.request.content.decode()
        sent = _disclosed(unquote(form.split("vp_token=", 1)[1])) if "vp_token=" in form else {}
        seen.append((response.request.url.path, response.status_code, body.get("error"), sent))

    auth = holder.httpx2_auth()
    with TestClient(starlette_app(gate), base_url=AUD) as c:
        assert c.post(CHAT, json={}, auth=auth).status_code == 200
    # The gateway restarts without a key file: the agent's token no longer verifies, and that
    # challenge names no rule (so no query): the holder falls back to disclosing org.
    with TestClient(starlette_app(_gate(issuer)), base_url=AUD) as c:
        c.event_hooks = {"request": [], "response": [record]}
        r = c.post(CHAT, json={}, auth=auth)
        assert r.status_code == 200, r.text
    assert [(p, s, e) for p, s, e, _ in seen] == [
        (CHAT, 401, "token_invalid"),
        (TOKEN, 403, "claim_not_disclosed"),  # org only: the query was not known yet
        (TOKEN, 200, None),                   # presented again as the refusal asked
        (CHAT, 200, None),
    ]
    assert seen[1][3] == {"org": "acme"} and seen[2][3] == {"clearance": "secret"}


@pytest.mark.integration
def test_through_vcgate_serve(tmp_path):
    import requests

    from tests.integration.gateway_support import AuthService, free_port

    port = free_port()
    audience = f"http://127.0.0.1:{port}"
    now = time.time()
    issuer, agent, vc = _parties(now)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(audience=audience, issuer=issuer.did, chat=CHAT))
    holder = Holder(agent.key, credentials=[vc], disclose=[["org"]])
    svc = AuthService(policy)
    svc.port, svc.url = port, audience
    svc.cmd[svc.cmd.index("--port") + 1] = str(port)
    with svc:
        challenge = requests.get(audience + "/nginx/auth", headers={"X-Original-Method": "POST", "X-Original-URI": CHAT},
                                 timeout=10)
        assert challenge.status_code == 401
        vp = next(c for c in parse_challenges(challenge.headers["WWW-Authenticate"]) if c.scheme == "vp")
        asked = json.loads(b64url_decode(vp.get("dcql")))

        def token(vp_token: str) -> requests.Response:
            proof = create_proof(agent.key, htm="POST", htu=audience + TOKEN)
            return requests.post(audience + TOKEN, data={"vp_token": vp_token}, headers={"DPoP": proof}, timeout=10)

        r = token(holder.present(audience=audience, nonce=vp.get("nonce")))
        body = r.json()
        assert (r.status_code, body["error"], body["dcql_query"]) == (403, "claim_not_disclosed", asked), body
        r = token(holder.present(audience=audience, nonce=body["nonce"], dcql=body["dcql_query"]))
        assert r.status_code == 200 and r.json()["token_type"] == "DPoP", r.text
