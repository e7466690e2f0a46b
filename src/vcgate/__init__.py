"""vcgate: verifiable-credential access control for AI model serving.

The core entry points: :class:`Gate` (one check per request), :class:`RequestView` (the
framework-neutral request it checks) and :class:`Decision` (its answer). Adapters live in
:mod:`vcgate.middleware` (ASGI, WSGI); the agent side in :mod:`vcgate.client`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .gate import Decision, Gate, RequestView

__version__ = "0.1.0"

__all__ = ["Decision", "Gate", "RequestView", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use (PEP 562): `import vcgate` for a CLI command that issues or
    # resolves does not pay for the gate (policy engine, verifier, stores): ~0.4 s of CPU.
    if name in ("Decision", "Gate", "RequestView"):
        from . import gate

        return getattr(gate, name)
    raise AttributeError(f"module 'vcgate' has no attribute {name!r}")
