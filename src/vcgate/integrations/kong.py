"""Kong: the logic of the ``vcgate_kong`` plugin for Kong's Python plugin server (kong-pdk).

Kong runs Python plugins out of process: ``kong-python-pluginserver`` loads
``plugins/kong/vcgate_kong.py``, Kong starts one ``Plugin(config)`` per plugin configuration
(``plugin.StartInstance``) and, for each request, runs its ``access(kong)`` phase; every
``kong.*`` call inside it is a MessagePack-RPC round trip back to Kong over a Unix socket.
This module holds everything but the names kong-pdk looks up, so it can be tested and read
without kong-pdk.

``access`` builds a :class:`~vcgate.gate.RequestView` from ``kong.request`` (the raw path, as
the ASGI middleware uses, since the policy refuses ambiguous paths rather than normalising
them; scheme, host and port as Kong's ``get_forwarded_*`` report them, which honour
``X-Forwarded-*`` only from Kong's ``trusted_ips``), reads the body only when the policy may
need the OpenAI ``model`` field, and then

* allows: ``kong.service.request.clear_header`` for every client ``x-vcgate-*`` header, then
  ``set_header`` for each grant, and returns (Kong proxies);
* refuses: ``kong.response.exit(status, json, headers)`` with the challenge headers;
* answers the token endpoint and the RFC 9728 metadata itself with ``kong.response.exit``.

Decisions:

* **Both PDK return styles.** kong-pdk returns ``(value, err)`` tuples unless the server runs
  with ``--no-lua-style`` (then a value, and errors raise). :func:`_pdk` accepts both.
* **Never raise out of a phase.** In kong-pdk's threaded server a handler that raises never
  reports back, and Kong's request waits on the socket; any unexpected error is answered with
  a 500 ``internal_error`` instead (fail closed).
* **One gate per configuration and process.** Kong starts an instance per plugin entry
  (per route, service or global) and restarts them; the token endpoint's route and a model
  route may hit different instances, and a token issued by one gate is ``session_unknown``
  at another. So instances with equal settings share one :class:`~vcgate.assembly.AssembledGate`.
* **Not picklable.** kong-pdk's ``-m`` (multiprocessing) mode pickles the plugin object into
  a pool worker for every event, which would copy the gate (nonces, sessions, replay cache)
  per request; the plugin refuses to be pickled so that mode fails loudly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from .. import __version__
from ..assembly import GateConfig, SharedGates
from ..gate import Gate, RequestView
from ..gate.pipeline import TOO_LARGE, Result, dumps
from ..gate.request import is_gate_header

__all__ = ["PRIORITY", "SCHEMA", "VERSION", "KongPlugin"]

logger = logging.getLogger("vcgate.integrations.kong")

#: The plugin's configuration fields (Kong schema format); unset fields fall back to ``VCGATE_*``.
SCHEMA: tuple[dict[str, Any], ...] = (
    {"policy": {"type": "string", "required": False}},
    {"key_file": {"type": "string", "required": False}},
    {"redis_url": {"type": "string", "required": False}},
    {"audit_log": {"type": "string", "required": False}},
)
#: Before Kong's rate limiting (910) and logging plugins, among the authentication plugins.
PRIORITY = 1400
VERSION = __version__

#: ``kong.request.get_headers`` returns at most this many headers (Kong's own ceiling). A
#: request with more is refused: an ``x-vcgate-*`` header past the limit could not be stripped.
MAX_HEADERS = 1000

_CONFIG_FIELDS = ("policy", "key_file", "redis_url", "audit_log")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_INTERNAL = {"error": "internal_error", "message": "the gateway could not decide this request"}
_TOO_MANY_HEADERS = {"error": "request_invalid", "message": "the request has too many headers"}


class PDKError(Exception):
    """A PDK call answered with an error (Lua-style ``(None, err)``)."""


def _pdk(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a PDK function; its value whichever return style the plugin server uses."""
    result = fn(*args)
    # Lua style is a 2-tuple; msgpack never decodes a value as a tuple (arrays are lists).
    if isinstance(result, tuple) and len(result) == 2:
        value, err = result
        if err:
            raise PDKError(str(err))
        return value
    return result


