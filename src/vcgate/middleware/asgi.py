"""``VCGateMiddleware``: pure ASGI (FastAPI, Starlette, vLLM ``--middleware``).

A WebSocket handshake is decided like ``GET <path>`` (``ws``/``wss`` read as ``http``/``https``
for the DPoP ``htu``) before the app can accept it; a refusal is sent as the HTTP response to
the handshake where the server supports it (the ``websocket.http.response`` extension), else
as a close before accept, which servers answer with 403. Other scopes (lifespan) pass
straight through. For HTTP requests the middleware
serves the token endpoint and the RFC 9728 metadata itself, reads the body only when the policy
may need the OpenAI ``model`` field for this route (at most ``max_body`` bytes, replayed to the
app unchanged), asks the gate, and either answers the refusal as JSON or calls the app with
client ``x-vcgate-*`` headers removed, grant headers added and the decision in
``scope["vcgate"]``.

With a ``"sync"`` audit log the gate's decision may be answered only once its record is on
disk; the middleware waits for that in a worker thread so the event loop keeps serving other
requests (whose records then share one ``fsync``: group commit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..gate import Decision, Gate, RequestView
from ..gate.pipeline import TOO_LARGE, Result
from ..gate.request import is_gate_header
from ..usage import ResponseUsage

__all__ = ["VCGateMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def view_of_scope(scope: Scope, *, model: str | None = None, body_available: bool = False) -> RequestView:
    """The :class:`RequestView` of an ASGI HTTP scope: raw path (percent-encoding intact),
    ``Host`` (else the server address), the scope's scheme, headers as sent."""
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope.get("path", "/")
    path = path.split("?", 1)[0]
    headers = scope.get("headers") or []
    host = None
    for k, v in headers:
        if k.lower() == b"host":
            host = v.decode("latin-1")
            break
    if host is None and scope.get("server"):
        server_host, port = scope["server"][0], scope["server"][1]
        host = f"{server_host}:{port}" if port else server_host
    return RequestView(
        method=scope["method"],
        path=path,
        query=(scope.get("query_string") or b"").decode("latin-1"),
        host=host,
        scheme=scope.get("scheme", "http"),
        headers=headers,
        model=model,
        body_available=body_available,
    )


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, limit: int, view: RequestView) -> Any:
    """The body, or :data:`TOO_LARGE` once it holds (or declares) more than ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before anything is read, so a
    client cannot hold the connection open while it trickles a body that will be refused.
    """
    declared = view.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        return TOO_LARGE
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, result: Result) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in result.headers if k.lower() != "content-length"]
    if not any(k == b"content-type" for k, _ in raw):
        raw.append((b"content-type", b"application/json"))
    raw.append((b"content-length", str(len(result.body)).encode()))
    await send({"type": "http.response.start", "status": result.status, "headers": raw})
    await send({"type": "http.response.body", "body": result.body})


async def settled(gate: Gate, result: Result) -> Result:
    """The result once its audit record is durable, waiting off the event loop."""
    if result.ticket is None:
        return result
    return gate.settle_result(result) if result.ticket.done() else await asyncio.to_thread(gate.settle_result, result)


