"""In-memory nonce and replay stores (and the Redis adapters' error handling, without a server)."""

from __future__ import annotations

import threading

import pytest

from vcgate.session_errors import StoreFullError, StoreUnavailableError
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
