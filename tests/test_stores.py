"""In-memory nonce and replay stores (and the Redis adapters' error handling, without a server)."""

from __future__ import annotations

import threading

import pytest

from vcgate.errors import StoreFullError, StoreUnavailableError
from vcgate.stores import (
    MemoryNonceStore,
    MemoryReplayStore,
    NonceStore,
    RedisNonceStore,
    RedisReplayStore,
    ReplayStore,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_protocols():
    assert isinstance(MemoryReplayStore(), ReplayStore)
    assert isinstance(MemoryNonceStore(), NonceStore)


# --- replay ----------------------------------------------------------------------------


def test_replay_first_seen_then_refused(clock):
    store = MemoryReplayStore(clock=clock)
    assert store.add_if_absent("jkt:a", 60) is True
    assert store.add_if_absent("jkt:a", 60) is False
    assert store.add_if_absent("jkt:b", 60) is True
    assert len(store) == 2


def test_replay_expiry(clock):
    store = MemoryReplayStore(clock=clock)
    store.add_if_absent("k", 10)
    clock.now += 9.999
    assert store.add_if_absent("k", 10) is False
    clock.now += 0.001
    assert store.add_if_absent("k", 10) is True  # expired exactly at ttl, then recorded again
    clock.now += 5
    assert store.add_if_absent("k", 10) is False


def test_replay_mixed_ttls_expire_in_their_own_time(clock):
    store = MemoryReplayStore(clock=clock)
    store.add_if_absent("long", 100)
    store.add_if_absent("short", 1)
    clock.now += 2
    assert len(store) == 1
    assert store.add_if_absent("short", 1) is True
    assert store.add_if_absent("long", 1) is False


def test_replay_full_fails_closed(clock):
    store = MemoryReplayStore(max_entries=3, clock=clock)
    for k in "abc":
        assert store.add_if_absent(k, 10)
    with pytest.raises(StoreFullError) as exc:
        store.add_if_absent("d", 10)
    assert (exc.value.code, exc.value.status) == ("store_full", 503)
    assert isinstance(exc.value, StoreUnavailableError)
    # A known key still answers (False) when full: a replay is refused as a replay.
    assert store.add_if_absent("a", 10) is False
    clock.now += 10
    assert store.add_if_absent("d", 10) is True  # room again once entries expire
    assert len(store) == 1


def test_replay_keys_are_hashed_to_a_fixed_size(clock):
    store = MemoryReplayStore(clock=clock)
    store.add_if_absent("x" * 100_000, 10)
    assert all(len(k) == 16 for k in store._expiry)
    assert store.add_if_absent("x" * 100_000, 10) is False


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), 86401, True, "10"])
def test_bad_ttl(clock, ttl):
    with pytest.raises(ValueError):
        MemoryReplayStore(clock=clock).add_if_absent("k", ttl)
    with pytest.raises(ValueError):
        MemoryNonceStore(clock=clock).issue(ttl)


def test_bad_bounds():
    with pytest.raises(ValueError):
        MemoryReplayStore(max_entries=0)
    with pytest.raises(ValueError):
        MemoryNonceStore(max_entries=0)


def test_replay_thread_safety_smoke():
    store = MemoryReplayStore()
    keys = [f"k{i}" for i in range(2000)]
    firsts: list[int] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        firsts.append(sum(store.add_if_absent(k, 60) for k in keys))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(firsts) == len(keys)  # every key was "first seen" exactly once
    assert len(store) == len(keys)


# --- nonces ----------------------------------------------------------------------------


def test_nonce_single_use(clock):
    store = MemoryNonceStore(clock=clock)
    n1, n2 = store.issue(60), store.issue(60)
    assert n1 != n2 and len(n1) == 22
    assert store.consume(n1) is True
    assert store.consume(n1) is False
    assert store.consume(n2) is True
    assert store.consume("never-issued") is False
    assert store.consume(None) is False  # type: ignore[arg-type]


def test_nonce_expiry(clock):
    store = MemoryNonceStore(clock=clock)
    n = store.issue(30)
    clock.now += 30
    assert store.consume(n) is False
    n = store.issue(30)
    clock.now += 29.9
    assert store.consume(n) is True


def test_nonce_full_evicts_the_oldest(clock):
    store = MemoryNonceStore(max_entries=3, clock=clock)
    nonces = []
    for _ in range(5):
        nonces.append(store.issue(60))
        clock.now += 1
    assert len(store) == 3
    assert [store.consume(n) for n in nonces] == [False, False, True, True, True]


