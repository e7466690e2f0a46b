"""httpx auth against the fake gateway: session mode, refresh, direct mode, async."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from vcgate.client import Holder, ProtocolError
from vcgate.keys import PrivateKey

from .conftest import BASE
from .gateway import FakeGateway, claims_of


def client(gw: FakeGateway, auth: httpx.Auth) -> httpx.Client:
    return httpx.Client(auth=auth, transport=httpx.MockTransport(gw.httpx_handler), base_url=BASE)


def test_first_call_presents_then_replays(holder: Holder, gateway: FakeGateway, agent) -> None:
    with client(gateway, holder.httpx_auth()) as c:
        r = c.post("/v1/echo", json={"x": 1})
    assert r.status_code == 200, r.text
    assert r.json() == {"ok": True, "subject": str(agent.did), "path": "/v1/echo", "mode": "session"}
    assert [(s.method, s.url, s.status, s.outcome) for s in gateway.log] == [
        ("POST", f"{BASE}/v1/echo", 401, "challenge"),
        ("POST", gateway.token_endpoint, 200, "token"),
        ("POST", f"{BASE}/v1/echo", 200, "session"),
    ]
    first, token_req, replay = gateway.log
    assert first.header("Authorization") == [] and first.header("DPoP") == []
    # The token request: form-encoded vp_token, proof for POST <token endpoint> without ath,
    # made with the key that signed the presentation (the gateway checked the thumbprint).
    assert token_req.header("Content-Type") == ["application/x-www-form-urlencoded"]
    assert token_req.proof["htm"] == "POST" and token_req.proof["htu"] == gateway.token_endpoint
    assert "ath" not in token_req.proof
    assert replay.header("Authorization") == [f"DPoP {gateway.tokens[0]}"]
    assert replay.body == b'{"x":1}'  # the body was sent again
    assert r.history and r.history[0].status_code == 401


def test_presentation_names_realm_and_nonce(holder: Holder, gateway: FakeGateway) -> None:
    with client(gateway, holder.httpx_auth()) as c:
        c.get("/v1/models")
    vp = claims_of(gateway.log[1].body.decode().split("vp_token=", 1)[1].replace("%3D", "="))
    assert vp["aud"] == BASE and vp["holder"] == holder.did and vp["nonce"]


def test_second_call_uses_the_token_with_a_fresh_proof(holder: Holder, gateway: FakeGateway) -> None:
    with client(gateway, holder.httpx_auth()) as c:
        assert c.get("/v1/models").status_code == 200
        del gateway.log[:]
        assert c.get("/v1/models").status_code == 200
        assert c.post("/v1/chat/completions", json={"model": "m"}).status_code == 200
    assert [s.outcome for s in gateway.log] == ["session", "session"]  # one request each
    jtis = {s.proof["jti"] for s in gateway.log}
    assert len(jtis) == 2
    assert [s.proof["htm"] for s in gateway.log] == ["GET", "POST"]
    assert len(gateway.tokens) == 1


def test_query_is_left_out_of_htu(holder: Holder, gateway: FakeGateway) -> None:
    with client(gateway, holder.httpx_auth()) as c:
        r = c.get("/v1/models", params={"limit": "5", "q": "a b"})
    assert r.status_code == 200
    last = gateway.log[-1]
    assert last.url == f"{BASE}/v1/models?limit=5&q=a+b"
    assert last.proof["htu"] == f"{BASE}/v1/models"


def test_token_near_expiry_is_replaced(holder: Holder, make_gateway, clock) -> None:
    gw = make_gateway(token_lifetime=60)
    with client(gw, holder.httpx_auth(refresh_margin=10)) as c:
        c.get("/v1/models")
        clock.now += 49  # still before the margin
        del gw.log[:]
        c.get("/v1/models")
        assert [s.outcome for s in gw.log] == ["session"]
        clock.now += 2  # inside the margin: present again before the gateway refuses
        del gw.log[:]
        assert c.get("/v1/models").status_code == 200
    assert [s.outcome for s in gw.log] == ["challenge", "token", "session"]
    assert len(gw.tokens) == 2


def test_token_expired_at_the_gateway_presents_again(holder: Holder, make_gateway, clock) -> None:
    gw = make_gateway(token_lifetime=60)
    # refresh_margin=0 and a clock jump: the client still thinks the token is good.
    with client(gw, holder.httpx_auth(refresh_margin=0)) as c:
        c.get("/v1/models")
        state = c.auth._state  # type: ignore[attr-defined]
        state._tokens[BASE].refresh_at = float("inf")
        clock.now += 120
        del gw.log[:]
        r = c.get("/v1/models")
    assert r.status_code == 200
    assert [s.outcome for s in gw.log] == ["token_expired", "token", "session"]


def test_proofs_carry_no_server_nonce(holder: Holder, gateway: FakeGateway) -> None:
    # vcgate sends no DPoP-Nonce (docs/protocol.md): the flow has no nonce state or retry.
    with client(gateway, holder.httpx_auth()) as c:
        assert c.get("/v1/models").status_code == 200
        assert c.get("/v1/models").status_code == 200
    assert [s.outcome for s in gateway.log] == ["challenge", "token", "session", "session"]
    proofs = [s.proof for s in gateway.log if s.proof is not None]
    assert len(proofs) == 3 and all("nonce" not in p for p in proofs)


def test_direct_mode(holder: Holder, gateway: FakeGateway, agent) -> None:
    with client(gateway, holder.httpx_auth(mode="direct")) as c:
        r1 = c.get("/v1/models")
        r2 = c.get("/v1/models")
    assert r1.json()["mode"] == "direct" and r2.json()["subject"] == str(agent.did)
    assert [s.outcome for s in gateway.log] == ["challenge", "direct", "challenge", "direct"]
    assert gateway.log[1].header("Authorization")[0].startswith("VP ")
    assert gateway.log[1].header("DPoP") == []
    assert gateway.tokens == []


def test_token_refusal_is_returned(holder: Holder, make_gateway) -> None:
    gw = make_gateway()
    gw.trusted_issuer = "did:example:someone-else"
    with client(gw, holder.httpx_auth()) as c:
        r = c.get("/v1/models")
    assert r.status_code == 403
    assert r.json()["error"] == "issuer_not_trusted"
    assert [s.outcome for s in gw.log] == ["challenge", "issuer_not_trusted"]


def test_a_refused_presentation_is_returned(agent, issuer, clock, gateway: FakeGateway) -> None:
    # A credential about someone else: holder binding fails at the token endpoint (401).
    from vcgate.credentials import issue_credential

    other = issue_credential(issuer.key, issuer=str(issuer.did), kid=issuer.kid, subject="did:example:other",
                             valid_from=clock.now - 10)
    holder = Holder(agent.key, credentials=[other], clock=clock)
    with client(gateway, holder.httpx_auth()) as c:
        r = c.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"] == "holder_mismatch"
    assert len(gateway.log) == 2


def test_one_combined_challenge_header(holder: Holder, make_gateway) -> None:
    gw = make_gateway(combine_challenges=True)
    with client(gw, holder.httpx_auth()) as c:
        assert c.get("/v1/models").status_code == 200


def test_bearer_header_is_replaced(holder: Holder, gateway: FakeGateway) -> None:
    with client(gateway, holder.httpx_auth()) as c:
        c.headers["Authorization"] = "Bearer sk-unused"
        assert c.get("/v1/models").status_code == 200
        assert c.get("/v1/models").status_code == 200
    assert all("Bearer" not in v for s in gateway.log for v in s.header("Authorization"))


def test_realm_on_another_origin_is_refused(holder: Holder, make_gateway) -> None:
    gw = make_gateway(base="https://evil.test")
    transport = httpx.MockTransport(gw.httpx_handler)
    with httpx.Client(auth=holder.httpx_auth(), transport=transport) as c:
        with pytest.raises(ProtocolError, match="realm"):
            c.get(f"{BASE}/v1/models")
    assert len(gw.log) == 1  # no presentation left the client
    # ...unless the caller names that audience (a gateway behind a proxy, say); the token
    # endpoint may then live on the audience's origin.
    with httpx.Client(auth=holder.httpx_auth(audience="https://evil.test"), transport=transport) as c:
        assert c.get(f"{BASE}/v1/models").status_code == 200
    assert gw.log[2].url == "https://evil.test/.well-known/vcgate/token"


def test_token_endpoint_on_a_third_origin_is_refused(holder: Holder) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={
            "WWW-Authenticate": f'VP realm="{BASE}", nonce="n", token_endpoint="https://elsewhere.test/token"'})

    with httpx.Client(auth=holder.httpx_auth(), transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ProtocolError, match="token endpoint"):
            c.get(f"{BASE}/x")


def test_malformed_challenge_is_an_error(holder: Holder) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": f'VP realm="{BASE}"'})

    with httpx.Client(auth=holder.httpx_auth(), transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ProtocolError, match="nonce"):
            c.get(f"{BASE}/x")


def test_other_401_is_passed_through(holder: Holder) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="x"'})

    with httpx.Client(auth=holder.httpx_auth(), transport=httpx.MockTransport(handler)) as c:
        assert c.get(f"{BASE}/x").status_code == 401
    assert len(calls) == 1


def test_key_algorithm_the_gateway_does_not_accept(holder: Holder) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": f'VP realm="{BASE}", nonce="n", algs="ES256"'})

    with httpx.Client(auth=holder.httpx_auth(), transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ProtocolError, match="EdDSA"):
            c.get(f"{BASE}/x")


def test_holder_that_is_not_the_subject(credential, clock, gateway: FakeGateway) -> None:
    holder = Holder(PrivateKey.generate("ES256"), credentials=[credential], clock=clock)
    with client(gateway, holder.httpx_auth()) as c:
        r = c.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"] == "holder_mismatch"
    assert [s.outcome for s in gateway.log] == ["challenge", "holder_mismatch"]


def test_malformed_token_response_is_an_error(holder: Holder) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "abc", "token_type": "Bearer"})
        return httpx.Response(401, headers={"WWW-Authenticate": f'VP realm="{BASE}", nonce="n", token_endpoint="/token"'})

    with httpx.Client(auth=holder.httpx_auth(), transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ProtocolError, match="token_type"):
            c.get(f"{BASE}/x")


def test_async_client(holder: Holder, gateway: FakeGateway) -> None:
    async def main() -> list[int]:
        auth = holder.httpx_auth()
        transport = httpx.MockTransport(gateway.httpx_handler)
        async with httpx.AsyncClient(auth=auth, transport=transport, base_url=BASE) as c:
            first = await c.get("/v1/models")
            rest = await asyncio.gather(*(c.get("/v1/models", params={"i": i}) for i in range(3)))
        return [first.status_code, *(r.status_code for r in rest)]

    assert asyncio.run(main()) == [200] * 4
    assert [s.outcome for s in gateway.log] == ["challenge", "token", "session", "session", "session", "session"]


def test_streaming_response_is_not_read_by_the_auth(holder: Holder, gateway: FakeGateway) -> None:
    def streaming(request: httpx.Request) -> httpx.Response:
        r = gateway.httpx_handler(request)
        return httpx.Response(r.status_code, headers=r.headers, content=iter([r.content]))

    transport = httpx.MockTransport(streaming)
    with httpx.Client(auth=holder.httpx_auth(), transport=transport, base_url=BASE) as c:
        c.get("/v1/models")
        with c.stream("GET", "/v1/models") as r:
            assert r.status_code == 200
            assert not r.is_stream_consumed
            assert r.read()


def test_threads_share_one_auth(holder: Holder, gateway: FakeGateway) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with client(gateway, holder.httpx_auth()) as c:
        c.get("/v1/models")
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda i: c.get("/v1/models", params={"i": i}).status_code, range(12)))
    assert codes == [200] * 12
    assert len(gateway.tokens) == 1
