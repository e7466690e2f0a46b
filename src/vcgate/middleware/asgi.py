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

from ..gate import GRANT_PREFIX, Decision, Gate, RequestView
from ._common import MAX_BODY, TOO_LARGE, dumps, model_of, token_form

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


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, headers: Any, body: Any) -> None:
    data = dumps(body)
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers if k.lower() != "content-length"]
    if not any(k == b"content-type" for k, _ in raw):
        raw.append((b"content-type", b"application/json"))
    raw.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class VCGateMiddleware:
    """Guard an ASGI app with a :class:`~vcgate.gate.Gate`: ``VCGateMiddleware(app, gate=gate)``."""

    def __init__(self, app: ASGIApp, *, gate: Gate, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.gate = gate
        self.max_body = max_body

    def _view(self, scope: Scope, model: str | None = None, body_available: bool = False) -> RequestView:
        return view_of_scope(scope, model=model, body_available=body_available)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                # Passing handshakes through would leave every WebSocket route open.
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        gate = self.gate
        view = self._view(scope)
        if gate.is_metadata(view.path) and view.method in ("GET", "HEAD"):
            await _respond(send, 200, [("Cache-Control", "max-age=300")], gate.metadata())
            return
        ctype = view.get("content-type")
        if gate.is_token_endpoint(view.path):
            try:
                body = await _read_body(receive, self.max_body)
            except _TooLarge:
                await _respond(send, 413, [], TOO_LARGE)
                return
            except _Disconnected:
                return
            form = token_form(body, ctype)
            if gate.audit_waits:
                status, headers, payload = await asyncio.to_thread(gate.token_endpoint, view, form)
            else:
                status, headers, payload = gate.token_endpoint(view, form)
            await _respond(send, status, headers, payload)
            return

        replay_receive = receive
        if gate.needs_body(view.method, view.path):
            try:
                body = await _read_body(receive, self.max_body)
            except _TooLarge:
                await _respond(send, 413, [], TOO_LARGE)
                return
            except _Disconnected:
                return
            # The same request with the body's model: reuse the parsed path, host and headers.
            view = view._with_model(model_of(body, ctype))
            replay_receive = _replay(body, receive)

        decision, ticket = gate.begin_check(view)
        if ticket is not None:
            # Durable before answered; off the event loop unless the record is already on disk.
            decision = gate.settle(decision, ticket) if ticket.done() else await asyncio.to_thread(gate.settle, decision, ticket)
        if not decision.allow:
            await _respond(send, decision.status, decision.headers, decision.body)
            return
        scope = dict(scope)
        scope["headers"] = _upstream_headers(gate, scope.get("headers") or [], decision)
        scope["vcgate"] = decision
        await self.app(scope, replay_receive, send)


    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self.gate
        as_http = dict(scope)
        as_http["method"] = "GET"
        as_http["scheme"] = _WS_SCHEMES.get(scope.get("scheme", "ws"), "http")
        decision, ticket = gate.begin_check(self._view(as_http))
        if ticket is not None:
            decision = await asyncio.to_thread(gate.settle, decision, ticket)
        if not decision.allow:
            await _refuse_websocket(scope, send, decision)
            return
        scope = dict(scope)
        scope["headers"] = _upstream_headers(gate, scope.get("headers") or [], decision)
        scope["vcgate"] = decision
        await self.app(scope, receive, send)


_WS_SCHEMES = {"ws": "http", "wss": "https"}


async def _refuse_websocket(scope: Scope, send: Send, decision: Decision) -> None:
    """The refusal as an HTTP response where the server can send one, else a close before accept."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        data = dumps(decision.body)
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers
                   if k.lower() != "content-length"]
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "websocket.http.response.start", "status": decision.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": data})
        return
    # Closing before accepting makes the server answer the handshake with 403 (ASGI spec).
    await send({"type": "websocket.close", "code": 1008})


_GRANT_PREFIX = GRANT_PREFIX.encode("latin-1")


def _upstream_headers(gate: Gate, headers: Any, decision: Decision) -> list[tuple[bytes, bytes]]:
    """:meth:`Gate.upstream_headers`, encoded for ASGI, without a str round trip for ASCII names.

    For bytes pairs with an ASCII name, ``k.lower()`` on bytes equals the latin-1 round trip
    of ``str.lower()`` and the value comes back unchanged; anything else takes the general path.
    """
    def general() -> list[tuple[bytes, bytes]]:
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in gate.upstream_headers(headers, decision)]

    if type(headers) not in (list, tuple) or type(gate).upstream_headers is not Gate.upstream_headers:
        return general()  # an unusual scope, or a subclass that decides itself
    out: list[tuple[bytes, bytes]] = []
    append = out.append
    for pair in headers:
        k, v = pair
        if type(k) is not bytes or type(v) is not bytes or not k.isascii():
            return general()
        k = k.lower()
        if not k.startswith(_GRANT_PREFIX):
            append((k, v))
    for k, v in decision.grant_headers:
        append((k.lower().encode("latin-1"), v.encode("latin-1")))
    return out


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
