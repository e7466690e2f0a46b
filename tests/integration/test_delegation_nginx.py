"""A delegation chain through real NGINX (the shipped auth_request snippet) and ``vcgate serve``.

The OpenAI Python SDK is the sub-agent: its ``Holder`` holds the chain user -> agent ->
sub-agent and presents it whole in direct mode. The upstream sees who acts for whom; a chain
that widens a hop or is deeper than the policy allows never reaches it. The site is the shipped
snippet plus the grant lines ``vcgate policy nginx-snippet`` prints for the extra header.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.chains import raw_link
from tests.integration.gateway_support import (
    NGINX_HINT,
    AuthService,
    EchoUpstream,
    Nginx,
    free_port,
    nginx_binary,
    render_nginx_site,
)
from tests.support import Party, make_party, require_real
from vcgate.cli.policy import nginx_grant_lines
from vcgate.client import Holder
from vcgate.credentials import issue_credential

pytestmark = pytest.mark.integration

POLICY = """\
version: 1
audience: {audience}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
delegation:
  max_depth: 2
  types: [ModelAccessCredential]
rules:
  - name: models
    match: {{methods: [GET], paths: [/v1/models]}}
    require: {{types: [ModelAccessCredential]}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
        X-Vcgate-Actors: $actors
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require: {{types: [ModelAccessCredential]}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
        X-Vcgate-Actors: $actors
"""


@dataclass
class Stack:
    base: str
    upstream: EchoUpstream
    org: Party
    user: Party
    agent: Party
    sub: Party
    root: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if nginx_binary() is None:
        require_real("nginx with the auth_request module", NGINX_HINT)
    tmp = tmp_path_factory.mktemp("nginx-delegation")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    org, user, agent, sub = (make_party() for _ in range(4))
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY.format(audience=base, issuer=org.did))
    now = time.time()
    root = issue_credential(org.key, issuer=org.did, kid=org.kid, subject=user.did, types=["ModelAccessCredential"],
                            claims={"models": ["llama-3-70b", "gpt-4o"], "limits": {"rpm": 100}},
                            valid_from=now - 60, valid_until=now + 3600)
    with EchoUpstream() as upstream, AuthService(policy) as service:
        site = render_nginx_site(listen_port=port, vcgate_port=service.port, model_port=upstream.port)
        set_line, put_line = nginx_grant_lines(("x-vcgate-actors",))
        anchor_set = "auth_request_set $vcgate_subject $upstream_http_x_vcgate_subject;"
        anchor_put = "proxy_set_header X-Vcgate-Subject $vcgate_subject;"
        assert anchor_set in site and anchor_put in site
        site = site.replace(anchor_set, f"{anchor_set}\n        {set_line}").replace(anchor_put, f"{anchor_put}\n        {put_line}")
        with Nginx(tmp / "nginx", site, ports=(port,)):
            yield Stack(base, upstream, org, user, agent, sub, root)


@pytest.fixture
def s(stack: Stack) -> Stack:
    stack.upstream.clear()
    return stack


def sub_agent(s: Stack) -> Holder:
    user = Holder(s.user.key, credentials=[s.root])
    agent = Holder(s.agent.key, credentials=user.delegate(subject=s.agent.did, claims={"models": ["llama-3-70b"]}))
    return Holder(s.sub.key, credentials=agent.delegate(subject=s.sub.did, claims={"limits": {"rpm": 10}}, valid_for=600))


def test_openai_sdk_as_sub_agent_through_nginx(s: Stack) -> None:
    openai = pytest.importorskip("openai", reason="pip install -e '.[dev]'")
    holder = sub_agent(s)
    with httpx.Client(auth=holder.httpx_auth(mode="direct"), timeout=10) as http:
        client = openai.OpenAI(base_url=s.base + "/v1", api_key="unused", http_client=http, max_retries=0)
        assert [m.id for m in client.models.list()] == ["llama-3-70b"]
        reply = client.chat.completions.create(model="llama-3-70b", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == f"[llama-3-70b for {s.user.did}]"  # on the user's behalf
    for seen in s.upstream.seen:
        assert seen.headers["x-vcgate-subject"] == [s.user.did]
        assert json.loads(seen.headers["x-vcgate-actors"][0]) == [s.agent.did, s.sub.did]
        assert "authorization" not in seen.headers


def refused(s: Stack, holder: Holder) -> httpx.Response:
    with httpx.Client(auth=holder.httpx_auth(mode="direct"), timeout=10) as http:
        return http.get(s.base + "/v1/models")


def test_a_widened_sub_delegation_never_reaches_upstream(s: Stack) -> None:
    agent_chain = list(sub_agent(s).credentials[:2])
    widened = raw_link(s.agent, agent_chain[1], s.sub.did, claims={"models": ["llama-3-70b", "gpt-4o"]},
                       valid_from=time.time(), valid_until=time.time() + 600)
    r = refused(s, Holder(s.sub.key, credentials=[*agent_chain, widened]))
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "delegation_list_widened" and "hop 2" in r.json()["message"]
    assert r.headers["x-vcgate-error"] == "delegation_list_widened"
    assert s.upstream.seen == []


def test_a_chain_deeper_than_the_policy_is_refused(s: Stack) -> None:
    deeper = make_party()
    chain = Holder(s.sub.key, credentials=sub_agent(s).credentials).delegate(subject=deeper.did)
    r = refused(s, Holder(deeper.key, credentials=chain))
    assert (r.status_code, r.json()["error"]) == (403, "delegation_depth_exceeded")
    assert s.upstream.seen == []


def test_openai_sdk_as_sub_agent_in_session_mode(s: Stack) -> None:
    """The token endpoint through nginx admits the chain; the session's calls carry it."""
    openai = pytest.importorskip("openai", reason="pip install -e '.[dev]'")
    sent: list[httpx.Request] = []
    with httpx.Client(auth=sub_agent(s).httpx_auth(), timeout=10, event_hooks={"request": [sent.append]}) as http:
        client = openai.OpenAI(base_url=s.base + "/v1", api_key="unused", http_client=http, max_retries=0)
        for _ in range(2):
            reply = client.chat.completions.create(model="llama-3-70b", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content == f"[llama-3-70b for {s.user.did}]"
    assert [q.url.path for q in sent].count("/.well-known/vcgate/token") == 1  # one presentation, two calls
    assert len(s.upstream.seen) == 2
    for seen in s.upstream.seen:
        assert json.loads(seen.headers["x-vcgate-actors"][0]) == [s.agent.did, s.sub.did]
