"""Nonce, replay, counter and session stores: in-memory (one process) and Redis (many replicas).

Four small protocols:

* :class:`ReplayStore` -- ``add_if_absent(key, ttl)`` is True the first time a key is seen
  within ``ttl`` seconds and False afterwards (the DPoP ``jti`` cache).
* :class:`NonceStore` -- ``issue(ttl)`` makes a fresh random nonce, ``consume(nonce)`` is
  True exactly once for a nonce issued and not yet expired (challenge and DPoP nonces).
* :class:`CounterStore` -- ``reserve(counters)`` admits a call against every counter it
  touches or against none (all-or-nothing, one round trip), ``commit`` reconciles the
  reservation with what the call really used, ``release`` gives it back (limits and budgets,
  ``docs/limits.md``).
* :class:`SessionStore` -- ``put(key, holder, value, ttl)`` / ``get(key)``: session records
  every replica can read, bounded per holder and in bytes.

Both are fail-closed: a store that cannot answer raises
:class:`~vcgate.errors.StoreUnavailableError` (503) instead of letting a request
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
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .keys import b64url_encode
from .errors import StoreFullError, StoreUnavailableError

__all__ = [
    "Counter",
    "CounterState",
    "CounterStore",
    "MemoryCounterStore",
    "MemoryNonceStore",
    "MemoryReplayStore",
    "MemorySessionStore",
    "NonceStore",
    "RedisCounterStore",
    "RedisNonceStore",
    "RedisReplayStore",
    "RedisSessionStore",
    "ReplayStore",
    "Reservation",
    "SessionStore",
    "redis_client",
]

Clock = Callable[[], float]

#: 16 random bytes -> 22 base64url characters.
NONCE_BYTES = 16
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
#: Longest counter window (a year and a day): budgets per month or quarter fit.
MAX_WINDOW = 366 * 86400
#: Most counters one call may touch (its limits times the hops of a delegation chain).
MAX_COUNTERS = 64


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


@dataclass(frozen=True, slots=True)
class Counter:
    """One counter a call touches.

    ``key`` names what is counted (a limit's name and the value of its key, e.g.
    ``"agent-rpm|did:key:z6Mk..."``); at most ``limit`` units per ``window`` seconds; the call
    reserves ``amount`` now. Units are integers: requests, tokens, micro-USD -- so the stores
    add exactly, with no floating-point drift across millions of calls.
    """

    key: str
    limit: int
    window: int
    amount: int

    def __post_init__(self) -> None:
        for name in ("limit", "amount", "window"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"Counter.{name} must be a non-negative integer")
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"Counter.window must be 1 to {MAX_WINDOW} seconds")
        if not isinstance(self.key, str) or not self.key:
            raise ValueError("Counter.key must be a non-empty string")


@dataclass(frozen=True, slots=True)
class CounterState:
    """A counter as one store operation left it: ``used`` in the current window (this call's
    reservation included when admitted) and ``reset``, seconds until that window ends."""

    used: int
    reset: float


@dataclass(frozen=True, slots=True)
class Reservation:
    """What :meth:`CounterStore.reserve` did.

    ``admitted``: every counter took its amount (else none did, and ``blocked`` is the index of
    the first counter that had no room). ``states`` has one entry per counter. ``windows``
    identifies the window each amount went into, so a late :meth:`~CounterStore.commit` never
    adjusts the next window's count.
    """

    admitted: bool
    counters: tuple[Counter, ...]
    states: tuple[CounterState, ...]
    blocked: int | None = None
    windows: tuple[str, ...] = ()
    #: The store found its data gone (a Redis restarted empty): every counter started again.
    store_reset: bool = False


@runtime_checkable
class CounterStore(Protocol):
    def reserve(self, counters: Sequence[Counter]) -> Reservation:
        """Admit ``amount`` on every counter, or on none if any would pass its ``limit``."""
        ...

    def commit(self, reservation: Reservation, used: Sequence[int]) -> None:
        """Replace each reserved amount by what the call used (same order as the counters)."""
        ...

    def release(self, reservation: Reservation) -> None:
        """Give a failed or cancelled call's reservation back."""
        ...

    def peek(self, counters: Sequence[Counter]) -> tuple[CounterState, ...]:
        """The counters' current state, changing nothing (for ``explain`` and headers)."""
        ...


