"""The request as the pipeline sees it, and which client headers never reach the upstream."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GRANT_PREFIX", "Headers", "RequestView", "is_gate_header", "normalize_headers", "upstream_headers"]

#: Every header the gate grants starts with this; a client's copy is always removed.
GRANT_PREFIX = "x-vcgate-"

Headers = tuple[tuple[str, str], ...]


def is_gate_header(name: str | bytes) -> bool:
    """True for every spelling a framework may fold into an ``x-vcgate-*`` name.

    Case is ignored, and ``_`` counts as ``-``: CGI-style servers and frameworks (WSGI
    ``environ``, Django ``META``, many proxies) turn ``x_vcgate_subject`` into the same
    variable as ``x-vcgate-subject``, so a client's underscore spelling could stand in for a
    grant.
    """
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    return name[:9].lower().replace("_", "-") == GRANT_PREFIX


def normalize_headers(headers: Mapping[str, Any] | Iterable[tuple[Any, Any]]) -> Headers:
    """Lower-cased ``(name, value)`` pairs; a mapping value may be a list of values."""
    items: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    out: list[tuple[str, str]] = []
    append = out.append
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        # The common shapes first (ASGI bytes, already-decoded str); same results as below.
        tv = type(value)
        if tv is bytes:
            append((name.lower(), value.decode("latin-1")))
        elif tv is str:
            append((name.lower(), value))
        elif isinstance(value, (list, tuple)):
            for v in value:
                append((name.lower(), v.decode("latin-1") if isinstance(v, bytes) else str(v)))
        else:
            append((name.lower(), value.decode("latin-1") if isinstance(value, bytes) else str(value)))
    return tuple(out)


def upstream_headers(headers: Iterable[tuple[str, str]], grants: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without any client ``x-vcgate-*`` spelling, then the ``grants``."""
    kept = [(k, v) for k, v in headers if not is_gate_header(k)]
    kept.extend((k.lower(), v) for k, v in grants)
    return kept


@dataclass(frozen=True, slots=True)
class RequestView:
    """A request as the gate sees it, whatever the framework.

    ``path`` is the raw request target's path (percent-encoding intact; a query is ignored).
    ``headers`` accepts a mapping (values may be lists) or ``(name, value)`` pairs and is kept
    as lower-cased pairs, so repeated headers stay visible. ``model`` is the OpenAI body's
    ``model`` field when the body was read; ``body_available`` says it was.
    """

    method: str
    path: str
    query: str = ""
    host: str | None = None
    scheme: str = "http"
    headers: Headers = field(default=())
    model: str | None = None
    body_available: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", normalize_headers(self.headers))

    def _with_model(self, model: str | None) -> RequestView:
        """This request once the body was read: ``model`` and ``body_available=True``.

        The headers are already normalised, so they are not walked again.
        """
        view = object.__new__(RequestView)
        for name in ("method", "path", "query", "host", "scheme", "headers"):
            object.__setattr__(view, name, getattr(self, name))
        object.__setattr__(view, "model", model)
        object.__setattr__(view, "body_available", True)
        return view

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def gate_headers(self) -> list[str]:
        """The client's own ``x-vcgate-*`` header names (every spelling), each once, in order:
        what a gateway must remove before forwarding."""
        seen: dict[str, None] = {}
        for k, _ in self.headers:
            if is_gate_header(k):
                seen.setdefault(k)
        return list(seen)

    @property
    def url(self) -> str:
        """``scheme://host/path`` as the gateway reconstructs it (the DPoP ``htu``), no query."""
        path = self.path.split("?", 1)[0] or "/"
        return f"{self.scheme.lower()}://{self.host or 'localhost'}{path}"
