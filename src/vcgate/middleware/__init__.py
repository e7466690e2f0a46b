"""Thin drivers around :class:`vcgate.gate.Gate`: pure ASGI and WSGI middleware."""

from .asgi import VCGateMiddleware
from .wsgi import VCGateWSGI

__all__ = ["VCGateMiddleware", "VCGateWSGI"]
