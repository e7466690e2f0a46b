"""Request limits behind the real NGINX snippet and a real ``vcgate serve`` (docs/limits.md):
a limit of 3 per minute admits 3 calls and answers the 4th 429 with ``Retry-After``; the
signed reservation the service hands NGINX never reaches the upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from tests.integration.gateway_support import (
    NGINX_HINT,
    AuthService,
    EchoUpstream,
    Nginx,
    free_port,
    gateway_world,
    nginx_binary,
    render_nginx_site,
)
from tests.support import require_real

pytestmark = pytest.mark.integration

MODELS = "/v1/models"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    if nginx_binary() is None:
        require_real("nginx with the auth_request module", NGINX_HINT)
    tmp = tmp_path_factory.mktemp("nginx-limits")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    world = gateway_world(tmp, base, headers_only=True)
    world.policy.write_text(world.policy.read_text()
                            + "limits:\n  - {name: agent-rpm, key: $subject, requests: 3, per: 1m}\n")
    with EchoUpstream() as upstream, AuthService(world.policy) as service:
        site = render_nginx_site(listen_port=port, vcgate_port=service.port, model_port=upstream.port)
        with Nginx(tmp / "nginx", site, ports=(port,)):
            yield world, base, upstream, service


def test_request_limit_through_nginx(stack) -> None:
    world, base, upstream, service = stack
    session = requests.Session()
    session.auth = world.holder().requests_auth(mode="direct")
    statuses = [session.get(base + MODELS, timeout=10) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429], [r.text for r in statuses]
    refused = statuses[-1]
    body = json.loads(refused.content)
    assert body["error"] == "quota_exceeded" and "agent-rpm" in body["message"]
    assert refused.headers["x-vcgate-error"] == "quota_exceeded"
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert len(upstream.seen) == 3
    assert all("x-vcgate-reservation" not in seen.headers for seen in upstream.seen)
    assert 'vcgate_limit_calls_total{limit="agent-rpm",outcome="refused"} 1.0' in service.metrics()
