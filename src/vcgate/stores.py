"""Nonce and replay stores: in-memory (one process) and Redis (many gateway replicas).

Two small protocols:

* :class:`ReplayStore` -- ``add_if_absent(key, ttl)`` is True the first time a key is seen
  within ``ttl`` seconds and False afterwards (the DPoP ``jti`` cache).
* :class:`NonceStore` -- ``issue(ttl)`` makes a fresh random nonce, ``consume(nonce)`` is
  True exactly once for a nonce issued and not yet expired (challenge and DPoP nonces).

Both are fail-closed: a store that cannot answer raises
:class:`~vcgate.session_errors.StoreUnavailableError` (503) instead of letting a request
through or making it wait. Keys are hashed to a fixed size before storing, so an
attacker-chosen ``jti`` cannot make one entry large.

When the in-memory stores are full they behave differently, on purpose:

* the replay store *refuses* new entries (:class:`StoreFullError`): forgetting a ``jti``
  still inside its window would let that proof be replayed;
* the nonce store *evicts* the nonce closest to expiry: a forgotten nonce is refused later,
  never accepted, so eviction costs at most one client retry, while refusing would let anyone
  who can trigger challenges stop all nonce issuance until the oldest one expires.
"""

from __future__ import annotations

import hashlib
import heapq
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .keys import b64url_encode
from .session_errors import StoreFullError, StoreUnavailableError

__all__ = [
    "MemoryNonceStore",
    "MemoryReplayStore",
    "NonceStore",
    "RedisNonceStore",
    "RedisReplayStore",
    "ReplayStore",
    "redis_client",
]

Clock = Callable[[], float]

#: 16 random bytes -> 22 base64url characters.
NONCE_BYTES = 16
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")


@runtime_checkable
class ReplayStore(Protocol):
    def add_if_absent(self, key: str, ttl: float) -> bool:
        """Record ``key`` for ``ttl`` seconds; True if it was not already recorded."""
        ...


@runtime_checkable
class NonceStore(Protocol):
    def issue(self, ttl: float) -> str:
        """A fresh nonce, valid for ``ttl`` seconds and for one :meth:`consume`."""
        ...

    def consume(self, nonce: str) -> bool:
        """True exactly once for a live nonce this store issued; False otherwise."""
        ...


def _digest(key: str) -> bytes:
    # 128 bits: collisions need ~2**64 live entries. Fixed size bounds memory per entry.
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _check_ttl(ttl: float) -> float:
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not ttl > 0 or ttl > 86400:
        raise ValueError("ttl must be a number of seconds in (0, 86400]")
    return float(ttl)


# --- in memory -----------------------------------------------------------------------------


class _ExpiringKeys:
    """Keys with expiry times, swept lazily from a heap; the common core of the memory stores."""

    def __init__(self, *, max_entries: int, clock: Clock) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[Any, float] = {}
        # Removed keys leave stale heap entries; a popped entry counts only if its time matches.
        self._heap: list[tuple[float, Any]] = []

    def __len__(self) -> int:
        with self._lock:
            self._sweep(self._clock())
            return len(self._expiry)

    def _sweep(self, now: float) -> None:
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] <= now:
            exp, key = heapq.heappop(heap)
            if expiry.get(key) == exp:
                del expiry[key]


class MemoryReplayStore(_ExpiringKeys):
    """A bounded, thread-safe replay cache for one process.

    ``max_entries`` bounds memory (about 190 bytes an entry: the default is ~47 MB when
    full); size it as the highest proof rate times the replay window (the default holds
    ~3,500 proofs/s over DPoPVerifier's default 71 s window). When full, new keys are
    refused with :class:`StoreFullError` (see the module docstring). ``clock`` is monotonic
    seconds; tests inject their own.
    """

    def __init__(self, *, max_entries: int = 250_000, clock: Clock = time.monotonic) -> None:
        super().__init__(max_entries=max_entries, clock=clock)

    def add_if_absent(self, key: str, ttl: float) -> bool:
        # Called once per proof: the plain int/float case is checked inline (same outcome as
        # _check_ttl, which also refuses bools, NaN and the rest).
        tt = type(ttl)
        if (tt is not int and tt is not float) or not 0 < ttl <= 86400:
            ttl = _check_ttl(ttl)
        digest = _digest(key)
        with self._lock:
            now = self._clock()
            heap = self._heap
            if heap and heap[0][0] <= now:
                self._sweep(now)
            if digest in self._expiry:
                return False
            if len(self._expiry) >= self._max:
                raise StoreFullError()
            exp = now + ttl
            self._expiry[digest] = exp
            heapq.heappush(self._heap, (exp, digest))
            return True


