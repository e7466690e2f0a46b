"""The OpenAI Python SDK with an httpx client carrying the vcgate auth."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from vcgate.client import Holder

from .conftest import BASE


def test_chat_completions(holder: Holder, gateway, agent) -> None:
    http = httpx.Client(auth=holder.httpx_auth(), transport=httpx.MockTransport(gateway.httpx_handler))
    client = openai.OpenAI(base_url=f"{BASE}/v1", api_key="unused", http_client=http, max_retries=0)
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == f"hello {agent.did}"
    again = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "again"}])
    assert again.model == "m"
    assert [s.outcome for s in gateway.log] == ["challenge", "token", "session", "session"]
    # The SDK's "Authorization: Bearer unused" never reaches the gateway.
    assert [s.header("Authorization")[:1] for s in gateway.log if s.outcome == "session"] == [
        [f"DPoP {gateway.tokens[0]}"]
    ] * 2
    assert all("Bearer" not in v for s in gateway.log for v in s.header("Authorization"))
    assert gateway.log[2].proof["htu"] == f"{BASE}/v1/chat/completions"


def test_async_chat_completions(holder: Holder, gateway) -> None:
    async def main() -> str | None:
        http = httpx.AsyncClient(auth=holder.httpx_auth(), transport=httpx.MockTransport(gateway.httpx_handler))
        client = openai.AsyncOpenAI(base_url=f"{BASE}/v1", api_key="unused", http_client=http, max_retries=0)
        reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        await http.aclose()
        return reply.choices[0].message.content

    assert asyncio.run(main()).startswith("hello did:key:")
    assert [s.outcome for s in gateway.log] == ["challenge", "token", "session"]


def test_httpx2_client(holder: Holder, gateway, agent) -> None:
    httpx2 = pytest.importorskip("httpx2")

    def handler(request):
        r = gateway.httpx_handler(request)
        return httpx2.Response(r.status_code, headers=list(r.headers.multi_items()), content=r.content)

    auth = holder.httpx2_auth()
    assert isinstance(auth, httpx2.Auth)
    http = httpx2.Client(auth=auth, transport=httpx2.MockTransport(handler))
    client = openai.OpenAI(base_url=f"{BASE}/v1", api_key="unused", http_client=http, max_retries=0)
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == f"hello {agent.did}"
    assert [s.outcome for s in gateway.log] == ["challenge", "token", "session"]