@runtime_checkable
class SessionStore(Protocol):
    def put(self, key: str, holder: str, value: bytes, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds; may evict ``holder``'s oldest sessions."""
        ...

    def get(self, key: str) -> bytes | None:
        """The value put under ``key``, or None if unknown, expired or evicted."""
        ...


def _check_counters(counters: Sequence[Counter]) -> tuple[Counter, ...]:
    out = tuple(counters)
    if not 1 <= len(out) <= MAX_COUNTERS:
        raise ValueError(f"a call touches 1 to {MAX_COUNTERS} counters")
    if not all(type(c) is Counter for c in out):
        raise TypeError("counters must be vcgate.stores.Counter objects")
    if len({c.key for c in out}) != len(out):
        # A key given twice would be checked against its limit once but charged twice.
        raise ValueError("a call must not name the same counter twice")
    return out


def _check_used(reservation: Reservation, used: Sequence[int]) -> tuple[int, ...]:
    values = tuple(used)
    if len(values) != len(reservation.counters) or not all(type(v) is int and v >= 0 for v in values):
        raise ValueError("commit needs one non-negative integer per reserved counter")
    return values


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
                self._forget(key)

    def _forget(self, key: Any) -> None:
        """An expired key was swept; subclasses drop what they keep beside it."""


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


class MemoryCounterStore(_ExpiringKeys):
    """Limit counters for one process: thread-safe, all-or-nothing under one lock.

    A counter's window starts with the first amount counted on it and lasts its ``window``
    seconds (a fixed window; see ``docs/limits.md``). About 250 bytes a live counter; when
    ``max_entries`` live counters exist a call needing a new one is refused
    (:class:`StoreFullError`): forgetting a counter would reset someone's budget.
    """

    def __init__(self, *, max_entries: int = 1_000_000, clock: Clock = time.monotonic) -> None:
        super().__init__(max_entries=max_entries, clock=clock)
        # digest -> [used, window id]; the expiry lives in _ExpiringKeys._expiry.
        self._counts: dict[bytes, list[Any]] = {}
        self._next_window = 0

    def _forget(self, key: Any) -> None:
        self._counts.pop(key, None)

    def _state(self, digest: bytes, counter: Counter, now: float) -> CounterState:
        entry = self._counts.get(digest)
        if entry is None:
            return CounterState(0, float(counter.window))
        return CounterState(entry[0], max(0.0, self._expiry[digest] - now))

    def reserve(self, counters: Sequence[Counter]) -> Reservation:
        items = _check_counters(counters)
        digests = [_digest(c.key) for c in items]
        with self._lock:
            now = self._clock()
            self._sweep(now)
            counts = self._counts
            for i, (c, d) in enumerate(zip(items, digests)):
                entry = counts.get(d)
                if (entry[0] if entry is not None else 0) + c.amount > c.limit:
                    states = tuple(self._state(dd, cc, now) for cc, dd in zip(items, digests))
                    return Reservation(False, items, states, i)
            new = sum(1 for d in digests if d not in counts)
            if new and len(counts) + new > self._max:
                raise StoreFullError("the counter store is full: refusing rather than forgetting counters")
            windows = []
            for c, d in zip(items, digests):
                entry = counts.get(d)
                if entry is None:
                    self._next_window += 1
                    entry = counts[d] = [0, str(self._next_window)]
                    exp = now + c.window
                    self._expiry[d] = exp
                    heapq.heappush(self._heap, (exp, d))
                entry[0] += c.amount
                windows.append(entry[1])
            states = tuple(self._state(d, c, now) for c, d in zip(items, digests))
            return Reservation(True, items, states, None, tuple(windows))

    def commit(self, reservation: Reservation, used: Sequence[int]) -> None:
        values = _check_used(reservation, used)
        if not reservation.admitted:
            return
        with self._lock:
            self._sweep(self._clock())
            for c, window, value in zip(reservation.counters, reservation.windows, values):
                entry = self._counts.get(_digest(c.key))
                if entry is not None and entry[1] == window:  # still the window reserved in
                    entry[0] = max(0, entry[0] + value - c.amount)

    def release(self, reservation: Reservation) -> None:
        self.commit(reservation, [0] * len(reservation.counters))

    def peek(self, counters: Sequence[Counter]) -> tuple[CounterState, ...]:
        items = _check_counters(counters)
        with self._lock:
            now = self._clock()
            self._sweep(now)
            return tuple(self._state(_digest(c.key), c, now) for c in items)


class MemorySessionStore:
    """Session records for one process, bounded in bytes and per holder.

    ``max_bytes`` bounds the values kept (plus ~300 bytes of bookkeeping per session, counted
    too); past it the least recently used sessions go. ``max_per_holder`` bounds one holder's
    live sessions: a holder that opens more loses its own oldest, never someone else's.
    A session that is gone is answered ``session_unknown`` and the client presents again.
    A value that is not ``bytes`` (a gate's verified session) is kept as is; ``size`` then
    states the bytes it stands for.
    """

    OVERHEAD = 300

    def __init__(
        self,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_per_holder: int = 16,
        max_value_bytes: int = 256 * 1024,
        clock: Clock = time.monotonic,
    ) -> None:
        if max_bytes < 1 or max_per_holder < 1 or max_value_bytes < 1:
            raise ValueError("max_bytes, max_per_holder and max_value_bytes must be positive")
        self.max_bytes = max_bytes
        self.max_per_holder = max_per_holder
        self.max_value_bytes = max_value_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[str, Any, float, int]] = OrderedDict()
        self._holders: dict[str, OrderedDict[str, None]] = {}
        self._bytes = 0

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, key: str) -> None:
        holder, _, _, cost = self._items.pop(key)
        self._bytes -= cost
        keys = self._holders[holder]
        del keys[key]
        if not keys:
            del self._holders[holder]

    def put(self, key: str, holder: str, value: Any, ttl: float, *, size: int | None = None) -> None:
        ttl = _check_ttl(ttl)
        if size is None:
            if not isinstance(value, bytes):
                raise ValueError("a session value that is not bytes needs its size")
            size = len(value)
        if size > self.max_value_bytes:
            raise ValueError(f"a session value is at most {self.max_value_bytes} bytes")
        cost = len(key) + len(holder) + size + self.OVERHEAD
        if cost > self.max_bytes:
            raise ValueError("a session larger than the whole store")
        with self._lock:
            if key in self._items:
                self._drop(key)
            keys = self._holders.setdefault(holder, OrderedDict())
            while len(keys) >= self.max_per_holder:
                self._drop(next(iter(keys)))
                keys = self._holders.setdefault(holder, OrderedDict())
            while self._bytes + cost > self.max_bytes:
                self._drop(next(iter(self._items)))
            self._items[key] = (holder, value, self._clock() + ttl, cost)
            self._holders.setdefault(holder, OrderedDict())[key] = None
            self._bytes += cost

    def get(self, key: str) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[2] <= self._clock():
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return item[1]


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