class MemoryNonceStore(_ExpiringKeys):
    """Single-use nonces for one process: bounded, thread-safe, evicts the oldest when full.

    About 200 bytes a nonce (~19 MB for the default when full).
    """

    def __init__(self, *, max_entries: int = 100_000, clock: Clock = time.monotonic) -> None:
        super().__init__(max_entries=max_entries, clock=clock)

    def issue(self, ttl: float) -> str:
        ttl = _check_ttl(ttl)
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        with self._lock:
            now = self._clock()
            self._sweep(now)
            while len(self._heap) >= self._max:
                exp, old = heapq.heappop(self._heap)
                if self._expiry.get(old) == exp:
                    del self._expiry[old]
            exp = now + ttl
            self._expiry[nonce] = exp
            heapq.heappush(self._heap, (exp, nonce))
        return nonce

    def consume(self, nonce: str) -> bool:
        if not isinstance(nonce, str):
            return False
        with self._lock:
            exp = self._expiry.pop(nonce, None)
            return exp is not None and exp > self._clock()


# --- Redis ---------------------------------------------------------------------------------


def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - a client object exists, so redis is importable
        return (OSError,)
    return (RedisError, OSError)


def redis_client(url: str, *, timeout: float = 0.25, retries: int = 0) -> Any:
    """A ``redis.Redis`` client fit for the request path: short timeouts, no hidden retries.

    redis-py's own defaults (5 s socket timeouts and, since 6.0, up to 10 retries with
    backoff) can hold a request for many seconds when Redis is gone; a gateway should answer
    503 within ``(retries + 1) * timeout`` instead.
    """
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:
        raise ImportError("Redis stores need the 'redis' package: pip install redis") from exc
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries),
        health_check_interval=0,
    )


def _check_client(client: Any) -> None:
    """Refuse a client that may wait forever (no socket timeouts)."""
    get_kwargs = getattr(client, "get_connection_kwargs", None)
    if get_kwargs is None:
        return
    kwargs = get_kwargs()
    if kwargs.get("socket_timeout") is None or kwargs.get("socket_connect_timeout") is None:
        raise ValueError(
            "the Redis client needs socket_timeout and socket_connect_timeout "
            "(use vcgate.stores.redis_client(url))"
        )


class RedisReplayStore:
    """A replay cache shared by every gateway replica: one ``SET key 1 NX PX ttl`` per proof."""

    def __init__(self, client: Any, *, prefix: str = "vcgate:replay:") -> None:
        _check_client(client)
        self._client = client
        self._prefix = prefix
        self._errors = _redis_errors()

    def add_if_absent(self, key: str, ttl: float) -> bool:
        ms = max(1, int(_check_ttl(ttl) * 1000))
        name = self._prefix + b64url_encode(_digest(key))
        try:
            return bool(self._client.set(name, b"1", nx=True, px=ms))
        except self._errors as exc:
            raise StoreUnavailableError(f"Redis replay store: {type(exc).__name__}") from exc


class RedisNonceStore:
    """Single-use nonces shared by every replica: ``SET nonce 1 NX PX ttl``, consumed by ``DEL``.

    ``DEL`` is atomic and answers 1 only to the one caller that removed a live key (Redis
    expires the key first if its time has passed), so a nonce is consumed at most once across
    all replicas; no Lua or ``GETDEL`` (Redis >= 6.2) needed.
    """

    def __init__(self, client: Any, *, prefix: str = "vcgate:nonce:") -> None:
        _check_client(client)
        self._client = client
        self._prefix = prefix
        self._errors = _redis_errors()

    def issue(self, ttl: float) -> str:
        ms = max(1, int(_check_ttl(ttl) * 1000))
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        try:
            self._client.set(self._prefix + nonce, b"1", nx=True, px=ms)
        except self._errors as exc:
            raise StoreUnavailableError(f"Redis nonce store: {type(exc).__name__}") from exc
        return nonce

    def consume(self, nonce: str) -> bool:
        # Anything that cannot be one of ours never reaches Redis (nor becomes a key name).
        if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
            return False
        try:
            return self._client.delete(self._prefix + nonce) == 1
        except self._errors as exc:
            raise StoreUnavailableError(f"Redis nonce store: {type(exc).__name__}") from exc
