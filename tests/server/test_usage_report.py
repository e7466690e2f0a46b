"""The usage report of headers-only gateways (docs/limits.md): the auth service hands out a
signed reservation with each allowed, metered call and settles the usage reported for it once."""

from __future__ import annotations

import pytest

from tests.middleware.helpers import make_world, policy_text
from tests.support import make_party
from vcgate.stores import Counter
from tests.server.test_authservice import AUD, MODELS, dpop_headers, nginx_headers, session, traefik_headers
from vcgate.gate import Gate
from vcgate.policy import Policy

pytest.importorskip("flask", reason="pip install -e '.[dev]'")
from vcgate.server import AuthService, create_app  # noqa: E402

LIMITS = """limits:
  - {name: rpm, key: $subject, requests: 100, per: 1m}
  - {name: tokens, key: $subject, tokens: 10000, per: 1d, reserve: 500}
"""


@pytest.fixture
def env():
    key = make_party().key
    w = make_world(AUD, gateway_key=key)
    gate = Gate(policy=Policy.from_yaml(policy_text(AUD, w.issuer.did) + LIMITS), verifier=w.gate.verifier,
                status=w.gate.status, clock=w.clock, gateway_key=key)
    w.gate = gate
    return w, gate, create_app(AuthService(gate)).test_client()


def _used(gate: Gate, holder: str) -> list[int]:
    """What the rpm and tokens counters of ``holder`` hold."""
    counters = [Counter(f"rpm/60|{holder}", 100, 60, 0), Counter(f"tokens/86400|{holder}", 10000, 86400, 0)]
    return [s.used for s in gate.meter.store.peek(counters)]


@pytest.mark.parametrize("flavour", ["nginx", "traefik"])
def test_reserved_then_reconciled_once(env, flavour):
    w, gate, client = env
    token = session(w, client)
    headers = (nginx_headers if flavour == "nginx" else traefik_headers)("GET", MODELS, **dpop_headers(w, token, "GET", MODELS))
    r = client.get(f"/{flavour}/auth", headers=headers)
    assert r.status_code == 200, r.get_json()
    reservation = r.headers["X-Vcgate-Reservation"]
    assert _used(gate, w.holder.did) == [1, 500]  # no body: the output reserve
    ok = client.post("/.well-known/vcgate/usage", json={"reservation": reservation,
                                                          "usage": {"prompt_tokens": 40, "completion_tokens": 60}})
    assert ok.status_code == 204
    assert _used(gate, w.holder.did) == [1, 100]
    again = client.post("/.well-known/vcgate/usage", json={"reservation": reservation,
                                                             "usage": {"prompt_tokens": 0, "completion_tokens": 0}})
    assert again.status_code == 400 and again.get_json()["details"]["reason"] == "reservation_reported"
    assert _used(gate, w.holder.did) == [1, 100]


@pytest.mark.parametrize(
    ("report", "reason"),
    [pytest.param({"reservation": "a.b.c"}, "reservation_invalid", id="garbage"),
     pytest.param({"usage": {"prompt_tokens": 1, "completion_tokens": 1}}, None, id="no-reservation"),
     pytest.param(["x"], None, id="not-an-object")],
)
def test_bad_reports_are_refused(env, report, reason):
    _, _, client = env
    r = client.post("/.well-known/vcgate/usage", json=report)
    assert r.status_code == 400 and r.get_json()["error"] == "malformed"
    if reason:
        assert r.get_json()["details"]["reason"] == reason


def test_failed_call_releases_its_tokens(env):
    w, gate, client = env
    token = session(w, client)
    r = client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **dpop_headers(w, token, "GET", MODELS)))
    assert client.post("/.well-known/vcgate/usage", json={"reservation": r.headers["X-Vcgate-Reservation"],
                                                          "outcome": "failed"}).status_code == 204
    assert _used(gate, w.holder.did) == [1, 0]  # the request stays counted, its tokens come back


def test_limit_metrics_in_the_service_registry(env):
    w, gate, client = env
    token = session(w, client)
    client.get("/nginx/auth", headers=nginx_headers("GET", MODELS, **dpop_headers(w, token, "GET", MODELS)))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'vcgate_limit_calls_total{limit="rpm",outcome="admitted"} 1.0' in text