def test_nonce_memory_is_bounded_under_churn(clock):
    store = MemoryNonceStore(max_entries=10, clock=clock)
    for _ in range(1000):
        assert store.consume(store.issue(600))
    # Consumed nonces leave heap entries behind; the bound covers them too.
    assert len(store._heap) <= 10
    fresh = store.issue(600)
    assert store.consume(fresh)


def test_nonce_concurrent_consume_once():
    store = MemoryNonceStore()
    for _ in range(50):
        n = store.issue(60)
        wins: list[bool] = []
        barrier = threading.Barrier(6)

        def worker() -> None:
            barrier.wait()
            wins.append(store.consume(n))

        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wins.count(True) == 1


# --- Redis adapters, no server ---------------------------------------------------------


class _BrokenClient:
    """Stands in for a redis.Redis whose every command fails."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def get_connection_kwargs(self) -> dict:
        return {"socket_timeout": 0.1, "socket_connect_timeout": 0.1}

    def set(self, *a, **kw):
        raise self.exc

    def delete(self, *a):
        raise self.exc


def test_redis_errors_become_store_unavailable():
    redis = pytest.importorskip("redis")
    for exc in (redis.ConnectionError("refused"), redis.TimeoutError("slow"), redis.ResponseError("OOM"), OSError("x")):
        client = _BrokenClient(exc)
        with pytest.raises(StoreUnavailableError) as info:
            RedisReplayStore(client).add_if_absent("k", 10)
        assert info.value.status == 503 and info.value.__cause__ is exc
        with pytest.raises(StoreUnavailableError):
            RedisNonceStore(client).issue(10)
        with pytest.raises(StoreUnavailableError):
            RedisNonceStore(client).consume("A" * 22)


def test_redis_nonce_garbage_never_reaches_redis():
    client = _BrokenClient(AssertionError("must not be called"))
    store = RedisNonceStore(client)
    for bad in ("", "short", "x" * 200, "has space in it!!!!!", "vcgate:nonce:*abcdefghij", None):
        assert store.consume(bad) is False  # type: ignore[arg-type]


def test_redis_client_without_timeouts_is_refused():
    redis = pytest.importorskip("redis")
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisReplayStore(redis.Redis(socket_timeout=None, socket_connect_timeout=None))
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisNonceStore(redis.Redis(socket_timeout=1, socket_connect_timeout=None))


def test_redis_client_factory():
    pytest.importorskip("redis")
    from vcgate.stores import redis_client

    client = redis_client("redis://127.0.0.1:1/0", timeout=0.2)
    kwargs = client.get_connection_kwargs()
    assert kwargs["socket_timeout"] == 0.2 and kwargs["socket_connect_timeout"] == 0.2
    assert kwargs["retry"].get_retries() == 0
    RedisReplayStore(client)  # accepted


# --- counters (limits) -------------------------------------------------------------------

from vcgate.stores import Counter, CounterStore, MemoryCounterStore, MemorySessionStore, SessionStore  # noqa: E402


def test_counter_protocols():
    assert isinstance(MemoryCounterStore(), CounterStore)
    assert isinstance(MemorySessionStore(), SessionStore)


def test_counter_admits_up_to_the_limit_then_refuses(clock):
    store = MemoryCounterStore(clock=clock)
    rpm = Counter("rpm|alice", limit=3, window=60, amount=1)
    results = [store.reserve([rpm]) for _ in range(4)]
    assert [r.admitted for r in results] == [True, True, True, False]
    assert results[2].states[0].used == 3 and results[3].blocked == 0
    assert results[3].states[0].reset == 60
    clock.now += 59.5
    assert not store.reserve([rpm]).admitted
    assert store.reserve([rpm]).states[0].reset == pytest.approx(0.5)
    clock.now += 0.5  # the window started with the first call and has ended
    assert store.reserve([rpm]).admitted


def test_counter_all_or_nothing_across_keys(clock):
    store = MemoryCounterStore(clock=clock)
    own = Counter("tokens|child", limit=1000, window=60, amount=400)
    parent = Counter("tokens|parent", limit=500, window=60, amount=400)
    assert store.reserve([own, parent]).admitted
    refused = store.reserve([own, parent])
    assert not refused.admitted and refused.blocked == 1
    # Nothing was taken from the counter that had room.
    assert [s.used for s in store.peek([own, parent])] == [400, 400]


@pytest.mark.parametrize(
    ("used", "after"),
    [pytest.param(120, 120, id="less-than-reserved"), pytest.param(400, 400, id="exactly"),
     pytest.param(0, 0, id="nothing"), pytest.param(650, 650, id="more-than-reserved-is-recorded")],
)
def test_counter_commit_reconciles(clock, used, after):
    store = MemoryCounterStore(clock=clock)
    c = Counter("tokens|a", limit=1000, window=60, amount=400)
    r = store.reserve([c])
    store.commit(r, [used])
    assert store.peek([c])[0].used == after


def test_counter_release_and_late_commit_never_touch_the_next_window(clock):
    store = MemoryCounterStore(clock=clock)
    c = Counter("tokens|a", limit=1000, window=10, amount=400)
    first = store.reserve([c])
    store.release(first)
    assert store.peek([c])[0].used == 0
    late = store.reserve([c])
    clock.now += 10  # the window of `late` ends before it is committed
    fresh = store.reserve([c])
    store.commit(late, [0])
    assert store.peek([c])[0].used == 400 == fresh.states[0].used


def test_counter_refused_reservation_commit_is_a_no_op(clock):
    store = MemoryCounterStore(clock=clock)
    c = Counter("r|a", limit=1, window=10, amount=1)
    store.reserve([c])
    refused = store.reserve([c])
    store.release(refused)
    assert store.peek([c])[0].used == 1


@pytest.mark.parametrize(
    "kwargs",
    [pytest.param({"limit": -1}, id="negative-limit"), pytest.param({"amount": 1.5}, id="float-amount"),
     pytest.param({"window": 0}, id="zero-window"), pytest.param({"window": 400 * 86400}, id="window-too-long"),
     pytest.param({"key": ""}, id="empty-key"), pytest.param({"limit": True}, id="bool")],
)
def test_counter_validation(kwargs):
    base = {"key": "k", "limit": 10, "window": 60, "amount": 1} | kwargs
    with pytest.raises(ValueError):
        Counter(**base)


def test_counter_same_key_twice_is_refused(clock):
    store = MemoryCounterStore(clock=clock)
    c = Counter("k", limit=10, window=60, amount=1)
    with pytest.raises(ValueError, match="twice"):
        store.reserve([c, c])
    with pytest.raises(ValueError):
        store.reserve([])


def test_counter_store_full_fails_closed(clock):
    store = MemoryCounterStore(max_entries=2, clock=clock)
    store.reserve([Counter("a", limit=9, window=10, amount=1)])
    store.reserve([Counter("b", limit=9, window=10, amount=1)])
    with pytest.raises(StoreFullError):
        store.reserve([Counter("c", limit=9, window=10, amount=1)])
    assert store.reserve([Counter("a", limit=9, window=10, amount=1)]).admitted  # known counters go on
    clock.now += 10
    assert store.reserve([Counter("c", limit=9, window=10, amount=1)]).admitted  # swept, room again


def test_counter_exact_under_threads():
    store = MemoryCounterStore()
    counters = [Counter("rpm|child", limit=10_000, window=60, amount=1), Counter("rpm|parent", limit=50, window=60, amount=1)]
    admitted: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(25):
            admitted.append(store.reserve(counters).admitted)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert admitted.count(True) == 50
    assert [s.used for s in store.peek(counters)] == [50, 50]


# --- sessions ----------------------------------------------------------------------------


def test_session_store_round_trip_and_expiry(clock):
    store = MemorySessionStore(clock=clock)
    store.put("jti-1", "did:key:zA", b"record", 60)
    assert store.get("jti-1") == b"record"
    assert store.get("jti-2") is None
    clock.now += 60
    assert store.get("jti-1") is None and len(store) == 0 and store.bytes_used == 0


def test_session_store_bounded_per_holder(clock):
    store = MemorySessionStore(max_per_holder=3, clock=clock)
    store.put("other", "did:key:zB", b"x", 60)
    for i in range(10):
        store.put(f"s{i}", "did:key:zA", b"x" * 100, 60)
    assert [store.get(f"s{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3
    assert store.get("other") == b"x"  # one holder never evicts another's sessions by count


def test_session_store_bounded_in_bytes(clock):
    store = MemorySessionStore(max_bytes=10_000, max_per_holder=1000, clock=clock)
    for i in range(100):
        store.put(f"s{i}", f"did:key:z{i % 7}", b"x" * 1000, 60)
        assert store.bytes_used <= 10_000
    assert store.get("s99") is not None and store.get("s0") is None
    with pytest.raises(ValueError):
        store.put("big", "h", b"x" * 300 * 1024, 60)
