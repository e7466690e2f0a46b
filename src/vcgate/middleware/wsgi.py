"""``VCGateWSGI``: the pipeline for WSGI apps (Flask).

It translates ``environ`` into a :class:`~vcgate.gate.RequestView`, reads the body when the
pipeline asks (up to ``plan.max_body`` bytes, put back as ``wsgi.input``) and translates the
result back: a JSON refusal or endpoint answer, or the app called with every client
``HTTP_X_VCGATE_*`` variable removed, the grants added as ``HTTP_X_VCGATE_*`` and the decision
in ``environ["vcgate.decision"]``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from ..gate import Gate, RequestView
from ..gate.pipeline import TOO_LARGE, Result
from ..gate.request import is_gate_header
from ..usage import ResponseUsage

__all__ = ["VCGateWSGI", "environ_headers", "environ_path"]


def environ_headers(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The request headers of a WSGI ``environ`` (``HTTP_*``, content type and length)."""
    out = [(k[5:].replace("_", "-").lower(), v) for k, v in environ.items() if k.startswith("HTTP_")]
    if environ.get("CONTENT_TYPE"):
        out.append(("content-type", environ["CONTENT_TYPE"]))
    if environ.get("CONTENT_LENGTH"):
        out.append(("content-length", environ["CONTENT_LENGTH"]))
    return out


def environ_path(environ: Mapping[str, Any]) -> tuple[str, str]:
    """The request target as sent (percent-encoding intact), split into path and query.

    The policy matches raw paths and refuses ambiguous ones (dot segments, encoded slashes);
    WSGI's ``PATH_INFO`` is already decoded, so the server's raw URI is preferred (waitress:
    ``REQUEST_URI``, gunicorn: ``RAW_URI``).
    """
    raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if raw:
        # Absolute-form ("http://host/path") only: an origin-form path may contain "://" too
        # ("/v1/admin/x://y/v1/models"), which must not be cut down to "/v1/models".
        if not raw.startswith("/") and "://" in raw.split("?", 1)[0]:
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        path, _, query = raw.partition("?")
        return path or "/", query
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/:@!$&'()*+,;=-._~%")
    return path or "/", environ.get("QUERY_STRING", "")


def read_environ_body(environ: dict[str, Any], limit: int) -> Any:
    """At most ``limit`` bytes of the body (:data:`TOO_LARGE` beyond), put back for the app."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return TOO_LARGE
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if length > 0:
        data = stream.read(length)
    elif environ.get("wsgi.input_terminated"):  # chunked: the server says the stream ends
        data = stream.read(limit + 1)
        if len(data) > limit:
            return TOO_LARGE
    else:
        return b""
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    return data


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Error"


class VCGateWSGI:
    """Guard a WSGI app with a :class:`~vcgate.gate.Gate`: ``app.wsgi_app = VCGateWSGI(app.wsgi_app, gate=gate)``."""

    def __init__(self, app: Callable[..., Iterable[bytes]], *, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    @staticmethod
    def view_of(environ: Mapping[str, Any]) -> RequestView:
        path, query = environ_path(environ)
        host = environ.get("HTTP_HOST")
        if not host:
            host = environ.get("SERVER_NAME", "localhost")
            port = environ.get("SERVER_PORT")
            if port:
                host = f"{host}:{port}"
        return RequestView(
            method=environ.get("REQUEST_METHOD", "GET"),
            path=path,
            query=query,
            host=host,
            scheme=environ.get("wsgi.url_scheme", "http"),
            headers=environ_headers(environ),
        )

    @staticmethod
    def _respond(start_response: Callable[..., Any], result: Result) -> list[bytes]:
        hdrs = [(k, v) for k, v in result.headers if k.lower() not in ("content-length", "content-type")]
        hdrs += [("Content-Type", "application/json"), ("Content-Length", str(len(result.body)))]
        start_response(_status_line(result.status), hdrs)
        return [result.body]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        gate = self.gate
        view = self.view_of(environ)
        plan = gate.plan(view)
        body = read_environ_body(environ, plan.max_body) if plan.read_body else None
        result = gate.run(plan, view, body)
        if not result.forward:
            return self._respond(start_response, result)
        # HTTP_* keys are the CGI folding of header names: '-' and '_' are the same there.
        for key in [k for k in environ if k.startswith("HTTP_") and is_gate_header(k[5:])]:
            del environ[key]
        for name, value in result.grants:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        environ["vcgate.decision"] = result.decision
        if result.decision is None or result.decision.metered is None:
            return self.app(environ, start_response)
        return _Metered(self.app, gate, result.decision, environ, start_response)


class _Metered:
    """The app's answer to a call charged against limits (docs/limits.md): the body the limits
    need sent upstream, ``RateLimit`` headers added, the answer's ``usage`` settled once its
    last byte was produced -- or the charge released if the app fails or the answer is cut."""

    def __init__(self, app: Any, gate: Gate, decision: Any, environ: dict[str, Any], start_response: Any) -> None:
        metered = decision.metered
        self.gate, self.decision = gate, decision
        self.reader = ResponseUsage(strip_usage_chunk=metered.strip_usage_chunk)
        self.status = 0
        self.done = False
        if metered.body is not None:  # an output cap or include_usage was added
            environ["wsgi.input"] = io.BytesIO(metered.body)
            environ["CONTENT_LENGTH"] = str(len(metered.body))

        def metered_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            self.status = int(status.split(" ", 1)[0])
            ctype = next((v for k, v in headers if k.lower() == "content-type"), None)
            self.reader.start(ctype)
            if metered.strip_usage_chunk and ctype and "event-stream" in ctype:
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            return start_response(status, [*headers, *metered.headers], exc_info)

        try:
            self.inner = app(environ, metered_start)
        except BaseException:
            self._abort()
            raise

    def __iter__(self) -> Any:
        try:
            for chunk in self.inner:
                out = self.reader.feed(chunk)
                if out:
                    yield out
            rest, usage = self.reader.finish()
            if rest:
                yield rest
            self.done = True
            self.gate.finish_call(self.decision, usage, ok=self.status < 400)
        finally:
            self._abort()

    def _abort(self) -> None:
        if not self.done:
            self.done = True
            self.gate.abort_call(self.decision)

    def close(self) -> None:
        try:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            self._abort()
