"""Sessions every replica can find (docs/limits.md, "Sessions shared by every replica").

The token endpoint keeps what a session was granted on -- the holder and the credentials it
presented -- as a small record: in a bounded in-process cache of verified sessions and, when
a shared :class:`~vcgate.stores.SessionStore` is configured, in that store under the token's
``jti``. The access token carries the record's SHA-256 (claim ``ses``), so a record read back
from the store is the one this gateway issued the token for: someone who can write to Redis
cannot attach other credentials to a token. A replica that reads a record re-verifies its
credentials (signatures, issuer keys, validity) before caching it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..credentials.models import VerifiedCredential, require_pinned_contexts
from ..errors import VCGateError
from ..keys import b64url_encode
from ..session import AccessToken
from ..stores import MemorySessionStore, SessionStore
from ..strictjson import loads_strict

__all__ = ["SESSION_CLAIM", "Session", "SessionRecords"]

log = logging.getLogger("vcgate.gate")

#: The access-token claim holding the SHA-256 of the session record.
SESSION_CLAIM = "ses"


class Session(NamedTuple):
    holder: str
    credentials: tuple[VerifiedCredential, ...]


def _digest(record: bytes) -> str:
    return b64url_encode(hashlib.sha256(record).digest())


class SessionRecords:
    """The gate's sessions: a bounded local cache in front of an optional shared store."""

    def __init__(self, *, verifier: Any, store: SessionStore | None, cache: MemorySessionStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.verifier = verifier
        self.store = store
        self.cache = cache
        self._clock = clock

    @staticmethod
    def record(holder: str, credentials: Sequence[VerifiedCredential]) -> bytes:
        return b'{"h":' + _json(holder) + b',"c":[' + b",".join(_json(c.token) for c in credentials) + b"]}"

    @staticmethod
    def claims(record: bytes) -> dict[str, str]:
        """The claim binding a token to its session record."""
        return {SESSION_CLAIM: _digest(record)}

    def _ttl(self, token: AccessToken) -> float:
        return min(86400.0, max(1.0, token.expires_at - self._clock()))

    def keep(self, token: AccessToken, holder: str, credentials: Sequence[VerifiedCredential], record: bytes) -> None:
        """Keep a new session (raises StoreUnavailableError if the shared store cannot)."""
        ttl = self._ttl(token)
        if self.store is not None:
            self.store.put(token.jti, holder, record, ttl)
        self.cache.put(token.jti, holder, Session(holder, tuple(credentials)), ttl, size=len(record))

    def find(self, token: AccessToken) -> Session | None:
        """The token's session, or None if no replica has it (the client presents again)."""
        hit = self.cache.get(token.jti)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        if self.store is None:
            return None
        raw = self.store.get(token.jti)
        if raw is None:
            return None
        if token.claims.get(SESSION_CLAIM) != _digest(raw):
            log.warning("vcgate: session record for token %s does not match the token; ignored", token.jti[:12])
            return None
        try:
            data = loads_strict(raw, max_depth=4, what="a session record")
            holder, tokens = data["h"], data["c"]
            credentials = tuple(self.verifier.verify_credential(t) for t in tokens)
            require_pinned_contexts(credentials)  # as the token endpoint: whatever the verifier
        except (VCGateError, KeyError, TypeError) as exc:
            # A credential that no longer verifies (expired since): the client presents again.
            log.info("vcgate: session %s not restored: %s", token.jti[:12], exc)
            return None
        session = Session(holder, credentials)
        self.cache.put(token.jti, holder, session, self._ttl(token), size=len(raw))
        return session


def _json(text: str) -> bytes:
    import json

    return json.dumps(text).encode()
