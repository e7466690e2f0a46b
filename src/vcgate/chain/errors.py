"""Errors of the chain adapter (defined in :mod:`vcgate.errors`, re-exported here)."""

from vcgate.errors import (
    ChainError,
    ChainUnavailableError,
    NotAuthorizedError,
    RegistryNotFoundError,
    TransactionFailedError,
    TransactionPendingError,
)

__all__ = [
    "ChainError",
    "ChainUnavailableError",
    "NotAuthorizedError",
    "RegistryNotFoundError",
    "TransactionFailedError",
    "TransactionPendingError",
]
