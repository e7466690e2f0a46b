"""``httpx.Auth`` for vcgate gateways: sync and async clients, and the OpenAI SDK.

The same flow serves ``httpx`` and its fork ``httpx2`` (the OpenAI SDK 3.x uses ``httpx2``
by default and still accepts an ``httpx`` client): :func:`auth_class` builds the subclass of
either module's ``Auth``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import AsyncGenerator, Generator
from types import ModuleType
from typing import Any

from .flow import AuthState, ResponseView, Send, TokenRequest

__all__ = ["HttpxAuthMixin", "auth_class"]


def _view(response: Any) -> ResponseView:
    return ResponseView(response.status_code, response.headers.get_list, response.json)


class HttpxAuthMixin:
    """Answers vcgate challenges for ``httpx.Client`` and ``httpx.AsyncClient``.

    Made by :meth:`vcgate.client.Holder.httpx_auth`. :meth:`auth_flow` does no I/O: it
    yields the requests to send (the original request, the token request) and reads the
    responses httpx sends back. The only addition to httpx's own drivers is that a 401 and
    a token response are read before the flow looks at them; every other response is left
    unread, so streaming (``client.stream``, OpenAI's ``stream=True``) is unaffected.
    """

    requires_request_body = False
    requires_response_body = False
    _module: ModuleType

    def __init__(self, state: AuthState) -> None:
        self._state = state

    @property
    def mode(self) -> str:
        return self._state.mode

    def __repr__(self) -> str:
        return f"<{type(self).__name__} mode={self._state.mode!r} holder={self._state.holder.did!r}>"

    def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        flow = self._state.flow(request.method, str(request.url))
        step: Send | TokenRequest = next(flow)
        while True:
            if isinstance(step, Send):
                for name, value in step.headers.items():
                    if value is None:
                        request.headers.pop(name, None)
                    else:
                        request.headers[name] = value
                response = yield request
            else:
                timeout = request.extensions.get("timeout")  # the token request inherits it
                response = yield self._module.Request(
                    "POST",
                    step.url,
                    headers=dict(step.headers),
                    data=dict(step.form),
                    extensions={"timeout": timeout} if timeout is not None else {},
                )
            try:
                step = flow.send(_view(response))
            except StopIteration:
                return

    # httpx reads response bodies for the flow only when ``requires_response_body`` is set,
    # which would also read (and so break streaming of) every successful answer. These
    # drivers read just the responses the flow parses: 401s and token responses.

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        flow = self.auth_flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if outgoing is not request or response.status_code == 401:
                response.read()
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        flow = self.auth_flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if outgoing is not request or response.status_code == 401:
                await response.aread()
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return


@functools.cache
def auth_class(module_name: str = "httpx") -> type[HttpxAuthMixin]:
    """The auth class for ``httpx`` or ``httpx2``: a subclass of that module's ``Auth``."""
    if module_name not in ("httpx", "httpx2"):
        raise ValueError("module_name must be 'httpx' or 'httpx2'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"the vcgate httpx auth needs {module_name}: pip install 'vcgate[client]'") from exc
    name = "HttpxAuth" if module_name == "httpx" else "Httpx2Auth"
    return type(name, (HttpxAuthMixin, module.Auth), {"_module": module, "__module__": __name__})
