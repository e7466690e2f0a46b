"""Nonce and replay stores on a real Redis shared by two gateway instances.

Starts its own ``redis-server`` (Debian package ``redis-server``) on 127.0.0.1 with a free
port, no persistence, in a temporary directory. Without it the tests skip with the install
hint, and fail under CI=true.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import NOW, require_real
from vcgate.keys import PrivateKey
from vcgate.session import DPoPVerifier, SessionVerifier, TokenIssuer, TokenVerifier, create_proof
from vcgate.errors import DPoPReplayedError, StoreUnavailableError
from vcgate.stores import RedisNonceStore, RedisReplayStore, redis_client

pytestmark = pytest.mark.integration

INSTALL_HINT = "apt-get install -y redis-server (make test installs it) and pip install redis"
GW = "https://gw.example"
URL = GW + "/v1/chat/completions"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    proc: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _require_client() -> None:
    if importlib.util.find_spec("redis") is None:
        require_real("the redis Python client", INSTALL_HINT)


def _start_redis(tmp: Path, port: int | None = None) -> RedisServer:
    """A fresh, empty redis-server (on ``port``, e.g. a restart where the last one listened)."""
    _require_client()
    exe = shutil.which("redis-server")
    if exe is None:
        require_real("redis-server", INSTALL_HINT)
    port = port or _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp), "--protected-mode", "yes", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = RedisServer(proc, port)
    client = redis_client(server.url, timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            if client.ping():
                return server
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(f"redis-server did not start: {err[-500:]}")
            time.sleep(0.05)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    server = _start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Gateway:
    """One gateway replica: its own verifiers and Redis connection, shared keys and Redis."""

    session: SessionVerifier
    proofs: DPoPVerifier
    replay: RedisReplayStore
    nonces: RedisNonceStore


def _gateway(server: RedisServer, gw_key: PrivateKey, clock: Clock) -> Gateway:
    client = redis_client(server.url, timeout=0.25)
    replay, nonce_store = RedisReplayStore(client), RedisNonceStore(client)
    proofs = DPoPVerifier(algorithms=["EdDSA", "ES256"], replay_store=replay, clock=clock)
    tokens = TokenVerifier(keys=[gw_key.public_key], issuer=GW, audience=GW, clock=clock)
    return Gateway(SessionVerifier(tokens=tokens, proofs=proofs), proofs, replay, nonce_store)


def _call(gw: Gateway, token: str, proof: str):
    return gw.session.verify(authorization=f"DPoP {token}", dpop=proof, htm="POST", htu=URL)


def test_proof_replayed_against_the_other_instance_is_refused(redis_server):
    clock = Clock()
    gw_key, agent = PrivateKey.generate("EdDSA"), PrivateKey.generate("ES256")
    a, b = _gateway(redis_server, gw_key, clock), _gateway(redis_server, gw_key, clock)
    token = TokenIssuer(key=gw_key, issuer=GW, clock=clock).issue(
        subject="did:key:zAgent", holder_jkt=agent.public_key.thumbprint(), scopes=["chat"], audience=GW
    )
    proof = create_proof(agent, htm="POST", htu=URL, access_token=token, clock=clock)
    assert _call(a, token, proof).token.subject == "did:key:zAgent"
    with pytest.raises(DPoPReplayedError):
        _call(b, token, proof)
    with pytest.raises(DPoPReplayedError):
        _call(a, token, proof)
    # A fresh proof goes through on either instance.
    _call(b, token, create_proof(agent, htm="POST", htu=URL, access_token=token, clock=clock))


def test_replay_entries_expire_in_redis(redis_server):
    store = RedisReplayStore(redis_client(redis_server.url))
    assert store.add_if_absent("k", 0.2) is True
    assert store.add_if_absent("k", 0.2) is False
    time.sleep(0.3)
    assert store.add_if_absent("k", 0.2) is True


def test_nonce_single_use_across_instances(redis_server):
    # The gate's challenge nonces: issued by one replica, answered at another, once.
    clock = Clock()
    gw_key = PrivateKey.generate("EdDSA")
    a = _gateway(redis_server, gw_key, clock)
    b = _gateway(redis_server, gw_key, clock)
    nonce = a.nonces.issue(30)
    assert b.nonces.consume(nonce) is True
    assert a.nonces.consume(nonce) is False


def test_nonce_consumed_once_under_concurrency(redis_server):
    stores = [RedisNonceStore(redis_client(redis_server.url)) for _ in range(4)]
    for _ in range(20):
        nonce = stores[0].issue(30)
        wins: list[bool] = []
        barrier = threading.Barrier(len(stores))

        def worker(store: RedisNonceStore) -> None:
            barrier.wait()
            wins.append(store.consume(nonce))

        threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wins.count(True) == 1


def test_nonce_expires_in_redis(redis_server):
    store = RedisNonceStore(redis_client(redis_server.url))
    nonce = store.issue(0.2)
    time.sleep(0.3)
    assert store.consume(nonce) is False


def test_redis_stopped_is_store_unavailable_quickly(redis_server):
    clock = Clock()
    gw_key, agent = PrivateKey.generate("EdDSA"), PrivateKey.generate("EdDSA")
    gw = _gateway(redis_server, gw_key, clock)
    token = TokenIssuer(key=gw_key, issuer=GW, clock=clock).issue(
        subject="s", holder_jkt=agent.public_key.thumbprint(), scopes=[], audience=GW
    )
    gw.nonces.issue(30)  # connection established while Redis is up
    redis_server.stop()
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError) as exc:
        _call(gw, token, create_proof(agent, htm="POST", htu=URL, access_token=token, clock=clock))
    assert exc.value.status == 503 and exc.value.code == "store_unavailable"
    with pytest.raises(StoreUnavailableError):
        gw.replay.add_if_absent("k", 10)
    with pytest.raises(StoreUnavailableError):
        gw.nonces.issue(30)
    assert time.monotonic() - t0 < 2.0


def test_unresponsive_redis_times_out():
    """A Redis that accepts connections but never answers (hung, or a black-holed route)."""
    _require_client()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        store = RedisReplayStore(redis_client(f"redis://127.0.0.1:{port}/0", timeout=0.2))
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            store.add_if_absent("k", 10)
        assert time.monotonic() - t0 < 1.0
    finally:
        listener.close()


def test_a_fresh_redis_takes_the_first_proof_of_the_current_second(redis_server):
    """The generation marker starts with the first proof a fresh Redis sees. ``iat`` has whole
    seconds, so a proof made in that same second is not "from before the loss" (it was refused
    as replayed, and so was every first call after a Redis start); an earlier second still is."""
    store = RedisReplayStore(redis_client(redis_server.url, timeout=0.5), prefix="vcgate:fresh:")
    now = 1_700_000_000.75
    assert store.add_if_absent("first", 60, issued_at=1_700_000_000, now=now)  # same second
    assert not store.add_if_absent("first", 60, issued_at=1_700_000_000, now=now + 1)  # a replay still is one
    assert not store.add_if_absent("older", 60, issued_at=1_699_999_999, now=now + 1)  # an earlier second



def test_a_verifier_starting_on_a_fresh_redis_takes_proofs_made_after_it_started(redis_server):
    """The generation begins when a verifier starts, not with the first proof: a proof made
    after start-up but checked in a later second than its whole-second iat is taken (the first
    token request of `vcgate serve --workers` was refused dpop_replayed whenever it straddled a
    second boundary); a proof from before the start still is refused."""
    client = redis_client(redis_server.url, timeout=0.5)
    started = 1_700_000_000.75
    store = RedisReplayStore(client, prefix="vcgate:start:")
    DPoPVerifier(algorithms=["EdDSA"], replay_store=store, clock=lambda: started)
    assert store.add_if_absent("made-after-start", 60, issued_at=1_700_000_001, now=started + 1.5)
    assert not store.add_if_absent("before-start", 60, issued_at=1_699_999_999, now=started + 1.5)
    # A replica starting later keeps the running generation.
    DPoPVerifier(algorithms=["EdDSA"], replay_store=RedisReplayStore(client, prefix="vcgate:start:"), clock=lambda: started + 50)
    assert store.add_if_absent("made-after-first-start", 60, issued_at=1_700_000_010, now=started + 11)
