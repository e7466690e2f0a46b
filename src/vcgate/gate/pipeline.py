"""What every adapter does with a request, in two calls: ``plan`` then ``run``.

An adapter (ASGI, WSGI, the auth service's dialects, LiteLLM, Kong, vLLM) only translates::

    view = RequestView(...)                    # its framework's request, translated in
    plan = gate.plan(view)                     # what the pipeline needs: the body or not
    body = read(plan.max_body) if plan.read_body else None   # the adapter's only I/O
    result = gate.run(plan, view, body)        # dispatch, body limits, model, check, render
    # result.forward -> pass it on with result.upstream(headers); else answer result.status,
    #                 result.headers, result.body

Everything between -- which route is the token endpoint or the metadata, whether a rule
needs the body, the body's limits and its ``model``, which client headers are removed, the
check, the refusal's body and headers -- is decided by :class:`~vcgate.gate.Gate` and lives
nowhere else. An adapter that cannot read bodies (NGINX ``auth_request``, Traefik
``ForwardAuth``) passes ``body=None`` and the policy answers ``body_required`` where the model
decides; one that read more than ``plan.max_body`` bytes passes :data:`TOO_LARGE`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .body import TOO_LARGE
from .request import Headers, upstream_headers

if TYPE_CHECKING:
    from ..audit import Ticket
    from .core import Decision

__all__ = ["CHECK", "METADATA", "TOKEN", "TOO_LARGE", "Plan", "Result", "dumps"]

METADATA, TOKEN, CHECK = "metadata", "token", "check"


def dumps(body: Any) -> bytes:
    """Compact JSON bytes, as every refusal and endpoint answer is sent."""
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Plan:
    """What :meth:`Gate.run` will do with a request, and whether it needs the body first.

    ``step`` is :data:`METADATA`, :data:`TOKEN` or :data:`CHECK`. With ``read_body`` the
    adapter reads at most ``max_body`` bytes (passing :data:`TOO_LARGE` if there are more).
    """

    step: str
    read_body: bool
    max_body: int


@dataclass(frozen=True, slots=True)
class Result:
    """The pipeline's answer, ready for an adapter to translate.

    ``forward``: pass the request upstream with the client's ``x-vcgate-*`` headers
    (``remove``, every spelling it sent) dropped and ``grants`` set -- :meth:`upstream` does
    both on a header list. Otherwise answer ``status`` with ``headers`` and the JSON ``body``.
    ``decision`` is the gate's :class:`~vcgate.gate.Decision` (``None`` for the metadata).
    ``ticket`` is set only by ``run(..., wait=False)`` when the audit record must still become
    durable before answering: pass the result to :meth:`Gate.settle_result` (in a worker
    thread on an event loop).
    """

    forward: bool
    status: int
    headers: Headers = ()
    body: bytes = b""
    grants: Headers = ()
    remove: tuple[str, ...] = ()
    decision: Decision | None = None
    ticket: Ticket | None = None

    @property
    def code(self) -> str | None:
        """The refusal's stable error code (``None`` when allowed or answered)."""
        return self.decision.code if self.decision is not None else None

    def upstream(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """``headers`` as they go upstream: every client ``x-vcgate-*`` spelling removed, grants added."""
        return upstream_headers(headers, self.grants)


def answer(status: int, headers: Headers, body: Any, decision: Decision | None = None) -> Result:
    return Result(forward=False, status=status, headers=headers, body=dumps(body), decision=decision)
