"""A delegation chain end to end under a real uvicorn: the example FastAPI model server behind the
ASGI middleware, the OpenAI SDK as a sub-agent presenting user -> agent -> sub-agent (direct
mode). The middleware sees the body, so the narrowed ``models`` decide: the model the agent did
not pass on is refused although the user holds it. (Revocation of a link through the
middleware: tests/middleware/test_delegation.py.)
"""

from __future__ import annotations

import time

import pytest

from tests.integration.test_openai_end_to_end import _free_port, fastapi_server  # noqa: F401  (the server fixture)
from tests.support import make_party

pytestmark = pytest.mark.integration

POLICY = """\
version: 1
audience: {audience}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
delegation: {{max_depth: 2}}
rules:
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


@pytest.fixture
def world(tmp_path):
    from vcgate.credentials import issue_credential

    issuer, user = make_party("EdDSA"), make_party("EdDSA")
    port = _free_port()
    audience = f"http://127.0.0.1:{port}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(audience=audience, issuer=issuer.did))
    now = time.time()
    vc = issue_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, subject=user.did,
                          types=["ModelAccessCredential"], claims={"models": ["llama-3-70b", "gpt-4o"]},
                          valid_from=now - 60, valid_until=now + 3600)
    return {"issuer": issuer, "user": user, "port": port, "audience": audience, "policy": policy, "vc": vc}


def test_sub_agent_chain_through_uvicorn(world, fastapi_server) -> None:  # noqa: F811
    openai = pytest.importorskip("openai", reason="pip install -e '.[dev]'")
    import httpx

    from vcgate.client import Holder

    agent_key, sub_key = make_party("ES256"), make_party("EdDSA")
    user = Holder(world["user"].key, credentials=[world["vc"]])
    agent = Holder(agent_key.key, credentials=user.delegate(subject=agent_key.did, claims={"models": ["llama-3-70b"]}))
    sub = Holder(sub_key.key, credentials=agent.delegate(subject=sub_key.did, valid_for=600))
    with httpx.Client(auth=sub.httpx_auth(mode="direct")) as http:
        client = openai.OpenAI(base_url=world["audience"] + "/v1", api_key="unused", http_client=http, max_retries=0)
        reply = client.chat.completions.create(model="llama-3-70b", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content.startswith(f"[llama-3-70b for {world['user'].did}")
        with pytest.raises(openai.PermissionDeniedError) as denied:
            client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert denied.value.response.json()["error"] == "claim_mismatch"  # the user may, the agent did not pass it on
