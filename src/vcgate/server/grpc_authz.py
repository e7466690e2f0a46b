"""Envoy ``ext_authz`` over gRPC: ``envoy.service.auth.v3.Authorization/Check``.

The messages come from PyPI ``xds-protos`` (the generated Python of envoyproxy/data-plane-api)
rather than protos compiled here: they track Envoy's API and stay byte-compatible with it.

``CheckRequest.attributes.request.http`` becomes a :class:`~vcgate.gate.RequestView` (method,
path, host, scheme, headers -- from ``header_map`` when Envoy sends raw headers, else the
``headers`` map -- and the body when ``with_request_body`` is on); the decision becomes an
``ok_response`` (grant headers set with ``OVERWRITE_IF_EXISTS_OR_ADD``, the client's own
``x-vcgate-*`` headers in ``headers_to_remove``) or a ``denied_response`` (status, headers,
JSON body). The gRPC status is ``OK``, ``UNAUTHENTICATED`` (401) or ``PERMISSION_DENIED``.
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from ..gate import RequestView
from ..gate.pipeline import TOO_LARGE, Result
from .authservice import AuthService, _scheme, _split_uri

__all__ = ["AuthorizationServicer", "serve_grpc"]

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def _headers_of(http: Any) -> list[tuple[str, str]]:
    if len(http.header_map.headers):
        out = []
        for h in http.header_map.headers:
            value = h.value if h.value else h.raw_value.decode("latin-1")
            out.append((h.key.lower(), value))
        return out
    return [(k.lower(), v) for k, v in http.headers.items()]


def _option(key: str, value: str, action: int = _OVERWRITE) -> Any:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value), append_action=action)


class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):
    """The ``Check`` RPC on top of an :class:`~vcgate.server.authservice.AuthService`."""

    def __init__(self, service: AuthService) -> None:
        self.service = service

    @staticmethod
    def view_of(request: Any) -> tuple[RequestView, Any]:
        """The original request and its body as Envoy sent it (``None``: no body sent,
        :data:`TOO_LARGE`: Envoy says it sent only part of it)."""
        http = request.attributes.request.http
        path, query = _split_uri(http.path or "/")
        headers = _headers_of(http)
        first = dict(headers)
        view = RequestView(
            method=(http.method or "GET").upper(),
            path=path,
            query=query,
            host=http.host or first.get(":authority") or first.get("host"),
            scheme=_scheme(http.scheme or first.get("x-forwarded-proto")),
            headers=[(k, v) for k, v in headers if not k.startswith(":")],
        )
        body: Any = http.raw_body or (http.body.encode("utf-8") if http.body else None)
        if body is not None and first.get("x-envoy-auth-partial-body", "").lower() == "true":
            body = TOO_LARGE
        return view, body

    def Check(self, request: Any, context: Any) -> Any:  # the RPC's name, as the proto spells it
        view, body = self.view_of(request)
        result: Result = self.service.handle(view, "envoy_grpc", body)
        if result.forward:
            granted = {k.lower() for k, _ in result.grants}
            ok = external_auth_pb2.OkHttpResponse(
                headers=[_option(k, v) for k, v in result.grants],
                headers_to_remove=[h for h in result.remove if h not in granted],
            )
            return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=ok)
        headers = self.service.refusal_headers(result)
        headers.append(("content-type", "application/json"))
        denied = external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=result.status),
            # Appended: a refusal repeats WWW-Authenticate (the VP and the DPoP challenge).
            headers=[_option(k, v, _APPEND) for k, v in headers],
            body=result.body.decode(),
        )
        code = code_pb2.UNAUTHENTICATED if result.status == 401 else code_pb2.PERMISSION_DENIED
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code, message=result.code or "denied"), denied_response=denied
        )


def serve_grpc(service: AuthService, *, host: str = "127.0.0.1", port: int = 0, workers: int = 8) -> tuple[Any, int]:
    """Start the gRPC server in background threads; return it and the port it listens on."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vcgate-grpc"),
        options=[("grpc.max_receive_message_length", service.gate.max_body + 64 * 1024)],
    )
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AuthorizationServicer(service), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} for gRPC")
    server.start()
    return server, bound
