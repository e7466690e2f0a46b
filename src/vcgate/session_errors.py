"""Session-mode errors (defined in :mod:`vcgate.errors`, re-exported here)."""

from .errors import (
    TokenInvalidError,
    TokenExpiredError,
    DPoPInvalidError,
    DPoPReplayedError,
    DPoPKeyMismatchError,
    UseDPoPNonceError,
    DPoPNonceInvalidError,
    StoreUnavailableError,
    StoreFullError,
)

__all__ = [
    "TokenInvalidError",
    "TokenExpiredError",
    "DPoPInvalidError",
    "DPoPReplayedError",
    "DPoPKeyMismatchError",
    "UseDPoPNonceError",
    "DPoPNonceInvalidError",
    "StoreUnavailableError",
    "StoreFullError",
]
