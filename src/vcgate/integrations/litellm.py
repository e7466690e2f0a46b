"""LiteLLM proxy: ``general_settings: custom_auth: vcgate.integrations.litellm.user_api_key_auth``.

LiteLLM's proxy calls a ``custom_auth`` function as ``await fn(request=request, api_key=api_key)``
for every route guarded by its own ``user_api_key_auth`` dependency (the OpenAI routes among
them); the function returns a ``UserAPIKeyAuth`` to allow and raises to refuse
(``litellm/proxy/auth/user_api_key_auth.py``). It finds the function through
``get_instance_fn`` (``litellm/proxy/types_utils/utils.py``): a file named after the dotted
module next to the config file if there is one, else ``importlib.import_module`` -- so the
installed package is enough and no shim file is needed.

What this module adds to the generic adapters:

* **Headers, not** ``api_key``. LiteLLM strips ``Bearer`` from ``Authorization`` and hands over
  nothing useful for the ``VP`` and ``DPoP`` schemes, so the :class:`~vcgate.gate.RequestView`
  is built from the Starlette request itself.
* **The body LiteLLM parsed.** By the time ``custom_auth`` runs LiteLLM has read and parsed the
  body and caches the result on the request; :func:`litellm.proxy.common_utils.http_parsing_utils.read_request_body`
  returns that cached dict. Deciding on the very object LiteLLM routes on leaves no room for a
  parser differential (a body whose ``model`` reads one way to vcgate and another to LiteLLM).
  A declared ``Content-Length`` above ``max_body`` is refused ``413 too_large`` first.
* **Refusals are** ``ProxyException``. LiteLLM renders it as
  ``{"error": {"message", "type", "param", "code"}}`` with ``code`` as the HTTP status, and
  sends the exception's ``headers`` -- so the 401 carries ``WWW-Authenticate`` and the vcgate
  client can run its flow through LiteLLM. The vcgate error code is the ``type`` (the OpenAI
  SDK's ``exc.type``); the gate's whole JSON refusal is under
  ``error.provider_specific_fields.vcgate``. ``ProxyException.headers`` is a plain dict, so
  the two challenges (``VP`` and ``DPoP``) travel as one ``WWW-Authenticate`` field with two
  comma-separated challenges, which RFC 9110 section 11.6.1 allows and the client parses.
* **The token endpoint.** A ``POST /.well-known/vcgate/token`` never reaches ``custom_auth``
  (no LiteLLM route matches it), and Starlette forbids adding middleware once the app has
  started, which it has when LiteLLM loads the config. Routes, however, may be added at any
  time: importing this module inside the proxy puts one route for the token path at the front
  of the proxy app's routes (:func:`install_routes`). LiteLLM loads ``custom_auth`` at start-up
  in every worker, so every worker serves it.
* **Grant headers go upstream through a callback.** ``custom_auth`` cannot change what LiteLLM
  sends to the model; its documented ``async_pre_call_hook`` can. Add
  ``litellm_settings: callbacks: ["vcgate.integrations.litellm.grant_headers"]`` and every
  allowed call reaches the model with the policy's grant headers as ``extra_headers``, any
  client-supplied ``x-vcgate-*`` header removed first (see :class:`GrantHeaders`).

LiteLLM already serves ``/.well-known/oauth-protected-resource`` for its MCP gateway, so the
RFC 9728 metadata is not published here; the challenge names the token endpoint, which is all
a vcgate client needs.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..assembly import AssembledGate, GateConfig
from ..gate import DEFAULT_TOKEN_PATH, Decision, Gate, RequestView
from ..gate.pipeline import TOO_LARGE, Result
from ..gate.request import is_gate_header
from ..middleware.asgi import settled, view_of_scope

__all__ = ["GrantHeaders", "LiteLLMGate", "grant_headers", "install_routes", "user_api_key_auth"]

log = logging.getLogger("vcgate.integrations.litellm")

# Headers LiteLLM's JSONResponse sets itself; copying the gate's would duplicate them.
_OWN_HEADERS = frozenset({"content-type", "content-length"})
_ROUTE_MARK = "vcgate_token_endpoint"
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _declared_length(headers: Any) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def view_of(request: Any) -> RequestView:
    """The :class:`RequestView` of a Starlette request.

    ``path`` is the raw request target (percent-encoding intact), ``scheme`` the ASGI scope's:
    uvicorn rewrites it from ``X-Forwarded-Proto`` only for peers in ``FORWARDED_ALLOW_IPS``
    (its explicit trust setting), so a client cannot choose the scheme the DPoP ``htu`` is
    checked against.
    """
    return view_of_scope(request.scope)


async def _read_body(request: Any, limit: int) -> Any:
    """The body (Starlette caches it, so LiteLLM's own read costs nothing more), or
    :data:`TOO_LARGE` beyond ``limit`` bytes."""
    declared = _declared_length(request.headers)
    if declared is not None and declared > limit:
        return TOO_LARGE
    chunks: list[bytes] = []
    size = 0
    cached = getattr(request, "_body", None)
    if isinstance(cached, bytes):  # already read (by LiteLLM): use it
        chunks.append(cached)
        size = len(cached)
    else:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return TOO_LARGE
            chunks.append(chunk)
        request._body = b"".join(chunks)  # Starlette's cache: the host reads it again from here
    return TOO_LARGE if size > limit else b"".join(chunks)


def _proxy_exception(status: int, code: str, message: str, headers: Any = (), body: Mapping[str, Any] | None = None) -> Exception:
    """LiteLLM's ``ProxyException`` for a refusal: status in ``code``, vcgate code in ``type``."""
    from litellm.proxy._types import ProxyException

    out: dict[str, str] = {}
    for name, value in headers:
        if name.lower() in _OWN_HEADERS:
            continue
        key = "WWW-Authenticate" if name.lower() == "www-authenticate" else name
        # A dict holds one value per name: several challenges share one field (RFC 9110 11.6.1).
        out[key] = f"{out[key]}, {value}" if key in out else value
    return ProxyException(
        message=message,
        type=code,
        param=None,
        code=status,
        headers=out,
        provider_specific_fields={"vcgate": dict(body) if body is not None else {"error": code, "message": message}},
    )


class LiteLLMGate:
    """The gate of one LiteLLM process, built on first use, and the two things LiteLLM calls.

    :param config: returns the settings; default :meth:`GateConfig.from_env`.
    :param runtime: an already built runtime (tests); ``config`` is then not used.
    :param gate_options: passed to :meth:`GateConfig.build` (a clock, a status checker,
        ``max_body``).
    """

    def __init__(
        self,
        *,
        config: Callable[[], GateConfig] = GateConfig.from_env,
        runtime: AssembledGate | None = None,
        gate_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._gate_options = dict(gate_options or {})
        self._lock = threading.Lock()

    # --- the gate ---------------------------------------------------------------------------

    def runtime(self) -> AssembledGate:
        """The runtime, built once (thread-safe). Building may wait for the revocation mirror."""
        runtime = self._runtime
        if runtime is not None:
            return runtime
        with self._lock:
            if self._runtime is None:
                built = self._config().build(**self._gate_options)
                atexit.register(built.close)  # LiteLLM offers plugins no shutdown hook
                self._runtime = built
            return self._runtime

    async def gate(self) -> Gate:
        runtime = self._runtime
        if runtime is None:
            # The first call builds off the event loop: a mirror's first sync may take seconds.
            runtime = await asyncio.to_thread(self.runtime)
        return runtime.gate

    def close(self) -> None:
        with self._lock:
            runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()

    # --- custom_auth ------------------------------------------------------------------------

    async def authenticate(self, request: Any, api_key: str | None = None) -> Any:
        """LiteLLM's ``custom_auth``: a ``UserAPIKeyAuth`` for an allow, ``ProxyException`` otherwise.

        ``api_key`` is ignored: LiteLLM derives it from ``Authorization`` only for ``Bearer``.
        """
        gate = await self.gate()
        result = await self._run(gate, request, endpoints=False)  # the token route is separate
        if not result.forward:
            d = result.decision
            assert d is not None
            raise _proxy_exception(result.status, d.code or "denied", d.message, result.headers, d.body)
        return user_auth_of(result.decision)

    @staticmethod
    async def _run(gate: Gate, request: Any, *, endpoints: bool) -> Result:
        view = view_of(request)
        plan = gate.plan(view, endpoints=endpoints)
        body = await _read_body(request, plan.max_body) if plan.read_body else None
        return await settled(gate, gate.run(plan, view, body, wait=False))

    # --- the token endpoint -----------------------------------------------------------------

    async def token_endpoint(self, request: Any) -> Any:
        """``/.well-known/vcgate/token`` as a Starlette endpoint (see :func:`install_routes`)."""
        from starlette.responses import Response

        result = await self._run(await self.gate(), request, endpoints=True)
        response = Response(result.body, status_code=result.status, media_type="application/json")
        response.raw_headers.extend(
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in result.headers if k.lower() not in _OWN_HEADERS
        )
        return response


def user_auth_of(decision: Decision) -> Any:
    """The ``UserAPIKeyAuth`` LiteLLM gets for an allowed call.

    ``user_id`` is the subject (so LiteLLM's spend logs and per-user limits key on it); the
    role is ``internal_user``, never an admin role, whatever the policy allowed; ``metadata``
    carries the decision for LiteLLM callbacks (and :class:`GrantHeaders`).
    """
    from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

    subject = decision.subject or decision.holder or "anonymous"
    return UserAPIKeyAuth(
        # LiteLLM logs and keys spend on this as the "key": one stable id per subject, not a secret.
        api_key=f"vcgate:{subject}",
        user_id=subject,
        user_role=LitellmUserRoles.INTERNAL_USER,
        metadata={
            "vcgate": {
                "subject": decision.subject,
                "holder": decision.holder,
                "issuer": decision.issuer,
                "rule": decision.rule,
                "mode": decision.mode,
                "scopes": list(decision.scopes),
                "grant_headers": dict(decision.grant_headers),
            }
        },
    )


def _base_custom_logger() -> type:
    try:
        from litellm.integrations.custom_logger import CustomLogger
    except ImportError:  # outside LiteLLM the hook is still importable, and inert
        return object
    return CustomLogger


class GrantHeaders(_base_custom_logger()):  # type: ignore[misc]
    """A LiteLLM callback that sends the policy's grant headers to the model.

    ``async_pre_call_hook`` runs after ``custom_auth`` with its ``UserAPIKeyAuth`` and the
    request data LiteLLM will send. Any ``x-vcgate-*`` header a client managed to put there
    (``extra_headers`` in the body, or client headers LiteLLM forwards with
    ``forward_client_headers_to_llm_api``) is removed before the grants are added, so the
    model can trust them.
    """

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> dict:
        for name in ("headers", "extra_headers"):
            current = data.get(name)
            if isinstance(current, Mapping):
                data[name] = {k: v for k, v in current.items() if not is_gate_header(str(k))}
        meta = getattr(user_api_key_dict, "metadata", None) or {}
        grants = meta.get("vcgate", {}).get("grant_headers") if isinstance(meta, Mapping) else None
        if grants:
            extra = dict(data.get("extra_headers") or {})
            extra.update(grants)
            data["extra_headers"] = extra
        return data


# LiteLLM imports ``custom_auth`` and callbacks by dotted path and calls them with no way to
# pass an object in, so the process's gate has to be reachable from the module. It lives in
# one LiteLLMGate (lock-guarded, built on first use), not in loose globals.
_DEFAULT = LiteLLMGate()

#: The callback instance for ``litellm_settings: callbacks``.
grant_headers = GrantHeaders()


async def user_api_key_auth(request: Any, api_key: str | None) -> Any:
    """LiteLLM ``custom_auth``: decide the request with the process's gate (``VCGATE_*`` env)."""
    return await _DEFAULT.authenticate(request, api_key)


async def token_endpoint(request: Any) -> Any:
    """The token endpoint of the process's gate, as a Starlette endpoint."""
    return await _DEFAULT.token_endpoint(request)


def install_routes(app: Any, *, endpoint: Callable[[Any], Any] = token_endpoint, path: str = DEFAULT_TOKEN_PATH) -> bool:
    """Serve the token endpoint on a running Starlette / FastAPI ``app``; False if already there.

    The route goes first so no catch-all route of the host app shadows it. Every method is
    routed to the gate, which answers ``405`` for anything but POST.
    """
    from starlette.routing import Route

    routes = app.router.routes
    if any(getattr(r, "name", None) == _ROUTE_MARK for r in routes):
        return False
    routes.insert(0, Route(path, endpoint, methods=_ALL_METHODS, name=_ROUTE_MARK, include_in_schema=False))
    return True


def _install_into_proxy() -> None:
    # Only inside a running LiteLLM proxy: importing the proxy server from here would start
    # building LiteLLM's whole app (and its side effects) in any process that imports vcgate.
    proxy = sys.modules.get("litellm.proxy.proxy_server")
    app = getattr(proxy, "app", None)
    if app is None:
        return
    # Check the configuration now, while the proxy starts: a bad VCGATE_* setting (no policy,
    # a key without VCGATE_PASSPHRASE) stops the start-up with its message instead of turning
    # every later request into a 500.
    try:
        _DEFAULT.runtime()
    except Exception as exc:
        log.critical("vcgate: the LiteLLM proxy cannot start: %s", exc)
        raise
    if install_routes(app):
        log.info("vcgate: token endpoint %s installed on the LiteLLM proxy", DEFAULT_TOKEN_PATH)


_install_into_proxy()
