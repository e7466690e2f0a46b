"""The metrics docs/observability.md adds to ``/metrics``, each made to move by its real cause:
a real Redis that goes away (store errors, 503 decisions), a policy edit that does not load and
one that does (reloads by result), an exception no handler caught (internal errors)."""

from __future__ import annotations

import re

import pytest

from tests.middleware.helpers import make_world

pytest.importorskip("flask", reason="pip install -e '.[dev]'")
pytest.importorskip("prometheus_client", reason="pip install -e '.[dev]'")

from vcgate.server import AuthService, create_app  # noqa: E402

AUD = "https://gw.example"
CHAT = {"X-Original-Method": "POST", "X-Original-URI": "/v1/chat/completions", "Host": "gw.example"}


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a text exposition (labels in any order), or None."""
    for line in text.splitlines():
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if m is None or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if got == labels:
            return float(m.group(3))
    return None


@pytest.mark.integration
def test_store_errors_count_when_real_redis_goes_away(tmp_path):
    from tests.integration.test_redis_store import _start_redis
    from vcgate.stores import (
        RedisCounterStore,
        RedisNonceStore,
        RedisReplayStore,
        RedisSessionStore,
        redis_client,
    )

    server = _start_redis(tmp_path)
    try:
        client = redis_client(server.url, timeout=0.25)
        world = make_world(AUD, nonce_store=RedisNonceStore(client), replay_store=RedisReplayStore(client),
                           counter_store=RedisCounterStore(client), session_store=RedisSessionStore(client))
        app = create_app(AuthService(world.gate)).test_client()
        assert app.get("/nginx/auth", headers=CHAT).status_code == 401  # a challenge: a nonce in Redis
        text = app.get("/metrics").text
        # Every operation of every Redis store is there from the start, at 0.
        for store, op in [("nonce", "issue"), ("nonce", "consume"), ("replay", "add"), ("counter", "reserve"),
                          ("counter", "commit"), ("counter", "peek"), ("session", "put"), ("session", "get")]:
            assert sample(text, "vcgate_store_errors_total", store=store, operation=op) == 0.0, (store, op)
        server.stop()
        r = app.get("/nginx/auth", headers=CHAT)
        assert r.status_code == 403 and r.headers["X-Vcgate-Status"] == "503"
        assert r.headers["X-Vcgate-Error"] == "store_unavailable"
        text = app.get("/metrics").text
        assert sample(text, "vcgate_store_errors_total", store="nonce", operation="issue") == 1.0
        assert sample(text, "vcgate_store_errors_total", store="nonce", operation="consume") == 0.0
        assert sample(text, "vcgate_decision_status_total", adapter="nginx", status="503") == 1.0
        assert sample(text, "vcgate_decision_status_total", adapter="nginx", status="401") == 1.0
        assert sample(text, "vcgate_decisions_total", adapter="nginx", outcome="deny", code="store_unavailable") == 1.0
    finally:
        server.stop()


def test_in_memory_stores_report_no_store_error_series():
    world = make_world(AUD)
    app = create_app(AuthService(world.gate)).test_client()
    text = app.get("/metrics").text
    assert "# TYPE vcgate_store_errors_total counter" in text  # the family is always there
    assert "vcgate_store_errors_total{" not in text


def test_policy_reloads_are_counted_by_result(tmp_path):
    world = make_world(AUD, tmp_path=tmp_path)
    world.gate.reload_interval = 0
    app = create_app(AuthService(world.gate)).test_client()
    text = app.get("/metrics").text
    assert sample(text, "vcgate_policy_reloads_total", result="ok") == 0.0
    assert sample(text, "vcgate_policy_reloads_total", result="failed") == 0.0
    good = world.policy_path.read_text()

    world.policy_path.write_text(good + "  - name: x\x01\n")  # does not load
    app.get("/nginx/auth", headers=CHAT)
    text = app.get("/metrics").text
    assert sample(text, "vcgate_policy_reloads_total", result="failed") == 1.0
    assert sample(text, "vcgate_policy_reloads_total", result="ok") == 0.0
    assert sample(text, "vcgate_policy_stale") == 1.0

    world.policy_path.write_text(good + "\n# edited\n")  # loads
    app.get("/nginx/auth", headers=CHAT)
    text = app.get("/metrics").text
    assert sample(text, "vcgate_policy_reloads_total", result="ok") == 1.0
    assert sample(text, "vcgate_policy_reloads_total", result="failed") == 1.0
    assert sample(text, "vcgate_policy_stale") == 0.0


def test_an_uncaught_exception_is_a_500_counted_as_an_internal_error(monkeypatch):
    # A mock: the gate never raises for a request, so the fault is made by hand.
    world = make_world(AUD)
    service = AuthService(world.gate)
    app = create_app(service).test_client()
    assert sample(app.get("/metrics").text, "vcgate_internal_errors_total") == 0.0

    def boom(*_a, **_kw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(world.gate, "run", boom)
    assert app.get("/nginx/auth", headers=CHAT).status_code == 500
    assert sample(app.get("/metrics").text, "vcgate_internal_errors_total") == 1.0
