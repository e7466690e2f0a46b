"""``vcgate serve``: one auth service for the gateways a model-serving team already runs.

A gateway asks this service about each request and forwards or refuses it. Every dialect
becomes the same :class:`~vcgate.gate.RequestView` and the same :meth:`Gate.check`:

=========================  ==========================  ==============================================
gateway                    endpoint                    where the original request is
=========================  ==========================  ==============================================
NGINX ``auth_request``     ``/nginx/auth``             ``X-Original-Method``, ``X-Original-URI``,
                                                       ``Host`` (set ``$http_host``), ``X-Forwarded-Proto``
Traefik ``ForwardAuth``    ``/traefik/auth``           ``X-Forwarded-Method/-Proto/-Host/-Uri``
Envoy ``ext_authz`` HTTP   ``/envoy/<original path>``  method, path (after ``path_prefix: /envoy``),
                                                       ``Host``, ``X-Forwarded-Proto``, body if sent
Envoy ``ext_authz`` gRPC   ``--grpc-port``             ``CheckRequest.attributes.request.http``
=========================  ==========================  ==============================================

It also answers the token endpoint (``/.well-known/vcgate/token``) and the RFC 9728 metadata
(``/.well-known/oauth-protected-resource``), which the gateway routes here unguarded, so
session mode works behind every gateway; ``/metrics`` (Prometheus) and ``/healthz`` /
``/readyz``.

Decisions made here:

* **The gateway is trusted for the request line, never for grants.** The service is meant to
  be reachable only from the gateway (it binds 127.0.0.1 by default), so the original method,
  URI, host and scheme it reports are taken as they come. Client ``x-vcgate-*`` headers are
  never trusted: the answer tells each gateway to drop them (Envoy ``headers_to_remove`` /
  ``x-envoy-auth-headers-to-remove``; Traefik drops what ``authResponseHeadersRegex`` matches;
  the NGINX snippet overwrites every grant header the policy can set).
* **NGINX can only pass 2xx, 401 and 403 on.** Any other refusal (400, 413, 429, 503) is
  answered 403 with its real status in ``X-Vcgate-Status``; the documented snippet turns it
  back into that status. Every refusal carries ``X-Vcgate-Error`` (the code) so the gateway can
  build the JSON body the client gets.
* **Forward-auth has no body.** A rule that matches on the OpenAI ``model`` is undecidable
  there and refused ``body_required`` by the policy; Envoy with ``with_request_body`` and the
  in-process middleware can decide it.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .. import __version__
from ..gate import Gate, RequestView
from ..gate.pipeline import TOO_LARGE, Result, dumps
from ..middleware.wsgi import environ_headers, environ_path
from ..errors import MalformedError, VCGateError
from ..strictjson import loads_strict
from ..usage import LimitMetrics, Usage
from .metrics import CONTENT_TYPE, Metrics

#: Where a gateway reports the usage of a call the auth service reserved (docs/limits.md).
USAGE_PATH = "/.well-known/vcgate/usage"
_MAX_USAGE_REPORT = 64 * 1024

__all__ = ["AuthService", "create_app"]

_NGINX_PASSES = (401, 403)
_SCHEMES = ("http", "https")
_HOP = ("connection", "keep-alive", "transfer-encoding", "content-length", "host")


#: What the auth service itself answers with; the NGINX snippet clears each of them upstream.
SERVICE_HEADERS = ("x-vcgate-decision-subject", "x-vcgate-error", "x-vcgate-message", "x-vcgate-status")
_HEADER_SAFE = {ord('"'): "'", ord("\\"): "/"}


def _one_line(text: str, limit: int = 512) -> str:
    """A header-safe rendering of a message: no CR/LF or other controls, bounded, and no
    ``"`` or ``\\`` so NGINX can put it in a JSON body verbatim."""
    return "".join(ch if 32 <= ord(ch) < 127 else " " for ch in text).translate(_HEADER_SAFE)[:limit]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _scheme(value: str | None) -> str:
    value = (value or "").split(",", 1)[0].strip().lower()
    return value if value in _SCHEMES else "http"


def _split_uri(uri: str) -> tuple[str, str]:
    path, _, query = uri.partition("?")
    return path or "/", query


