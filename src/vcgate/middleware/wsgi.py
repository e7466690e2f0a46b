"""``VCGateWSGI``: the same driver for WSGI apps (Flask).

The decision is in ``environ["vcgate.decision"]``; client ``HTTP_X_VCGATE_*`` variables are
removed and grants added as ``HTTP_X_VCGATE_*``; a body the policy needs is read up to
``max_body`` bytes (by ``CONTENT_LENGTH``) and put back as ``wsgi.input``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from ..gate import Gate, RequestView
from ._common import MAX_BODY, TOO_LARGE, dumps, model_of, token_form

__all__ = ["VCGateWSGI"]

_STATUS_TEXT = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 405: "Method Not Allowed",
                413: "Content Too Large", 503: "Service Unavailable"}


def _headers_of(environ: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append((key[5:].replace("_", "-").lower(), value))
    if environ.get("CONTENT_TYPE"):
        out.append(("content-type", environ["CONTENT_TYPE"]))
    if environ.get("CONTENT_LENGTH"):
        out.append(("content-length", environ["CONTENT_LENGTH"]))
    return out


class VCGateWSGI:
    """Guard a WSGI app with a :class:`~vcgate.gate.Gate`: ``app.wsgi_app = VCGateWSGI(app.wsgi_app, gate=gate)``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], *, gate: Gate, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.gate = gate
        self.max_body = max_body

    @staticmethod
    def _respond(start_response: Callable[..., Any], status: int, headers: Any, body: Any) -> list[bytes]:
        data = dumps(body)
        hdrs = [(k, v) for k, v in headers if k.lower() not in ("content-length", "content-type")]
        hdrs += [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response(f"{status} {_STATUS_TEXT.get(status, 'Error')}", hdrs)
        return [data]

    def _read_body(self, environ: dict[str, Any]) -> bytes | None:
        """The body, or None if it is larger than ``max_body``."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > self.max_body:
            return None
        stream = environ.get("wsgi.input")
        if stream is None or length <= 0:
            # No length (chunked): read at most max_body + 1 when the server says input terminates.
            if stream is not None and environ.get("wsgi.input_terminated"):
                data = stream.read(self.max_body + 1)
                return None if len(data) > self.max_body else data
            return b""
        return stream.read(length)

    def _view(self, environ: dict[str, Any], model: str | None = None, body_available: bool = False) -> RequestView:
        raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
        if raw:
            path = raw.split("?", 1)[0]
            if "://" in path:  # absolute-form request target
                path = "/" + path.split("://", 1)[1].partition("/")[2]
        else:
            path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
        host = environ.get("HTTP_HOST")
        if not host:
            host = environ.get("SERVER_NAME", "localhost")
            port = environ.get("SERVER_PORT")
            if port:
                host = f"{host}:{port}"
        return RequestView(
            method=environ.get("REQUEST_METHOD", "GET"),
            path=path,
            query=environ.get("QUERY_STRING", ""),
            host=host,
            scheme=environ.get("wsgi.url_scheme", "http"),
            headers=_headers_of(environ),
            model=model,
            body_available=body_available,
        )

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        gate = self.gate
        view = self._view(environ)
        if gate.is_metadata(view.path) and view.method in ("GET", "HEAD"):
            return self._respond(start_response, 200, [("Cache-Control", "max-age=300")], gate.metadata())
        ctype = environ.get("CONTENT_TYPE")
        if gate.is_token_endpoint(view.path):
            body = self._read_body(environ)
            if body is None:
                return self._respond(start_response, 413, [], TOO_LARGE)
            status, headers, payload = gate.token_endpoint(view, token_form(body, ctype))
            return self._respond(start_response, status, headers, payload)

        if gate.needs_body(view.method, view.path):
            body = self._read_body(environ)
            if body is None:
                return self._respond(start_response, 413, [], TOO_LARGE)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            view = self._view(environ, model_of(body, ctype), True)

        decision = gate.check(view)
        if not decision.allow:
            return self._respond(start_response, decision.status, decision.headers, decision.body)
        for key in [k for k in environ if k.startswith("HTTP_X_VCGATE_")]:
            del environ[key]
        for name, value in decision.grant_headers:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        environ["vcgate.decision"] = decision
        return self.app(environ, start_response)
