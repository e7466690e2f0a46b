"""Faults of the shared Redis store: killed, paused (SIGSTOP), restarted empty.

A gate (the one every adapter uses) with the Redis nonce and DPoP replay stores on a real
``redis-server`` on 127.0.0.1. Its clock advances by the test, so proofs carry real issue
times. For every fault: a replayed DPoP proof is never accepted, a fresh request gets a
coded refusal (``store_unavailable``, 503) while Redis cannot answer, and fresh requests are
accepted again within the stated bound after Redis is back -- by themselves (the client
reconnects). Restarted *empty*, the replay data is gone: the generation marker (issue 12)
makes every proof issued before the restart refused, so the old proofs stay unreplayable.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.integration.test_redis_store import _start_redis
from tests.middleware.helpers import make_world
from tests.support import NOW
from vcgate.gate import RequestView
from vcgate.session import create_proof
from vcgate.stores import RedisNonceStore, RedisReplayStore, redis_client

pytestmark = pytest.mark.integration

AUD = "https://gw.example"
CHAT = "/v1/chat/completions"
TOKEN = "/.well-known/vcgate/token"
REDIS_TIMEOUT = 0.25  # --redis-timeout
# Stated bounds: a dead or stopped Redis is refused within one command timeout (the first
# request after the fault); a Redis that is back answers the next request (a new connection).
FAIL_BOUND = REDIS_TIMEOUT + 2.0
RECOVER_BOUND = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _view(path: str = CHAT, headers=(), model: str | None = "gpt-4o") -> RequestView:
    return RequestView(method="POST", path=path, host="gw.example", scheme="https", headers=headers, model=model,
                       body_available=model is not None)


class Replica:
    def __init__(self, server, tmp_path) -> None:
        self.server, self.tmp = server, tmp_path
        self.clock = Clock()
        client = redis_client(server.url, timeout=REDIS_TIMEOUT)
        self.w = make_world(AUD, clock=self.clock, replay_store=RedisReplayStore(client),
                            nonce_store=RedisNonceStore(client))
        self.gate = self.w.gate
        challenge = self.gate.check(_view())
        proof = create_proof(self.w.holder.key, htm="POST", htu=AUD + TOKEN, clock=self.clock)
        status, _, body = self.gate.token_endpoint(_view(TOKEN, [("DPoP", proof)], None),
                                                   {"vp_token": self.w.presentation(challenge.body["nonce"])})
        assert status == 200, body
        self.token = body["access_token"]
        self.used: list[str] = []

    def call(self, proof: str | None = None) -> tuple[int, str | None]:
        """A session call with ``proof`` (default: a fresh one); (status, code)."""
        if proof is None:
            self.clock.now += 0.001
            proof = create_proof(self.w.holder.key, htm="POST", htu=AUD + CHAT, access_token=self.token,
                                 clock=self.clock)
        d = self.gate.check(_view(headers=[("Authorization", f"DPoP {self.token}"), ("DPoP", proof)]))
        if d.allow:
            self.used.append(proof)
        return d.status, d.code

    def no_replay_accepted(self) -> None:
        for proof in self.used[-3:]:
            status, code = self.call(proof)
            assert status != 200, "a replayed DPoP proof was accepted"
            assert code in ("dpop_replayed", "store_unavailable"), code

    def until(self, what: str, want: tuple[int, str | None], bound: float) -> float:
        t0 = time.monotonic()
        while True:
            self.no_replay_accepted()
            got = self.call()
            if got == want:
                return time.monotonic() - t0
            assert time.monotonic() - t0 <= bound, f"{what}: {got} after {bound} s, expected {want}"
            self.clock.now += 0.05
            time.sleep(0.05)


@pytest.fixture
def replica(tmp_path):
    server = _start_redis(tmp_path)
    r = Replica(server, tmp_path)
    yield r
    r.server.stop()


def test_redis_killed_then_restarted_empty(replica, timing):
    assert replica.call() == (200, None)
    replica.no_replay_accepted()
    replica.server.proc.send_signal(signal.SIGKILL)
    replica.server.proc.wait(5)
    timing("fail closed", replica.until("killed", (503, "store_unavailable"), FAIL_BOUND))
    for _ in range(5):  # and stays closed while Redis is gone
        replica.no_replay_accepted()
        assert replica.call() == (503, "store_unavailable")
    replica.clock.now += 5  # the outage lasts; proofs from before it are still within their window
    replica.server = _start_redis(replica.tmp, port=replica.server.port)  # empty: no replay data
    timing("recover", replica.until("restarted", (200, None), RECOVER_BOUND))
    # The proofs used before the restart were forgotten with Redis' data: still refused.
    before = replica.used[:-1]
    assert before
    for proof in before:
        assert replica.call(proof) == (401, "dpop_replayed")


def test_redis_paused_with_sigstop(replica, timing):
    assert replica.call() == (200, None)
    os.kill(replica.server.proc.pid, signal.SIGSTOP)
    try:
        timing("fail closed", replica.until("paused", (503, "store_unavailable"), FAIL_BOUND))
        for _ in range(3):
            replica.no_replay_accepted()
            assert replica.call() == (503, "store_unavailable")
    finally:
        os.kill(replica.server.proc.pid, signal.SIGCONT)
    timing("recover", replica.until("resumed", (200, None), RECOVER_BOUND))
    replica.no_replay_accepted()


def test_challenge_nonce_store_down_is_a_coded_refusal(replica):
    replica.server.stop()
    d = replica.gate.check(_view())
    assert (d.allow, d.status, d.code) == (False, 503, "store_unavailable")
