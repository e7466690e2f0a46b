"""vcgate: verifiable-credential access control for AI model serving.

The core entry points: :class:`Gate` (one check per request), :class:`RequestView` (the
framework-neutral request it checks) and :class:`Decision` (its answer). Adapters live in
:mod:`vcgate.middleware` (ASGI, WSGI); the agent side in :mod:`vcgate.client`.
"""

from .gate import Decision, Gate, RequestView

__version__ = "0.1.0"

__all__ = ["Decision", "Gate", "RequestView", "__version__"]
