"""Limit counters, shared sessions and the replay generation marker on a real Redis.

Two store objects with their own connections stand for two gateway replicas. The
``redis_server`` fixture (from ``test_redis_store``) starts ``redis-server`` on 127.0.0.1;
without it the tests skip with the install hint, and fail under CI=true.
"""

from __future__ import annotations

import threading

import pytest

from tests.integration.test_redis_store import (  # noqa: F401  (redis_server is a fixture)
    URL,
    Clock,
    _gateway,
    _start_redis,
    redis_server,
)
from vcgate.keys import PrivateKey
from vcgate.session import TokenIssuer, create_proof
from vcgate.errors import DPoPReplayedError, StoreUnavailableError
from vcgate.stores import Counter, RedisCounterStore, RedisSessionStore, redis_client

pytestmark = pytest.mark.integration


def _replicas(server, n: int = 2) -> list[RedisCounterStore]:
    return [RedisCounterStore(redis_client(server.url, timeout=2.0)) for _ in range(n)]


def _race(stores: list[RedisCounterStore], calls: int, counters: list[Counter], threads: int = 20) -> list[bool]:
    admitted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def worker(index: int) -> None:
        store = stores[index % len(stores)]
        barrier.wait()
        for _ in range(calls // threads):
            ok = store.reserve(counters).admitted
            with lock:
                admitted.append(ok)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return admitted


def test_200_concurrent_reservations_from_two_replicas_admit_exactly_50(redis_server):  # noqa: F811
    a, b = _replicas(redis_server)
    rpm = Counter("agent-rpm|did:key:zAgent", limit=50, window=60, amount=1)
    admitted = _race([a, b], 200, [rpm])
    assert len(admitted) == 200 and admitted.count(True) == 50
    assert a.peek([rpm])[0].used == 50 == b.peek([rpm])[0].used


def test_token_budget_reservations_never_commit_above_the_budget(redis_server):  # noqa: F811
    a, b = _replicas(redis_server)
    budget = 10_000
    reserve = Counter("monthly-tokens|did:key:zP", limit=budget, window=30 * 86400, amount=700)
    results: list = []
    lock = threading.Lock()

    def call(store: RedisCounterStore, used: int) -> None:
        r = store.reserve([reserve])
        if r.admitted:
            store.commit(r, [used])  # the upstream honoured max_tokens: used <= reserved
        with lock:
            results.append(r.admitted)

    threads = [threading.Thread(target=call, args=((a, b)[i % 2], 300 + i % 400)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = a.peek([reserve])[0].used
    assert 0 < used <= budget and results.count(True) >= budget // 700


def test_hierarchical_keys_child_and_every_ancestor_in_one_step(redis_server):  # noqa: F811
    a, b = _replicas(redis_server)

    def chain(agent: str, amount: int = 300) -> list[Counter]:
        # principal -> orchestrator -> agent: the agent's use counts on all three.
        return [
            Counter("tokens|did:key:zPrincipal", limit=1500, window=3600, amount=amount),
            Counter("tokens|did:key:zPrincipal/did:key:zOrch", limit=1000, window=3600, amount=amount),
            Counter(f"tokens|did:key:zPrincipal/did:key:zOrch/{agent}", limit=600, window=3600, amount=amount),
        ]

    first = a.reserve(chain("did:key:zA"))
    second = b.reserve(chain("did:key:zA"))
    assert first.admitted and second.admitted
    third = a.reserve(chain("did:key:zA"))  # the agent's own limit is full
    assert not third.admitted and third.blocked == 2
    sibling = b.reserve(chain("did:key:zB", 500))
    assert not sibling.admitted and sibling.blocked == 1  # the orchestrator hop has 400 left
    # Nothing was counted for the refused calls: all-or-nothing.
    assert [s.used for s in a.peek(chain("did:key:zB"))] == [600, 600, 0]
    # The child spends less than reserved: the room returns at every level, then the sibling fits.
    a.commit(first, [100, 100, 100])
    assert b.reserve(chain("did:key:zB", 500)).admitted
    assert [s.used for s in a.peek(chain("did:key:zB"))] == [900, 900, 500]


def test_principal_budget_exhausted_blocks_siblings(redis_server):  # noqa: F811
    (store,) = _replicas(redis_server, 1)
    principal = Counter("usd|did:key:zP", limit=1_000_000, window=86400, amount=400_000)

    def for_agent(name: str) -> list[Counter]:
        return [principal, Counter(f"usd|did:key:zP/{name}", limit=5_000_000, window=86400, amount=400_000)]

    spent = store.reserve(for_agent("child-1"))
    store.commit(spent, [990_000, 990_000])  # one sub-agent spent almost all of the principal's budget
    for sibling in ("child-2", "child-3"):
        r = store.reserve(for_agent(sibling))
        assert not r.admitted and r.blocked == 0 and r.states[0].used == 990_000


def test_counter_window_ttl_is_the_window(redis_server):  # noqa: F811
    (store,) = _replicas(redis_server, 1)
    c = Counter("rpm|x", limit=5, window=60, amount=1)
    r = store.reserve([c])
    assert 59 < r.states[0].reset <= 60
    client = redis_client(redis_server.url)
    keys = [k for k in client.keys("vcgate:limit:*") if k != b"vcgate:limit:generation"]
    assert len(keys) == 1 and 59_000 < client.pttl(keys[0]) <= 60_000


def test_counter_store_down_is_store_unavailable(redis_server):  # noqa: F811
    (store,) = _replicas(redis_server, 1)
    c = Counter("rpm|x", limit=5, window=60, amount=1)
    r = store.reserve([c])
    redis_server.stop()
    for op in (lambda: store.reserve([c]), lambda: store.commit(r, [1]), lambda: store.peek([c])):
        with pytest.raises(StoreUnavailableError) as exc:
            op()
        assert exc.value.code == "store_unavailable" and exc.value.status == 503


def test_sessions_shared_and_bounded_per_holder(redis_server):  # noqa: F811
    a = RedisSessionStore(redis_client(redis_server.url), max_per_holder=3)
    b = RedisSessionStore(redis_client(redis_server.url), max_per_holder=3)
    a.put("jti-other", "did:key:zB", b"other", 300)
    for i in range(5):
        a.put(f"jti-{i}", "did:key:zA", b"record-%d" % i, 300)
    assert [b.get(f"jti-{i}") for i in range(5)] == [None, None, b"record-2", b"record-3", b"record-4"]
    assert b.get("jti-other") == b"other"
    with pytest.raises(ValueError):
        a.put("big", "did:key:zA", b"x" * (a.max_value_bytes + 1), 300)


def test_redis_restarted_empty_no_dpop_replay_accepted(redis_server, tmp_path):  # noqa: F811
    clock = Clock()
    gw_key, agent = PrivateKey.generate("EdDSA"), PrivateKey.generate("ES256")
    gw = _gateway(redis_server, gw_key, clock)
    token = TokenIssuer(key=gw_key, issuer="https://gw.example", clock=clock).issue(
        subject="did:key:zAgent", holder_jkt=agent.public_key.thumbprint(), scopes=[], audience="https://gw.example"
    )
    proofs = [create_proof(agent, htm="POST", htu=URL, access_token=token, clock=clock) for _ in range(20)]
    for proof in proofs:
        gw.session.verify(authorization=f"DPoP {token}", dpop=proof, htm="POST", htu=URL)
    port = redis_server.port
    redis_server.stop()
    clock.now += 2  # the loss happens after the proofs were issued, within their window
    restarted = _start_redis(tmp_path, port)  # no persistence: it comes back empty
    try:
        replayed = 0
        for proof in proofs:
            try:
                gw.session.verify(authorization=f"DPoP {token}", dpop=proof, htm="POST", htu=URL)
                replayed += 1
            except DPoPReplayedError:
                pass
        assert replayed == 0
        # A proof made after the loss is accepted, once.
        fresh = create_proof(agent, htm="POST", htu=URL, access_token=token, clock=clock)
        gw.session.verify(authorization=f"DPoP {token}", dpop=fresh, htm="POST", htu=URL)
        with pytest.raises(DPoPReplayedError):
            gw.session.verify(authorization=f"DPoP {token}", dpop=fresh, htm="POST", htu=URL)
    finally:
        restarted.stop()


def test_token_budget_two_replicas_streamed_and_json_never_exceeds(redis_server):  # noqa: F811
    """Concurrent calls through two meters (replicas) on one Redis, answered by a fake OpenAI
    upstream as JSON or as a stream, reconciled from the usage each reports."""
    import json
    import random

    from tests.fake_openai import answer
    from vcgate.errors import QuotaExceededError
    from vcgate.policy.limits import CallEstimate, LimitPlan, LimitSpec, ResolvedLimit
    from vcgate.usage import Meter, StreamUsage, rewrite_body, usage_from_json

    budget = 20_000
    spec = LimitSpec("monthly-tokens", "tokens", "$principal", None, budget, None, 30 * 86400, reserve=300)
    meters = [Meter(store=store) for store in _replicas(redis_server)]
    lock = threading.Lock()
    committed: list[int] = []

    def worker(index: int) -> None:
        rng = random.Random(index)
        meter = meters[index % 2]
        for i in range(15):
            raw = json.dumps({"model": "m", "stream": bool(i % 2),
                              "messages": [{"role": "user", "content": "y" * rng.randint(10, 800)}]}).encode()
            est = CallEstimate("m", len(raw), spec.reserve)
            counter = Counter("monthly-tokens/2592000|did:key:zP", budget, spec.per, est.prompt_tokens + est.max_output)
            plan = LimitPlan((ResolvedLimit(spec, "did:key:zP", budget, counter),))
            try:
                admission = meter.admit(plan)
            except QuotaExceededError:
                continue
            sent, added = rewrite_body(raw, max_output=spec.reserve)
            response, prompt, completion = answer(sent, rng=rng)
            if i % 2:
                reader = StreamUsage(strip_usage_chunk=added)
                reader.feed(response)
                usage = reader.usage
            else:
                usage = usage_from_json(response)
            meter.settle(admission, usage)
            with lock:
                committed.append(prompt + completion)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = meters[0].store.peek([Counter("monthly-tokens/2592000|did:key:zP", budget, spec.per, 0)])[0].used
    assert len(committed) < 8 * 15  # the budget refused some calls
    assert used == sum(committed) <= budget


def test_counter_store_says_when_redis_lost_its_data(redis_server, tmp_path):  # noqa: F811
    (store,) = _replicas(redis_server, 1)
    c = Counter("rpm|x", limit=5, window=60, amount=1)
    assert store.reserve([c]).store_reset  # a fresh Redis: the data begins now
    assert not store.reserve([c]).store_reset
    port = redis_server.port
    redis_server.stop()
    restarted = _start_redis(tmp_path, port)
    try:
        again = store.reserve([c])
        assert again.store_reset and again.states[0].used == 1  # the count started again
        assert not store.reserve([c]).store_reset
    finally:
        restarted.stop()