class AuthService:
    """The framework-neutral part: dialect -> :class:`RequestView` -> decision -> answer.

    ``gate`` decides; ``mirror`` (a :class:`~vcgate.status.mirror.RevocationMirror`, optional)
    is reported in ``/readyz`` and the metrics.
    """

    def __init__(
        self,
        gate: Gate,
        *,
        mirror: Any = None,
        metrics: Metrics | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.gate = gate
        self.mirror = mirror
        self.metrics = metrics if metrics is not None else Metrics(mirror=mirror, gate=gate, version=__version__,
                                                                   audience=gate.audience)
        if gate.meter.metrics is None:  # limits counted per limit name in the service's registry
            gate.meter.metrics = LimitMetrics(self.metrics.registry)
        self._timer = timer

    # --- deciding -------------------------------------------------------------------------

    def handle(self, view: RequestView, adapter: str, body: bytes | None = None, *, endpoints: bool = False) -> Result:
        """The pipeline (:meth:`Gate.plan` + :meth:`Gate.run`) with the metrics around it.

        ``body`` is what the dialect could read (``None``: it sees no bodies); it is used only
        when the plan needs it. ``endpoints``: this is the service's own token or metadata
        route rather than a request a gateway asks about.
        """
        start = self._timer()
        plan = self.gate.plan(view, endpoints=endpoints)
        result = self.gate.run(plan, view, body if plan.read_body else None)
        d = result.decision
        if d is not None:
            self.metrics.observe(adapter, d.allow, d.code, self._timer() - start, status=d.status)
        return result

    def needs_body(self, view: RequestView) -> bool:
        return self.gate.plan(view, endpoints=False).read_body

    # --- health -----------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the policy is loaded, the mirror (if any) answers and the audit log takes records."""
        ready = True
        self.gate.reload_if_changed()
        # A policy edit that does not load keeps the last good policy and the service ready
        # (taking every replica out over a typo would be an outage); it is reported here and
        # by vcgate_policy_stale / vcgate_policy_reload_failures_total for alerting.
        state = self.gate.policy_state
        checks: dict[str, Any] = {"policy": {
            "status": "stale" if state.stale else "ok",
            "sha256": state.sha256,
            "loaded_at": _iso(state.loaded_at),
            "reload_failures": state.reload_failures,
            **({"last_error": state.last_error, "last_error_at": _iso(state.last_error_at)} if state.stale else {}),
        }}
        if self.mirror is not None:
            lag = self.mirror.lag()
            checks["mirror"] = {
                "healthy": lag.healthy,
                "lag_seconds": lag.seconds,
                "blocks_behind": lag.blocks_behind,
                "synced_block": lag.synced_block,
                "chain_mismatch": lag.chain_mismatch,
            }
            ready = ready and lag.healthy
        audit = self.gate.audit
        if audit is not None:
            ok = audit.healthy
            checks["audit"] = "ok" if ok else "unavailable"
            ready = ready and ok
        return ready, checks

    # --- dialects: request in ---------------------------------------------------------------

    @staticmethod
    def forward_view(headers: list[tuple[str, str]], *, flavour: str) -> RequestView | None:
        """The original request of an NGINX ``auth_request`` / Traefik ``ForwardAuth`` call.

        None when the gateway did not say what the original request was (a configuration
        error, answered 400 so it is not mistaken for a refusal of the client).
        """
        first: dict[str, str] = {}
        for k, v in headers:
            first.setdefault(k, v)
        if flavour == "nginx":
            # Host only: the subrequest carries every client header, so an X-Original-Host or
            # X-Forwarded-Host could be the client's (the snippet sets Host to $http_host).
            method, uri = first.get("x-original-method"), first.get("x-original-uri")
            host = first.get("host")
        else:
            method, uri = first.get("x-forwarded-method"), first.get("x-forwarded-uri")
            host = first.get("x-forwarded-host") or first.get("host")
        if not method or not uri:
            return None
        path, query = _split_uri(uri)
        return RequestView(
            method=method.upper(),
            path=path,
            query=query,
            host=host,
            scheme=_scheme(first.get("x-forwarded-proto")),
            headers=headers,
        )

    # --- dialects: answer out --------------------------------------------------------------

    def unclearable_grant_headers(self, view: RequestView) -> list[str]:
        """Client ``x-vcgate-*`` headers an NGINX snippet made by ``vcgate policy nginx-snippet``
        would not overwrite: neither a grant of the current policy nor one of the service's own."""
        known = set(self.gate.policy.grant_header_names).union(SERVICE_HEADERS)
        return [h for h in view.gate_headers() if h not in known]

    @staticmethod
    def refusal_headers(result: Result) -> list[tuple[str, str]]:
        """The refusal's headers plus its code and message as headers, for gateways that drop bodies."""
        headers = [(k, v) for k, v in result.headers if k.lower() not in ("content-type", "content-length")]
        d = result.decision
        headers.append(("X-Vcgate-Error", (d.code if d is not None else None) or "denied"))
        headers.append(("X-Vcgate-Message", _one_line(d.message if d is not None else "")))
        return headers

    def limit_headers(self, result: Result) -> list[tuple[str, str]]:
        """For a call charged against limits: its signed reservation (``X-Vcgate-Reservation``,
        for the usage report) and the RateLimit values, for the gateway to use; never meant
        for the client or the upstream (docs/limits.md)."""
        d = result.decision
        if d is None or d.metered is None:
            return []
        token = self.gate.reservation(d)
        return [("X-Vcgate-Reservation", token)] if token else []

    def answer_forward(self, result: Result, *, flavour: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """NGINX / Traefik answer: 200 with grants, or the refusal."""
        if result.forward:
            headers = list(result.grants)
            d = result.decision
            if d is not None and d.subject:
                headers.append(("X-Vcgate-Decision-Subject", d.subject))
            headers.extend(self.limit_headers(result))
            return 200, headers, b""
        headers = self.refusal_headers(result)
        status = result.status
        if flavour == "nginx" and status not in _NGINX_PASSES:
            headers.append(("X-Vcgate-Status", str(status)))
            status = 403
        headers.append(("Content-Type", "application/json"))
        return status, headers, result.body

    def answer_envoy_http(self, result: Result) -> tuple[int, list[tuple[str, str]], bytes]:
        """Envoy ``ext_authz`` HTTP answer: 200 + grants + headers to remove, or the refusal."""
        if result.forward:
            headers = list(result.grants)
            granted = {k.lower() for k, _ in result.grants}
            # WSGI folds '_' into '-' before the service sees a name, so the spelling the
            # client used is unknown here: name both. (Mixed spellings are dropped at the edge:
            # the shipped Envoy configs set headers_with_underscores_action: DROP_HEADER.)
            drop = list(dict.fromkeys(v for h in result.remove for v in (h, h.replace("-", "_"))))
            drop = [h for h in drop if h not in granted]
            if drop:
                headers.append(("x-envoy-auth-headers-to-remove", ",".join(drop)))
            headers.extend(self.limit_headers(result))
            return 200, headers, b""
        headers = self.refusal_headers(result)
        headers.append(("Content-Type", "application/json"))
        return result.status, headers, result.body


# --- the Flask app ------------------------------------------------------------------------------

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(service: AuthService, *, envoy_prefix: str = "/envoy") -> Any:
    """The Flask app of ``vcgate serve`` around ``service``."""
    from flask import Flask, Response, got_request_exception, request
    from werkzeug.exceptions import HTTPException

    from ..errors import MethodNotAllowedError, NotFoundError

    gate = service.gate
    app = Flask("vcgate.server")
    # An exception no handler caught (Flask answers 500): counted for the alert rules.
    got_request_exception.connect(lambda _sender, **_kw: service.metrics.internal_errors.inc(), app, weak=False)
    # Paths are the gateway's business and the policy refuses the ambiguous ones itself; the
    # router must not merge '//' or redirect to a trailing slash behind the gateway's back.
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    prefix = "/" + envoy_prefix.strip("/")

    def respond(status: int, headers: Iterable[tuple[str, str]], body: Any) -> Response:
        data = body if isinstance(body, bytes) else dumps(body)
        resp = Response(data, status=status)
        resp.headers.clear()
        for k, v in headers:
            if k.lower() not in ("content-length",):
                resp.headers.add(k, v)
        if data and "Content-Type" not in resp.headers:
            resp.headers["Content-Type"] = "application/json"
        return resp

    def error(exc_cls: type, status: int | None = None, message: str | None = None) -> Response:
        exc = exc_cls(message) if message else exc_cls()
        return respond(status or exc.status, [("Cache-Control", "no-store")], exc.to_dict())

    def read_body(limit: int) -> Any:
        """The request body up to ``limit`` bytes, :data:`TOO_LARGE` beyond."""
        length = request.content_length
        if length is not None and length > limit:
            return TOO_LARGE
        data = request.stream.read(limit + 1)
        return TOO_LARGE if len(data) > limit else data

    def send(result: Result) -> Response:
        return respond(result.status, result.headers, result.body)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if exc.code == 404:
            return error(NotFoundError)
        if exc.code == 405:
            return error(MethodNotAllowedError)
        body = {"error": "malformed" if (exc.code or 500) < 500 else "error", "message": exc.description or exc.name}
        return respond(exc.code or 500, [], body)

    @app.get("/healthz")
    def healthz() -> Response:
        return respond(200, [("Cache-Control", "no-store")], {"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        ready, checks = service.readiness()
        return respond(200 if ready else 503, [("Cache-Control", "no-store")],
                       {"status": "ready" if ready else "not_ready", "checks": checks})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(service.metrics.render(), status=200, content_type=CONTENT_TYPE)

    def own_view() -> RequestView:
        """A request to the service itself (token endpoint, metadata). The gateway proxies
        those with the client's Host, which the DPoP ``htu`` is bound to; X-Forwarded-Host
        could come from the client through Envoy, so it is not read."""
        path, query = environ_path(request.environ)
        return RequestView(
            method=request.method,
            path=path,
            query=query,
            host=request.host,
            scheme=_scheme(request.headers.get("X-Forwarded-Proto")),
            headers=environ_headers(request.environ),
        )

    @app.route("/.well-known/oauth-protected-resource", methods=["GET", "HEAD"])
    def metadata() -> Response:
        return send(service.handle(own_view(), "metadata", endpoints=True))

    def token() -> Response:
        view = own_view()
        return send(service.handle(view, "token", read_body(gate.max_body), endpoints=True))

    app.add_url_rule(gate.token_path, "token", token, methods=_ALL_METHODS)

    @app.post(USAGE_PATH)
    def usage() -> Response:
        """The usage report of a gateway that cannot show the gate its responses (docs/limits.md)."""
        data = read_body(_MAX_USAGE_REPORT)
        try:
            report = loads_strict(data if type(data) is bytes else b"", max_depth=4, what="the usage report")
            if not isinstance(report, dict) or not isinstance(report.get("reservation"), str):
                raise MalformedError("the usage report needs a 'reservation'")
            failed = report.get("outcome") == "failed"
            used = Usage.from_mapping(report.get("usage"))
            if not failed and report.get("usage") is not None and used is None:
                raise MalformedError("'usage' needs prompt_tokens and completion_tokens (non-negative integers)")
            gate.report_usage(report["reservation"], used, ok=not failed)
        except VCGateError as exc:
            return respond(exc.status, [("Cache-Control", "no-store")], exc.to_dict())
        return Response(status=204)

    def forward(flavour: str) -> Response:
        view = service.forward_view(environ_headers(request.environ), flavour=flavour)
        if view is None:
            names = "X-Original-Method and X-Original-URI" if flavour == "nginx" else "X-Forwarded-Method and X-Forwarded-Uri"
            decision_status = 400
            body = {"error": "request_invalid", "message": f"the gateway did not send {names}"}
            headers = [("X-Vcgate-Error", "request_invalid"), ("X-Vcgate-Message", body["message"])]
            if flavour == "nginx":  # only 401/403 reach the client through auth_request
                headers.append(("X-Vcgate-Status", "400"))
                decision_status = 403
            return respond(decision_status, headers, body)
        if flavour == "nginx":
            stray = service.unclearable_grant_headers(view)
            if stray:
                # NGINX cannot drop headers by prefix: one the snippet does not overwrite
                # would reach upstream as the client wrote it. Legitimate clients never send them.
                message = f"x-vcgate-* headers are set by the gateway, not the client: {', '.join(stray)}"
                body = {"error": "request_invalid", "message": message}
                return respond(403, [("X-Vcgate-Error", "request_invalid"), ("X-Vcgate-Status", "400"),
                                     ("X-Vcgate-Message", _one_line(message))], body)
        # Forward-auth sees no body: a rule the model decides is answered body_required.
        result = service.handle(view, flavour)
        status, headers, data = service.answer_forward(result, flavour=flavour)
        return respond(status, headers, data)

    app.add_url_rule("/nginx/auth", "nginx", lambda: forward("nginx"), methods=_ALL_METHODS)
    app.add_url_rule("/traefik/auth", "traefik", lambda: forward("traefik"), methods=_ALL_METHODS)

    def envoy(rest: str = "") -> Response:
        raw_path, query = environ_path(request.environ)
        view = RequestView(
            method=request.method,
            path=raw_path.removeprefix(prefix) or "/",
            query=query,
            host=request.host,
            scheme=_scheme(request.headers.get("X-Forwarded-Proto")),
            headers=environ_headers(request.environ),
        )
        body = None
        if service.needs_body(view):
            # Envoy sends the body only with with_request_body; a partial one (over its
            # max_request_bytes with allow_partial_message) cannot be decided on.
            if request.headers.get("x-envoy-auth-partial-body", "").lower() == "true":
                body = TOO_LARGE
            elif request.content_length or request.headers.get("Transfer-Encoding"):
                body = read_body(gate.max_body)
        status, out, data = service.answer_envoy_http(service.handle(view, "envoy_http", body))
        return respond(status, out, data)

    app.add_url_rule(prefix, "envoy_root", envoy, methods=_ALL_METHODS)
    app.add_url_rule(prefix + "/<path:rest>", "envoy", envoy, methods=_ALL_METHODS)
    return app
