"""vLLM: ``vllm serve MODEL --middleware vcgate.integrations.vllm.VCGateMiddleware``.

vLLM's OpenAI server imports each ``--middleware`` dotted path and, for a class, calls
``app.add_middleware(cls)`` with no arguments (``vllm/entrypoints/serve/middleware/register.py``,
``init_entrypoints_middleware``; ``vllm/entrypoints/openai/api_server.py`` ``build_app`` in
older releases). So this class is constructible as ``VCGateMiddleware(app)`` and reads its
settings from the ``VCGATE_*`` environment (:meth:`vcgate.assembly.GateConfig.from_env`).

It is :class:`vcgate.middleware.asgi.VCGateMiddleware` plus what vLLM needs:

* **One gate per configuration and process.** Starlette builds the middleware stack lazily
  and may build it more than once (older Starlette rebuilt it on every ``add_middleware``,
  i.e. once per later ``--middleware``; tools call ``build_middleware_stack()`` again). Two
  gates in one server would hold two nonce stores and two session caches: a challenge issued
  by one and answered at the other would fail ``nonce_mismatch``, a token issued by one would
  be ``session_unknown`` at the other. vLLM gives no place to inject a shared object, so the
  class keeps the built :class:`~vcgate.assembly.AssembledGate` per :class:`GateConfig` (a frozen,
  hashable value) behind a lock.
* **WebSocket handshakes are decided** (vLLM's realtime routes under ``/v1``), as by the
  generic middleware: a handshake is ``GET <path>``, refused before the socket is accepted.
* **Shutdown closes the runtime** (audit log flushed and closed, mirror stopped) when the
  app's lifespan completes its shutdown.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from ..middleware.asgi import ASGIApp, Receive, Scope, Send
from ..middleware.asgi import VCGateMiddleware as _ASGIMiddleware
from ..assembly import GateConfig, SharedGates

__all__ = ["VCGateMiddleware"]


class VCGateMiddleware(_ASGIMiddleware):
    """The vcgate ASGI middleware as vLLM's ``--middleware`` builds it: ``VCGateMiddleware(app)``.

    :param config: the gate's settings; default :meth:`GateConfig.from_env` (``VCGATE_POLICY``
        is required). Middleware built with equal configs share one gate.
    """

    #: The process's runtimes, one per configuration (see :class:`~vcgate.assembly.SharedGates`).
    runtimes: ClassVar[SharedGates] = SharedGates()

    def __init__(self, app: ASGIApp, *, config: GateConfig | None = None) -> None:
        self.config = config if config is not None else GateConfig.from_env()
        self.runtime = self.runtimes.get(self.config)
        super().__init__(app, gate=self.runtime.gate)

    # --- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._on_shutdown(send))
        else:
            await super().__call__(scope, receive, send)

    def _on_shutdown(self, send: Send) -> Send:
        config = self.config

        async def wrapped(message: Any) -> None:
            if message.get("type") == "lifespan.shutdown.complete":
                # Before the server is told it may exit: the last audit records reach the disk.
                await asyncio.to_thread(type(self).runtimes.close, config)
            await send(message)

        return wrapped
