"""Credential status: is a verified credential still in force?

A credential names where its status lives in ``credentialStatus`` entries; each entry type is
handled by a :class:`StatusMethod`:

* ``EthrRevocationRegistry2022`` -- an ERC-5539 registry on an Ethereum chain, read on the
  request path from a local, event-synced mirror (:mod:`vcgate.status.mirror`), never from
  the chain itself;
* ``BitstringStatusListEntry`` (and its predecessor ``StatusList2021Entry``) -- a signed,
  compressed bitstring published by the issuer (:mod:`vcgate.status.bitstring`).

:class:`StatusChecker` runs every entry of a credential through its method. It fails closed:
an entry whose type no method handles is refused (``status_unsupported``) unless the caller
explicitly ignores unknown types, and a method that cannot answer raises
``status_unavailable`` rather than guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..credentials.models import VerifiedCredential
from ..errors import StatusUnsupportedError

__all__ = ["StatusChecker", "StatusMethod", "StatusResult"]


@dataclass(frozen=True, slots=True)
class StatusResult:
    """One status entry found in force.

    ``as_of`` is the POSIX time the answer is current to (for the mirror: its last good sync),
    so a caller can see how fresh the answer is.
    """

    type: str
    purpose: str
    source: str
    as_of: float


class StatusMethod(Protocol):
    """Checks ``credentialStatus`` entries of the types it names."""

    types: tuple[str, ...]

    def check(self, credential: VerifiedCredential, entry: Mapping[str, Any]) -> StatusResult:
        """Return the entry's result, or raise ``RevokedError`` / ``SuspendedError`` /
        ``StatusUnavailableError`` / ``StatusListInvalidError`` / ``MalformedError``."""
        ...


class StatusChecker:
    """Routes each status entry of a credential to the method for its type."""

    def __init__(self, methods: Iterable[StatusMethod] = (), *, ignore_unknown: bool = False) -> None:
        self._methods: dict[str, StatusMethod] = {}
        for method in methods:
            self.register(method)
        self.ignore_unknown = ignore_unknown

    def register(self, method: StatusMethod) -> None:
        for type_ in method.types:
            self._methods[type_] = method

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(self._methods)

    def check(self, credential: VerifiedCredential) -> tuple[StatusResult, ...]:
        """Check every status entry of ``credential``; raise on the first that is not in force."""
        results = []
        for entry in credential.status:
            method = self._methods.get(entry["type"])
            if method is None:
                if self.ignore_unknown:
                    continue
                raise StatusUnsupportedError(f"cannot check a credentialStatus of type {str(entry['type'])[:60]!r}")
            results.append(method.check(credential, entry))
        return tuple(results)