class KongPlugin:
    """The plugin kong-pdk instantiates as ``Plugin(config)``; only ``access`` is a phase.

    ``config`` is the plugin entry's configuration (see :data:`SCHEMA`); fields left unset come
    from the ``VCGATE_*`` environment of the plugin server (:meth:`GateConfig.from_env`).
    Secrets (``VCGATE_PASSPHRASE``) are read from the environment only, never from Kong's
    configuration store.
    """

    #: The plugin server's runtimes, one per configuration: instances for several routes with
    #: the same settings share one gate (see :class:`~vcgate.assembly.SharedGates`).
    runtimes: ClassVar[SharedGates] = SharedGates()

    def __init__(self, config: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None) -> None:
        config = dict(config or {})
        overrides = {name: config[name] for name in _CONFIG_FIELDS if config.get(name)}
        self.gate_config = GateConfig.from_env(environ, **overrides)
        self.runtime = self.runtimes.get(self.gate_config)
        self.gate: Gate = self.runtime.gate

    def __reduce__(self) -> Any:
        raise TypeError(
            "the vcgate Kong plugin cannot run in kong-pdk's multiprocessing mode (-m): each event "
            "would get a copy of the gate; run the plugin server threaded (the default)"
        )

    @classmethod
    def close_all(cls) -> None:
        """Close every runtime (tests; a plugin server that is shutting down)."""
        cls.runtimes.close_all()

    # --- the access phase ---------------------------------------------------------------------

    def access(self, kong: Any) -> None:
        """Decide the request; proxy it (grant headers set) or answer it with ``kong.response.exit``."""
        try:
            self._access(kong)
        except Exception:
            logger.exception("vcgate: the Kong plugin failed; refusing the request")
            _exit(kong, 503, [("Content-Type", "application/json")], _INTERNAL)

    def _access(self, kong: Any) -> None:
        gate = self.gate
        req = kong.request
        method = _pdk(req.get_method)
        path = _pdk(req.get_raw_path) or "/"
        query = _pdk(req.get_raw_query) or ""
        scheme = (_pdk(req.get_forwarded_scheme) or "http").lower()
        host = _pdk(req.get_forwarded_host)
        port = _pdk(req.get_forwarded_port)
        headers = _pdk(req.get_headers, MAX_HEADERS) or {}
        if sum(len(v) if isinstance(v, list) else 1 for v in headers.values()) >= MAX_HEADERS:
            _exit(kong, 400, [], _TOO_MANY_HEADERS)
            return
        if host and port and int(port) != _DEFAULT_PORTS.get(scheme):
            host = f"{host}:{int(port)}"
        view = RequestView(method=method, path=path, query=query, host=host, scheme=scheme, headers=headers)

        plan = gate.plan(view)
        body = self._body(kong, plan.max_body) if plan.read_body else None
        result = gate.run(plan, view, body)
        if not result.forward:
            _exit(kong, result.status, result.headers, result.body)
            return
        _forward(kong, headers, result)

    @staticmethod
    def _body(kong: Any, limit: int) -> Any:
        """The request body, :data:`TOO_LARGE` when over ``limit`` or when Kong cannot hand it
        over (it answers nil or an error for bodies it spooled to disk: the large ones; an
        empty body is an empty string)."""
        try:
            raw = _pdk(kong.request.get_raw_body)
        except Exception:  # noqa: BLE001
            return TOO_LARGE
        # Kong's RPC sends the body as msgpack binary; older Kongs sent a string.
        if raw is None:
            return TOO_LARGE
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        return data if len(data) <= limit else TOO_LARGE


def _forward(kong: Any, headers: Mapping[str, Any], result: Result) -> None:
    upstream = kong.service.request
    for name in headers:
        if is_gate_header(name):
            _pdk(upstream.clear_header, name)
    for name, value in result.grants:
        _pdk(upstream.set_header, name, value)


def _exit(kong: Any, status: int, headers: Any, body: Any) -> None:
    """``kong.response.exit`` with a JSON body; repeated headers (two challenges) as lists."""
    out: dict[str, Any] = {}
    for name, value in headers:
        if name.lower() == "content-length":
            continue
        if name in out:
            prev = out[name]
            out[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[name] = value
    if not any(k.lower() == "content-type" for k in out):
        out["Content-Type"] = "application/json"
    # A str, not a table: Kong would re-encode a table with its own key order and escaping.
    data = body if isinstance(body, bytes) else dumps(body)
    kong.response.exit(status, data.decode(), out)
