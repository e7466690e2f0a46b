"""End to end with an SD-JWT VC: the OpenAI SDK agent discloses only the claim the policy needs.

The example FastAPI model server behind the ASGI middleware, under real uvicorn on 127.0.0.1,
in session mode (the token endpoint binds the DPoP session to the credential's cnf key). The
gate's challenge asks (DCQL) for what the chat rule needs; the agent, configured to disclose
everything when not asked, discloses only `models` and is served -- `org` and the e-mail never
leave it. An agent whose credential lacks `models` is refused with claim_not_disclosed.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.test_openai_end_to_end import POLICY, _free_port, fastapi_server  # noqa: F401 -- fixture
from tests.support import make_party

pytestmark = pytest.mark.integration

CLAIMS = {"models": ["llama-3-70b"], "org": "acme", "email": "ada@acme.example"}


@pytest.fixture
def world(tmp_path):
    return _world(tmp_path, CLAIMS)


def _world(tmp_path, claims):
    from vcgate.credentials.sdjwt import issue_sd_jwt_vc

    issuer, agent = make_party("EdDSA"), make_party("ES256")
    port = _free_port()
    audience = f"http://127.0.0.1:{port}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(audience=audience, issuer=issuer.did))
    now = time.time()
    sd_jwt = issue_sd_jwt_vc(issuer.key, issuer=issuer.did, kid=issuer.kid, vct="ModelAccessCredential", claims=claims,
                             valid_from=now - 60, valid_until=now + 3600, holder_kid=agent.kid)
    return {"agent": agent, "port": port, "audience": audience, "policy": policy, "vc": sd_jwt}


def _client(world, disclose):
    openai = pytest.importorskip("openai", reason="pip install -e '.[dev]'")
    import httpx

    from vcgate.client import Holder

    sent: list[str] = []
    holder = Holder(world["agent"].key, credentials=[world["vc"]], disclose=disclose)
    http = httpx.Client(auth=holder.httpx_auth(), event_hooks={"request": [lambda r: sent.append(r.content.decode())]})
    return openai, openai.OpenAI(base_url=world["audience"] + "/v1", api_key="unused", http_client=http, max_retries=0), sent


def test_allowed_with_only_the_needed_claim_disclosed(world, fastapi_server):  # noqa: F811
    _, client, sent = _client(world, None)  # no default restriction: the gate's DCQL query decides
    reply = client.chat.completions.create(model="llama-3-70b", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content.startswith("[llama-3-70b for did:key:")
    assert world["agent"].did in reply.choices[0].message.content  # $subject: the holder bound by cnf
    token_requests = [body for body in sent if "vp_token" in body]
    assert len(token_requests) == 1
    from urllib.parse import parse_qs

    from vcgate.credentials.sdjwt import holder_view, parse_sd_jwt

    presented = parse_qs(token_requests[0])["vp_token"][0]
    parts = parse_sd_jwt(presented)
    assert holder_view(parts.presented)[1] == {"models": ["llama-3-70b"]}  # org and e-mail never left the agent


@pytest.fixture
def world_without_models(tmp_path):
    return _world(tmp_path, {"org": "acme", "email": "ada@acme.example"})


def test_refused_when_the_needed_claim_is_missing(world_without_models, fastapi_without_models):
    openai, client, _ = _client(world_without_models, [["org"]])
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client.chat.completions.create(model="llama-3-70b", messages=[{"role": "user", "content": "hello"}])
    body = exc.value.response.json()
    assert body["error"] == "claim_not_disclosed" and "models" in body["message"]


@pytest.fixture
def fastapi_without_models(world_without_models):
    yield from fastapi_server.__wrapped__(world_without_models)