class _RedisStore:
    """What the Redis stores share: a client that cannot hang, and a count of the operations
    Redis failed, by operation (``vcgate_store_errors_total``, read when metrics are scraped)."""

    #: The store's name in errors and metrics: nonce, replay, counter, session.
    kind = ""
    #: Its operations (metrics start each at 0, so the first failure is a visible increase).
    operations: tuple[str, ...] = ()

    def __init__(self, client: Any, prefix: str) -> None:
        _check_client(client)
        self._client = client
        self._prefix = prefix
        self._errors = _redis_errors()
        self._failures = dict.fromkeys(self.operations, 0)
        self._failures_lock = threading.Lock()

    def _unavailable(self, operation: str, exc: BaseException) -> StoreUnavailableError:
        """The one place a Redis failure becomes a refusal: counted, then raised by the caller."""
        with self._failures_lock:
            self._failures[operation] = self._failures.get(operation, 0) + 1
        return StoreUnavailableError(f"Redis {self.kind} store: {type(exc).__name__}")

    def failures(self) -> dict[str, int]:
        """Operations that failed since start, by operation (``issue``, ``get``, ...)."""
        with self._failures_lock:
            return dict(self._failures)


# The generation marker: a key without TTL holding the time this Redis's replay data began
# (written when a verifier starts, if absent: begin_generation). If Redis loses its data (restart without persistence, failover to an empty replica, FLUSHALL)
# the marker goes with it; the first proof seen afterwards writes a new one, and every proof
# issued before it is refused: its jti may have been recorded in the data that was lost.
_REPLAY_LUA = """
local gen = tonumber(redis.call('GET', KEYS[2]))
if not gen then
  gen = tonumber(ARGV[2])
  redis.call('SET', KEYS[2], ARGV[2])
end
if tonumber(ARGV[3]) + 1000 <= gen then return 2 end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""


class RedisReplayStore(_RedisStore):
    """A replay cache shared by every gateway replica, that notices when Redis lost its data.

    ``add_if_absent(key, ttl)`` alone is one ``SET key 1 NX PX ttl``. Given the proof's
    ``issued_at`` and the verifier's ``now`` (as :class:`~vcgate.session.DPoPVerifier` does),
    it is one script that also checks the generation marker (``prefix + "generation"``): a
    proof issued before the current generation began is refused (False), since Redis may have
    forgotten it. ``iat`` has whole seconds, so "before" means in an earlier second: a proof
    made in the second the generation began is taken (else the first proof a fresh Redis sees
    would always be refused). After a data loss, proofs from before it are therefore refused until they are
    stale (one replay window), instead of replayable; new proofs are unaffected. The gateways'
    clocks must agree (NTP), as DPoP already assumes. Run Redis with ``maxmemory-policy
    noeviction``: an evicted replay entry cannot be detected.
    """

    #: add_if_absent accepts ``issued_at`` and ``now`` (see DPoPVerifier).
    tracks_generation = True

    kind = "replay"
    operations = ("add",)

    def __init__(self, client: Any, *, prefix: str = "vcgate:replay:") -> None:
        super().__init__(client, prefix)
        self._generation_key = prefix + "generation"
        self._script = _script(client, _REPLAY_LUA)

    def begin_generation(self, now: float) -> None:
        """Start the generation at ``now`` (the verifier's clock) unless one is running: a
        verifier calls this when it starts, so proofs made after that are taken even when
        their whole-second ``iat`` is a second earlier than their check (the first token
        request a fresh Redis saw straddled a second boundary often under load). Best effort:
        with Redis down, the first proof it takes starts the generation, as after a loss."""
        try:
            self._client.set(self._generation_key, str(int(now * 1000)), nx=True)
        except self._errors:
            pass

    def add_if_absent(self, key: str, ttl: float, *, issued_at: float | None = None, now: float | None = None) -> bool:
        ms = max(1, int(_check_ttl(ttl) * 1000))
        name = self._prefix + b64url_encode(_digest(key))
        try:
            if issued_at is None or now is None:
                return bool(self._client.set(name, b"1", nx=True, px=ms))
            # Milliseconds as integers: Lua's tonumber on a float string is exact enough, but
            # integers keep the marker readable and comparisons free of rounding.
            answer = self._script(keys=[name, self._generation_key], args=[ms, int(now * 1000), int(issued_at * 1000)])
        except self._errors as exc:
            raise self._unavailable("add", exc) from exc
        return int(answer) == 1


class RedisNonceStore(_RedisStore):
    """Single-use nonces shared by every replica: ``SET nonce 1 NX PX ttl``, consumed by ``DEL``.

    ``DEL`` is atomic and answers 1 only to the one caller that removed a live key (Redis
    expires the key first if its time has passed), so a nonce is consumed at most once across
    all replicas; no Lua or ``GETDEL`` (Redis >= 6.2) needed.
    """

    kind = "nonce"
    operations = ("issue", "consume")

    def __init__(self, client: Any, *, prefix: str = "vcgate:nonce:") -> None:
        super().__init__(client, prefix)

    def issue(self, ttl: float) -> str:
        ms = max(1, int(_check_ttl(ttl) * 1000))
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        try:
            self._client.set(self._prefix + nonce, b"1", nx=True, px=ms)
        except self._errors as exc:
            raise self._unavailable("issue", exc) from exc
        return nonce

    def consume(self, nonce: str) -> bool:
        # Anything that cannot be one of ours never reaches Redis (nor becomes a key name).
        if not isinstance(nonce, str) or not _NONCE_RE.fullmatch(nonce):
            return False
        try:
            return self._client.delete(self._prefix + nonce) == 1
        except self._errors as exc:
            raise self._unavailable("consume", exc) from exc


# One Lua script per operation: Redis runs a script atomically, so a reservation over several
# counters is all-or-nothing across every replica, in one round trip. A counter is a hash
# {n: used, w: window id} whose TTL is its window (set when the window opens).
_RESERVE_LUA = """
local n = #KEYS - 1
local reset = 0
if redis.call('SET', KEYS[n + 1], ARGV[#ARGV], 'NX') then reset = 1 end
local cur = {}
local blocked = 0
for i = 1, n do
  local used = tonumber(redis.call('HGET', KEYS[i], 'n')) or 0
  cur[i] = used
  if blocked == 0 and used + tonumber(ARGV[3*i]) > tonumber(ARGV[3*i-1]) then blocked = i end
end
local out = {blocked}
for i = 1, n do
  local used = cur[i]
  if blocked == 0 then
    used = redis.call('HINCRBY', KEYS[i], 'n', ARGV[3*i])
    if redis.call('HSETNX', KEYS[i], 'w', ARGV[1]) == 1 then
      redis.call('PEXPIRE', KEYS[i], ARGV[3*i+1])
    end
  end
  out[#out+1] = used
  out[#out+1] = redis.call('PTTL', KEYS[i])
  out[#out+1] = redis.call('HGET', KEYS[i], 'w') or ''
end
out[#out+1] = reset
return out
"""

_COMMIT_LUA = """
for i = 1, #KEYS do
  if redis.call('HGET', KEYS[i], 'w') == ARGV[2*i-1] then
    local d = tonumber(ARGV[2*i])
    if d ~= 0 and redis.call('HINCRBY', KEYS[i], 'n', d) < 0 then
      redis.call('HSET', KEYS[i], 'n', 0)
    end
  end
end
return 1
"""

_PEEK_LUA = """
local out = {}
for i = 1, #KEYS do
  out[#out+1] = tonumber(redis.call('HGET', KEYS[i], 'n')) or 0
  out[#out+1] = redis.call('PTTL', KEYS[i])
end
return out
"""


def _script(client: Any, source: str) -> Any:
    # redis-py's Script sends EVALSHA and, after a NOSCRIPT answer (what a restarted Redis
    # gives), loads the script and retries. Given bytes it needs nothing from the client yet.
    from redis.commands.core import Script

    return Script(client, source.encode())


class RedisCounterStore(_RedisStore):
    """Limit counters shared by every replica (``docs/limits.md``): one Lua script per call.

    Counter keys are hashed (``prefix`` + 22 characters), so subjects' DIDs never appear in
    Redis and every key has the same size. A store that cannot answer raises
    :class:`StoreUnavailableError`: the gateway refuses (503), it never admits unchecked.
    A generation marker (``prefix + "generation"``) makes a Redis that lost its data visible:
    the first reservation afterwards says ``store_reset`` (every counter started again; the
    meter logs it and counts it in ``vcgate_limit_store_resets_total``).
    """

    kind = "counter"
    operations = ("reserve", "commit", "peek")

    def __init__(self, client: Any, *, prefix: str = "vcgate:limit:") -> None:
        super().__init__(client, prefix)
        self._reserve = _script(client, _RESERVE_LUA)
        self._commit = _script(client, _COMMIT_LUA)
        self._peek = _script(client, _PEEK_LUA)

    def _keys(self, counters: Sequence[Counter]) -> list[str]:
        return [self._prefix + b64url_encode(_digest(c.key)) for c in counters]

    def _run(self, operation: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return script(keys=keys, args=args)
        except self._errors as exc:
            raise self._unavailable(operation, exc) from exc

    @staticmethod
    def _reset(pttl: int, counter: Counter) -> float:
        return pttl / 1000 if pttl >= 0 else float(counter.window)

    def reserve(self, counters: Sequence[Counter]) -> Reservation:
        items = _check_counters(counters)
        args: list[Any] = [secrets.token_urlsafe(9)]
        for c in items:
            args.extend((c.limit, c.amount, c.window * 1000))
        args.append(int(time.time()))  # the generation marker's value: when this data began
        out = self._run("reserve", self._reserve, [*self._keys(items), self._prefix + "generation"], args)
        blocked = int(out[0])
        reset = int(out[-1]) == 1
        states, windows = [], []
        for i, c in enumerate(items):
            used, pttl, window = out[1 + 3 * i : 4 + 3 * i]
            states.append(CounterState(int(used), self._reset(int(pttl), c)))
            windows.append(window.decode() if isinstance(window, bytes) else str(window))
        if blocked:
            return Reservation(False, items, tuple(states), blocked - 1, store_reset=reset)
        return Reservation(True, items, tuple(states), None, tuple(windows), store_reset=reset)

    def commit(self, reservation: Reservation, used: Sequence[int]) -> None:
        values = _check_used(reservation, used)
        if not reservation.admitted:
            return
        args: list[Any] = []
        for c, window, value in zip(reservation.counters, reservation.windows, values):
            args.extend((window, value - c.amount))
        self._run("commit", self._commit, self._keys(reservation.counters), args)

    def release(self, reservation: Reservation) -> None:
        self.commit(reservation, [0] * len(reservation.counters))

    def peek(self, counters: Sequence[Counter]) -> tuple[CounterState, ...]:
        items = _check_counters(counters)
        out = self._run("peek", self._peek, self._keys(items), [])
        return tuple(
            CounterState(int(out[2 * i]), self._reset(int(out[2 * i + 1]), c)) for i, c in enumerate(items)
        )


_SESSION_PUT_LUA = """
local ttl = tonumber(ARGV[2])
local max = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('LREM', KEYS[2], 0, KEYS[1])
redis.call('LPUSH', KEYS[2], KEYS[1])
local old = redis.call('LRANGE', KEYS[2], max, -1)
if #old > 0 then
  for i = 1, #old do redis.call('DEL', old[i]) end
  redis.call('LTRIM', KEYS[2], 0, max - 1)
end
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""


class RedisSessionStore(_RedisStore):
    """Session records every replica can read: ``GET`` per lookup, one script per ``put``.

    Each holder has a list of its newest sessions; a ``put`` beyond ``max_per_holder`` deletes
    that holder's oldest sessions, in the same script.
    Values are capped at ``max_value_bytes``; Redis's ``maxmemory`` bounds the total (run it
    with ``maxmemory-policy noeviction``: see ``docs/limits.md``).
    """

    kind = "session"
    operations = ("put", "get")

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "vcgate:session:",
        max_per_holder: int = 16,
        max_value_bytes: int = 256 * 1024,
    ) -> None:
        if max_per_holder < 1 or max_value_bytes < 1:
            raise ValueError("max_per_holder and max_value_bytes must be positive")
        super().__init__(client, prefix)
        self.max_per_holder = max_per_holder
        self.max_value_bytes = max_value_bytes
        self._put = _script(client, _SESSION_PUT_LUA)

    def put(self, key: str, holder: str, value: bytes, ttl: float) -> None:
        ms = max(1, int(_check_ttl(ttl) * 1000))
        if not isinstance(value, bytes) or len(value) > self.max_value_bytes:
            raise ValueError(f"a session value is bytes of at most {self.max_value_bytes} bytes")
        keys = [self._prefix + b64url_encode(_digest(key)), self._prefix + "holder:" + b64url_encode(_digest(holder))]
        try:
            self._put(keys=keys, args=[value, ms, self.max_per_holder])
        except self._errors as exc:
            raise self._unavailable("put", exc) from exc

    def get(self, key: str) -> bytes | None:
        try:
            value = self._client.get(self._prefix + b64url_encode(_digest(key)))
        except self._errors as exc:
            raise self._unavailable("get", exc) from exc
        return bytes(value) if value is not None else None
