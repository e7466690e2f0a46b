"""Benchmark: per-call cost of session mode (access token + DPoP proof) against raw signature checks.

Each session-mode call must check two signatures: the gateway's on the access token and the
client's on the DPoP proof. The ratio printed is (vcgate's cost) / (those raw checks with
pyca/cryptography): parsing, header policy, claim checks, URI normalisation and the
in-memory replay cache are the part above 1.0. Target: <= 1.3.

Two rows per algorithm:

* cold -- the token cache disabled: both signatures are checked on every call; this is the
  like-for-like comparison with the target;
* warm -- the default: a session's token is verified once and then found in the verifier's
  cache, so a call checks one signature (the proof's) and its ratio is below 1.

Every call uses a fresh proof (its own ``jti``), as real clients do; the replay store is
emptied between rounds, outside the timed region.

    .venv/bin/python benchmarks/session.py [--proofs 3000] [--rounds 7] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

from _timing import (
    raw_verifier,  # a sibling module: this folder is on sys.path when run as a script
)

from vcgate.keys import PrivateKey
from vcgate.session import (
    DPoPVerifier,
    SessionVerifier,
    TokenIssuer,
    TokenVerifier,
    create_proof,
)
from vcgate.stores import MemoryReplayStore, RedisReplayStore, ReplayStore, redis_client

GW = "https://gw.example"
URL = GW + "/v1/chat/completions"


class ResettableStore:
    """A replay store the benchmark can empty between rounds (outside the timed region)."""

    def __init__(self, make: Callable[[], ReplayStore]) -> None:
        self._make = make
        self.inner = make()

    def reset(self) -> None:
        self.inner = self._make()

    def add_if_absent(self, key: str, ttl: float) -> bool:
        return self.inner.add_if_absent(key, ttl)


def run_rounds(
    fn: Callable[[str], object], base: Callable[[str], object], proofs: Sequence[str], store: ResettableStore, rounds: int
) -> tuple[float, float, float]:
    """Median us/call of ``fn`` and ``base`` over the proof pool, and the median per-round ratio."""
    a, b, r = [], [], []
    for _ in range(rounds):
        store.reset()
        t0 = time.perf_counter()
        for p in proofs:
            fn(p)
        ta = (time.perf_counter() - t0) / len(proofs) * 1e6
        t0 = time.perf_counter()
        for p in proofs:
            base(p)
        tb = (time.perf_counter() - t0) / len(proofs) * 1e6
        a.append(ta)
        b.append(tb)
        r.append(ta / tb)
    return statistics.median(a), statistics.median(b), statistics.median(r)


def bench(alg: str, n: int, rounds: int, redis_url: str | None) -> list[tuple[str, float, float, float]]:
    now = time.time()
    clock = lambda: now
    gw, agent = PrivateKey.generate(alg), PrivateKey.generate(alg)
    token = TokenIssuer(key=gw, issuer=GW, clock=clock).issue(
        subject="did:key:zAgent", holder_jkt=agent.public_key.thumbprint(), scopes=["chat"], audience=GW,
        credential_ids=["urn:uuid:0b8c6d3e-3f4e-4a57-9b1e-6a1f4f3c2d10"],
    )
    proofs = [create_proof(agent, htm="POST", htu=URL, access_token=token, clock=clock) for _ in range(n)]
    raw_token = raw_verifier(gw, token)
    raw_proofs = {p: raw_verifier(agent, p) for p in proofs}

    def one_raw(p: str) -> None:
        raw_proofs[p]()

    def two_raw(p: str) -> None:
        raw_token()
        raw_proofs[p]()

    rows = []
    stores: list[tuple[str, Callable[[], ReplayStore]]] = [("memory", lambda: MemoryReplayStore())]
    if redis_url:
        client = redis_client(redis_url)
        client.ping()
        stores.append(("redis", lambda: RedisReplayStore(client, prefix=f"bench:{time.monotonic_ns()}:")))
    for store_name, make in stores:
        store = ResettableStore(make)
        proofs_v = DPoPVerifier(algorithms=[alg], replay_store=store, clock=clock)
        for cache_size, label in ((0, "cold"), (4096, "warm")):
            tokens = TokenVerifier(keys=[gw.public_key], issuer=GW, audience=GW, clock=clock, cache_size=cache_size)
            session = SessionVerifier(tokens=tokens, proofs=proofs_v)

            def call(p: str, session: SessionVerifier = session) -> None:
                session.verify(authorization="DPoP " + token, dpop=p, htm="POST", htu=URL)

            # Warm the per-instance caches (token, client key, URI) as a running gateway has them.
            call(create_proof(agent, htm="POST", htu=URL, access_token=token, clock=clock))
            us, base, ratio = run_rounds(call, two_raw, proofs, store, rounds)
            rows.append((f"{alg} {label} token + proof, {store_name} store (vs 2 raw)", us, base, ratio))
            if label == "warm":
                us, base, ratio = run_rounds(call, one_raw, proofs, store, rounds)
                rows.append((f"{alg} warm, same, vs the 1 raw check it must do", us, base, ratio))

    tokens = TokenVerifier(keys=[gw.public_key], issuer=GW, audience=GW, clock=clock, cache_size=0)
    cached = TokenVerifier(keys=[gw.public_key], issuer=GW, audience=GW, clock=clock)
    cached.verify(token)
    single = [token] * n
    us, base, ratio = run_rounds(lambda t: tokens.verify(t), lambda t: raw_token(), single, ResettableStore(MemoryReplayStore), rounds)
    rows.append((f"{alg}   token verify alone, uncached (vs 1 raw)", us, base, ratio))
    us, base, ratio = run_rounds(lambda t: cached.verify(t), lambda t: raw_token(), single, ResettableStore(MemoryReplayStore), rounds)
    rows.append((f"{alg}   token verify alone, cache hit (vs 1 raw)", us, base, ratio))
    store = ResettableStore(MemoryReplayStore)
    pv = DPoPVerifier(algorithms=[alg], replay_store=store, clock=clock)
    at = cached.verify(token)
    us, base, ratio = run_rounds(lambda p: pv.verify(p, htm="POST", htu=URL, access_token=at), one_raw, proofs, store, rounds)
    rows.append((f"{alg}   proof verify alone (vs 1 raw)", us, base, ratio))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proofs", type=int, default=3000, help="fresh proofs per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--redis-url", default=None, help="also measure with a Redis replay store")
    args = ap.parse_args()
    print(f"{'case':<60}{'us/call':>9}{'baseline':>10}{'ratio':>8}")
    for alg in ("EdDSA", "ES256"):
        for name, us, base, ratio in bench(alg, args.proofs, args.rounds, args.redis_url):
            print(f"{name:<60}{us:>9.1f}{base:>10.1f}{ratio:>8.2f}")
    print("target: cold ratio <= 1.3 (both signatures checked on every call)")


if __name__ == "__main__":
    main()
