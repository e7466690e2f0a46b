"""Every adapter behind one call: ``send(method, raw_path, headers, body) -> Outcome``.

Each harness drives the adapter's real code (the middleware around an app, the auth service's
Flask app through its test client, the gRPC servicer with real protobuf messages, LiteLLM's
``custom_auth`` with a real Starlette request) and reports what the client got and what the
upstream would receive. The upstream apps read the body the way Starlette's ``request.json()``
does: ``json.loads`` whatever the Content-Type says.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import types
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tests.support import NOW, Party, make_party
from vcgate.credentials import Verifier, create_presentation, issue_credential
from vcgate.gate import Gate
from vcgate.policy import Policy

AUD = "https://gw.example"
HOST = "gw.example"
TOKEN = "/.well-known/vcgate/token"


def policy_text(issuer: str) -> str:
    return textwrap.dedent(
        f"""\
        version: 1
        audience: {AUD}
        trusted_issuers:
          - did: {issuer}
        defaults:
          status: off
        rules:
          - name: no-admin
            match:
              paths: [/v1/admin/**]
            allow: false
          - name: no-secret-models
            match:
              methods: [POST]
              paths: [/v1/chat/completions]
              models: ["gpt-4-secret*"]
            allow: false
          - name: gold-models
            match:
              methods: [POST]
              paths: [/v1/chat/completions]
              models: [gpt-4o]
            require:
              types: [GoldCredential]
          - name: everything-else
            match:
              paths: [/v1/**]
            require:
              types: [ModelAccessCredential]
              holder_binding: true
            grants:
              headers:
                X-Vcgate-Subject: $subject
                X-Vcgate-Model: $model
        """
    )


@dataclass
class Outcome:
    status: int
    body: Any                              # the JSON the client got (None when forwarded)
    upstream: list[tuple[str, str]] | None  # headers the upstream got (None: not forwarded)
    model: str | None = None               # the model the upstream read from the body
    removed: tuple[str, ...] = ()          # what a gateway adapter told the gateway to remove

    @property
    def code(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None


class World:
    def __init__(self) -> None:
        self.issuer, self.holder, self.other = make_party(), make_party(), make_party()
        self.clock = lambda: NOW
        self.gate = Gate(
            policy=Policy.from_yaml(policy_text(self.issuer.did)),
            verifier=Verifier(clock=self.clock),
            clock=self.clock,
            gateway_key=make_party().key,
        )

    def credential(self, *, subject: Party | None = None, types_: tuple[str, ...] = ("ModelAccessCredential",)) -> str:
        return issue_credential(
            self.issuer.key, issuer=self.issuer.did, kid=self.issuer.kid, subject=(subject or self.holder).did,
            types=list(types_), claims={"tier": "silver"}, valid_from=self.clock() - 60,
        )

    def vp(self, *, holder: Party | None = None, creds: list[str] | None = None) -> str:
        holder = holder or self.holder
        return create_presentation(
            holder.key, holder=holder.did, kid=holder.kid, credentials=creds or [self.credential(subject=holder)],
            audience=AUD, nonce=self.gate.nonce_store.issue(300), issued_at=self.clock(),
        )

    def auth(self, **kw: Any) -> tuple[str, str]:
        return ("Authorization", f"VP {self.vp(**kw)}")


def _read_model(body: bytes) -> str | None:
    try:
        data = json.loads(body)  # what Starlette's request.json() does, Content-Type or not
    except (ValueError, RecursionError):
        return None
    return data.get("model") if isinstance(data, dict) else None


# --- in-process middleware ------------------------------------------------------------------------

def asgi(world: World, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Outcome:
    from vcgate.middleware import VCGateMiddleware

    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        chunks = []
        while True:
            m = await receive()
            chunks.append(m.get("body", b""))
            if not m.get("more_body"):
                break
        seen["headers"] = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        seen["model"] = _read_model(b"".join(chunks))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http", "method": method, "scheme": "https", "path": raw_path, "raw_path": raw_path.encode("latin-1"),
        "query_string": query.encode(), "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                                                    for k, v in [("host", HOST), *headers]],
        "server": ("127.0.0.1", 443),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    out: dict[str, Any] = {"body": b""}

    async def receive() -> Any:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        else:
            out["body"] += message.get("body", b"")

    asyncio.run(VCGateMiddleware(app, gate=world.gate)(scope, receive, send))
    if "headers" in seen:
        return Outcome(out["status"], None, seen["headers"], seen["model"])
    return Outcome(out["status"], json.loads(out["body"]), None)


def wsgi(world: World, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Outcome:
    import io

    from vcgate.middleware import VCGateWSGI

    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen["headers"] = [(k[5:].lower().replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_")]
        seen["model"] = _read_model(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    raw_path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "REQUEST_URI": path, "PATH_INFO": raw_path, "QUERY_STRING": query,
        "SERVER_NAME": HOST, "SERVER_PORT": "443", "wsgi.url_scheme": "https", "HTTP_HOST": HOST,
        "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
    }
    for k, v in headers:
        key = k.upper().replace("-", "_")  # CGI folding: '-' and '_' become the same variable
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = v
        else:
            environ["HTTP_" + key] = v
    status: list[str] = []
    data = b"".join(VCGateWSGI(app, gate=world.gate)(environ, lambda s, h: status.append(s)))
    code = int(status[0].split()[0])
    if "headers" in seen:
        return Outcome(code, None, seen["headers"], seen["model"])
    return Outcome(code, json.loads(data), None)


# --- the auth service --------------------------------------------------------------------------------

def _service(world: World) -> Any:
    from vcgate.server.authservice import AuthService

    if not hasattr(world, "_service"):
        world._service = AuthService(world.gate)  # type: ignore[attr-defined]
    return world._service  # type: ignore[attr-defined]


def _client(world: World) -> Any:
    from vcgate.server.authservice import create_app

    if not hasattr(world, "_client"):
        world._client = create_app(_service(world)).test_client()  # type: ignore[attr-defined]
    return world._client  # type: ignore[attr-defined]


def _forwarded(resp: Any, status_header: bool) -> Outcome:
    status = int(resp.headers.get("X-Vcgate-Status", resp.status_code)) if status_header else resp.status_code
    if resp.status_code == 200:
        # The gateway forwards the client's headers plus the grants (their stripping is the
        # gateway's configuration; tested against the real NGINX / Traefik / Envoy).
        return Outcome(200, None, [(k.lower(), v) for k, v in resp.headers.items()])
    return Outcome(status, resp.get_json(silent=True), None)


def nginx(world: World, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Outcome:
    hdrs = [("X-Original-Method", method), ("X-Original-URI", path), ("Host", HOST), ("X-Forwarded-Proto", "https"),
            *headers]
    if path == TOKEN:  # NGINX proxies the token endpoint to the service, unguarded
        resp = _client(world).open(path, method=method, headers=hdrs, data=body, base_url=f"https://{HOST}")
        return Outcome(resp.status_code, resp.get_json(silent=True), None)
    return _forwarded(_client(world).get("/nginx/auth", headers=hdrs), True)


def traefik(world: World, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Outcome:
    hdrs = [("X-Forwarded-Method", method), ("X-Forwarded-Uri", path), ("X-Forwarded-Host", HOST),
            ("X-Forwarded-Proto", "https"), *headers]
    return _forwarded(_client(world).get("/traefik/auth", headers=hdrs), False)


def _envoy_upstream(headers: list[tuple[str, str]], removed: tuple[str, ...], grants: list[tuple[str, str]]) -> list:
    """What Envoy sends upstream: the client's headers less ``removed``, the grants
    overwriting headers of the same name (OVERWRITE_IF_EXISTS_OR_ADD)."""
    granted = {k for k, _ in grants}
    return [(k.lower(), v) for k, v in headers if k.lower() not in removed and k.lower() not in granted] + grants


def envoy_http(world: World, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Outcome:
    resp = _client(world).open("/envoy" + path, method=method, headers=[("X-Forwarded-Proto", "https"), *headers],
                               data=body, base_url=f"http://{HOST}")
    if resp.status_code == 200:
        removed = tuple(h for h in resp.headers.get("x-envoy-auth-headers-to-remove", "").split(",") if h)
        grants = [(k.lower(), v) for k, v in resp.headers.items() if k.lower().startswith("x-vcgate-")]
        return Outcome(200, None, _envoy_upstream(headers, removed, grants), _read_model(body), removed)
    return Outcome(resp.status_code, resp.get_json(silent=True), None)


def envoy_grpc(world: World, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Outcome:
    from envoy.service.auth.v3 import external_auth_pb2

    from vcgate.server.grpc_authz import AuthorizationServicer

    req = external_auth_pb2.CheckRequest()
    http = req.attributes.request.http
    http.method, http.path, http.host, http.scheme = method, path, HOST, "https"
    for k, v in headers:
        http.headers[k.lower()] = v
    if body:
        http.raw_body = body
    resp = AuthorizationServicer(_service(world)).Check(req, None)
    if resp.HasField("ok_response"):
        removed = tuple(resp.ok_response.headers_to_remove)
        grants = [(o.header.key.lower(), o.header.value) for o in resp.ok_response.headers]
        return Outcome(200, None, _envoy_upstream(headers, removed, grants), _read_model(body), removed)
    denied = resp.denied_response
    return Outcome(denied.status.code, json.loads(denied.body), None)


# --- hosts that load vcgate ----------------------------------------------------------------------------

def litellm(world: World, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Outcome:
    from starlette.requests import Request

    from vcgate.integrations.litellm import LiteLLMGate

    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http", "method": method, "scheme": "https", "path": raw_path, "raw_path": raw_path.encode("latin-1"),
        "query_string": query.encode(), "server": ("127.0.0.1", 443),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in [("host", HOST), *headers]],
    }
    sent = [False]

    async def receive() -> Any:
        if sent[0]:
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    plugin = LiteLLMGate(runtime=types.SimpleNamespace(gate=world.gate, close=lambda: None))  # type: ignore[arg-type]
    request = Request(scope, receive)
    if raw_path == TOKEN:
        resp = asyncio.run(plugin.token_endpoint(request))
        return Outcome(resp.status_code, json.loads(resp.body), None)
    try:
        auth = asyncio.run(plugin.authenticate(request, None))
    except Exception as exc:  # ProxyException: what LiteLLM answers the client
        if type(exc).__name__ != "ProxyException":
            raise
        return Outcome(int(exc.code), exc.provider_specific_fields["vcgate"], None)
    grants = auth.metadata["vcgate"]["grant_headers"]
    # LiteLLM calls the model with its own headers plus the grants (GrantHeaders hook).
    model = _read_model(asyncio.run(request.body()))
    return Outcome(200, None, [(k.lower(), v) for k, v in grants.items()], model)


ALL = {
    "asgi": asgi, "wsgi": wsgi, "nginx": nginx, "traefik": traefik, "envoy_http": envoy_http,
    "envoy_grpc": envoy_grpc, "litellm": litellm,
}
#: Adapters that see the body (the others are headers-only: the model decides nothing there).
SEES_BODY = {"asgi", "wsgi", "envoy_http", "envoy_grpc", "litellm"}
#: Adapters that serve the token endpoint themselves (or whose service does).
SERVES_TOKEN = {"asgi", "wsgi", "nginx", "litellm"}

__all__ = ["ALL", "AUD", "SEES_BODY", "SERVES_TOKEN", "TOKEN", "Outcome", "World", "quote"]