class VCGateMiddleware:
    """Guard an ASGI app with a :class:`~vcgate.gate.Gate`: ``VCGateMiddleware(app, gate=gate)``."""

    def __init__(self, app: ASGIApp, *, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                # Passing handshakes through would leave every WebSocket route open.
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        gate = self.gate
        view = view_of_scope(scope)
        plan = gate.plan(view)
        body = None
        if plan.read_body:
            try:
                body = await _read_body(receive, plan.max_body, view)
            except _Disconnected:
                return
        result = await settled(gate, gate.run(plan, view, body, wait=False))
        if not result.forward:
            await _respond(send, result)
            return
        scope = dict(scope)
        scope["headers"] = _upstream_headers(scope.get("headers") or [], result)
        scope["vcgate"] = result.decision
        metered = result.decision.metered if result.decision is not None else None
        if metered is None:
            await self.app(scope, receive if body is None else _replay(body, receive), send)
            return
        await _metered_call(self.app, gate, result.decision, scope, receive, send, body)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self.gate
        as_http = dict(scope)
        as_http["method"] = "GET"
        as_http["scheme"] = _WS_SCHEMES.get(scope.get("scheme", "ws"), "http")
        view = view_of_scope(as_http)
        # A handshake has no body: it is only ever checked, never a token or metadata request.
        result = await settled(gate, gate.run(gate.plan(view, endpoints=False), view, None, wait=False))
        if not result.forward:
            await _refuse_websocket(scope, send, result)
            return
        scope = dict(scope)
        scope["headers"] = _upstream_headers(scope.get("headers") or [], result)
        scope["vcgate"] = result.decision
        await self.app(scope, receive, send)


_WS_SCHEMES = {"ws": "http", "wss": "https"}


async def _refuse_websocket(scope: Scope, send: Send, result: Result) -> None:
    """The refusal as an HTTP response where the server can send one, else a close before accept."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in result.headers
                   if k.lower() != "content-length"]
        headers.append((b"content-length", str(len(result.body)).encode()))
        await send({"type": "websocket.http.response.start", "status": result.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": result.body})
        return
    # Closing before accepting makes the server answer the handshake with 403 (ASGI spec).
    await send({"type": "websocket.close", "code": 1008})


def _upstream_headers(headers: Any, result: Result) -> list[tuple[bytes, bytes]]:
    """:meth:`Result.upstream` for ASGI's bytes pairs, without a str round trip per header.

    ``is_gate_header`` is the one rule for what is removed; only names that could be a
    gate header (length and first letter) pay for it.
    """
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    for pair in headers:
        k, v = pair
        if len(k) >= 9 and k[:1] in (b"x", b"X") and is_gate_header(k):
            continue
        append((k.lower() if type(k) is bytes else k.lower().encode("latin-1"), v))
    for k, v in result.grants:
        append((k.lower().encode("latin-1"), v.encode("latin-1")))
    return out


async def _metered_call(app: ASGIApp, gate: Gate, decision: Decision, scope: Scope, receive: Receive, send: Send,
                        body: bytes | None) -> None:
    """Call the app for a call charged against limits (docs/limits.md): the body the limits
    need sent upstream, ``RateLimit`` headers on the answer, and the answer's ``usage``
    settled when its last byte is sent -- or the charge released if the call fails."""
    metered = decision.metered
    assert metered is not None
    if metered.body is not None:  # an output cap or include_usage was added
        body = metered.body
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        scope["headers"].append((b"content-length", str(len(body)).encode()))
    reader = ResponseUsage(strip_usage_chunk=metered.strip_usage_chunk)
    state = {"status": 0, "done": False}

    async def metered_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
            headers = list(message.get("headers") or [])
            ctype = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), None)
            reader.start(ctype)
            if metered.strip_usage_chunk and ctype and "event-stream" in ctype:
                headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in metered.headers)
            message = {**message, "headers": headers}
        elif message["type"] == "http.response.body" and not state["done"]:
            chunk = reader.feed(message.get("body", b""))
            if not message.get("more_body", False):
                rest, usage = reader.finish()
                await send({**message, "body": chunk + rest})
                state["done"] = True  # the client has the whole answer: settle what it used
                await asyncio.to_thread(gate.finish_call, decision, usage, ok=state["status"] < 400)
                return
            message = {**message, "body": chunk}
        await send(message)

    try:
        await app(scope, receive if body is None else _replay(body, receive), metered_send)
    finally:
        if not state["done"]:  # the app failed or the client went away: give the reservation back
            state["done"] = True
            await asyncio.to_thread(gate.abort_call, decision)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that first hands the app the body already read, then defers to the server."""
    sent = False

    async def wrapped() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return wrapped


def decision_of(scope: Scope) -> Decision | None:
    """The gate's decision for this request, as the app sees it."""
    return scope.get("vcgate")
