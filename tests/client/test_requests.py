"""requests auth against the fake gateway served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import io

import requests

from vcgate.client import Holder


def test_session_mode(holder: Holder, served, agent) -> None:
    gw = served()
    with requests.Session() as s:
        s.auth = holder.requests_auth()
        r = s.post(f"{gw.base}/v1/echo?x=1", json={"a": 1}, timeout=5)
        assert r.status_code == 200, r.text
        assert r.json()["subject"] == str(agent.did)
        assert [h.status_code for h in r.history] == [401, 200]  # challenge, token
        assert [x.outcome for x in gw.log] == ["challenge", "token", "session"]
        assert gw.log[2].body == gw.log[0].body == b'{"a": 1}'
        assert gw.log[2].proof["htu"] == f"{gw.base}/v1/echo"
        del gw.log[:]
        assert s.get(f"{gw.base}/v1/models", timeout=5).status_code == 200
        assert s.get(f"{gw.base}/v1/models", timeout=5).status_code == 200
    assert [x.outcome for x in gw.log] == ["session", "session"]
    assert gw.log[0].proof["jti"] != gw.log[1].proof["jti"]


def test_file_body_is_rewound(holder: Holder, served) -> None:
    gw = served()
    r = requests.put(f"{gw.base}/v1/upload", data=io.BytesIO(b"payload"), auth=holder.requests_auth(), timeout=5)
    assert r.status_code == 200
    assert gw.log[-1].body == b"payload"


def test_token_refreshed_before_expiry(holder: Holder, served, clock) -> None:
    gw = served(token_lifetime=60)
    auth = holder.requests_auth(refresh_margin=5)
    assert requests.get(f"{gw.base}/v1/models", auth=auth, timeout=5).status_code == 200
    assert [x.outcome for x in gw.log] == ["challenge", "token", "session"]
    clock.now += 58
    del gw.log[:]
    assert requests.get(f"{gw.base}/v1/models", auth=auth, timeout=5).status_code == 200
    assert [x.outcome for x in gw.log] == ["challenge", "token", "session"]


def test_direct_mode_and_refusal(holder: Holder, served) -> None:
    gw = served()
    r = requests.get(f"{gw.base}/v1/models", auth=holder.requests_auth(mode="direct"), timeout=5)
    assert r.json()["mode"] == "direct"
    gw.trusted_issuer = "did:example:nobody"
    r = requests.get(f"{gw.base}/v1/models", auth=holder.requests_auth(), timeout=5)
    assert r.status_code == 403 and r.json()["error"] == "issuer_not_trusted"


def test_bearer_header_is_replaced(holder: Holder, served) -> None:
    gw = served()
    r = requests.get(f"{gw.base}/v1/models", headers={"Authorization": "Bearer sk-x"}, auth=holder.requests_auth(), timeout=5)
    assert r.status_code == 200
    assert all("Bearer" not in v for s in gw.log for v in s.header("Authorization"))
