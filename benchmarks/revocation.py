"""Benchmark: the revocation mirror -- lookup cost, revocation latency, initial sync, memory.

Prints figures, asserts nothing. Targets (issue 3): a lookup <= 2 us and flat from 10^3 to
10^6 revoked keys; a revocation refused within one poll interval + one block of being mined
(poll 0.25 s on anvil); an initial sync of 100,000 revocation events from anvil.

    .venv/bin/python benchmarks/revocation.py [--events 100000] [--trials 10] [--no-anvil]

Parts:

1. lookups -- an index of N revoked keys (N = 10^3 and 10^6, 1,000 keys per list) is written
   as a checkpoint and loaded by a fresh mirror on the embedded chain (the public restart
   path, which also gives checkpoint save/load times and, under tracemalloc, the memory per
   revoked entry). Then: ``RevocationMirror.check`` for keys not revoked (the common case) and
   revoked (raises), ``OnchainStatusMethod.check`` on a whole status entry (strict parsing
   included), each against a plain ``key in set`` of the same size.
2. latency -- anvil with automine and with 1 s blocks, a mirror polling every 0.25 s: time
   from the revocation's receipt (and from sending it) until the mirror refuses.
3. initial sync -- N events written with ``changeStatusesInList`` (500 keys a transaction,
   sent pipelined), then a fresh mirror syncs them: seconds and events/s, with the share of
   ``fetch_events`` (JSON-RPC + decoding) in it.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from _timing import (
    compare,  # a sibling module: this folder is on sys.path when run as a script
)

from vcgate.chain import (
    AnvilNode,
    RegistryClient,
    RevocationEvent,
    connect,
    deploy_registry_tx,
    eth_account_from_key,
    fetch_events,
    find_anvil,
)
from vcgate.credentials.models import FORMAT_VC_JOSE, VerifiedCredential
from vcgate.errors import RevokedError, VCGateError
from vcgate.keys import PrivateKey
from vcgate.status.mirror import RevocationMirror
from vcgate.status.registry import OnchainStatusMethod, status_entry

POLL = 0.25
KEYS_PER_LIST = 1000
BATCH = 500  # keys per changeStatusesInList transaction (~12.8 M gas; anvil's block limit is 30 M)


# --- call helpers (calibrate, timed, compare live in benchmarks/_timing.py) ---------------------


def cycler(calls: list[Callable[[], object]]) -> Callable[[], object]:
    """One callable that runs the next of ``calls`` each time (so lookups hit many keys)."""
    state = [0]
    size = len(calls)

    def run() -> object:
        i = state[0]
        state[0] = (i + 1) % size
        return calls[i]()

    return run


def swallow(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        try:
            return fn()
        except RevokedError:
            return None

    return run


# --- 1. lookups and memory --------------------------------------------------------------------


def dummy_credential() -> VerifiedCredential:
    return VerifiedCredential(
        format=FORMAT_VC_JOSE,
        issuer="did:example:issuer",
        subject=None,
        types=("VerifiableCredential",),
        claims={},
        valid_from=None,
        valid_until=None,
        status=(),
        id=None,
        kid="did:example:issuer#0",
        issuer_key=PrivateKey.generate("EdDSA").public_key,
        payload={},
        token="",
    )


def lookups(n: int, seconds: float) -> dict[str, float]:
    chain = connect("embedded")
    owner = eth_account_from_key(PrivateKey.generate("ES256K"))
    chain.fund(owner.address, 10**18)
    deployed = deploy_registry_tx(chain, owner)
    ns = owner.address
    ns_raw = bytes.fromhex(ns[2:])
    lists = [os.urandom(32) for _ in range(max(1, n // KEYS_PER_LIST))]
    keys = [os.urandom(32) for _ in range(n)]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.json"
        config = dict(
            chain=chain,
            registry=deployed.contract_address,
            chain_id=chain.chain_id(),
            confirmations=0,
            max_staleness=3600.0,
            checkpoint_path=path,
        )
        writer = RevocationMirror(**config)
        assert writer.sync_once().ok
        events = [
            RevocationEvent(0, "0x", "0x", i, ns, lists[i % len(lists)], key, True) for i, key in enumerate(keys)
        ]
        t0 = time.perf_counter()
        with writer._lock:  # benchmark-only: fill the index without n transactions
            writer._apply(events, None)
        apply_rate = n / (time.perf_counter() - t0)
        del events
        t0 = time.perf_counter()
        writer.save_checkpoint()
        save_s = time.perf_counter() - t0
        size = path.stat().st_size
        del writer
        gc.collect()

        mirror = RevocationMirror(**config)
        tracemalloc.start()
        t0 = time.perf_counter()
        assert mirror.sync_once().ok  # loads the checkpoint, checks its block is on the chain
        load_s = time.perf_counter() - t0
        index_bytes, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert mirror.stats().revoked_keys == n

    # Queries over 1,024 different keys, so that the big index is not served from one cache line.
    absent = [(ns_raw, lists[i % len(lists)], os.urandom(32)) for i in range(1024)]
    # Revoked keys, each with the list it was filed under (key i is in list i % len(lists)).
    present = [(ns_raw, lists[idx % len(lists)], keys[idx]) for idx in ((i * 7919) % n for i in range(1024))]
    plain = set(keys)
    base_absent = cycler([lambda k=k: k in plain for _, _, k in absent])
    check_absent = cycler([lambda q=q: mirror.check(*q) for q in absent])
    check_present = swallow(cycler([lambda q=q: mirror.check(*q) for q in present]))
    for q in present[:8]:
        try:
            mirror.check(*q)
            raise AssertionError("a revoked key passed")
        except RevokedError:
            pass

    method = OnchainStatusMethod([mirror])
    cred = dummy_credential()
    entries = [status_entry(mirror.registry, mirror.chain_id, ns, lst, key) for _, lst, key in absent[:256]]
    method_check = cycler([lambda e=e: method.check(cred, e) for e in entries])

    out: dict[str, float] = {"n": n, "apply_rate": apply_rate, "save_s": save_s, "load_s": load_s}
    out["bytes_per_entry"] = index_bytes / n
    out["checkpoint_bytes_per_entry"] = size / n
    out["check_absent"], out["set_absent"], out["ratio_absent"] = compare(check_absent, base_absent, seconds)
    out["check_present"], _, out["ratio_present"] = compare(check_present, base_absent, seconds)
    out["method"], _, out["ratio_method"] = compare(method_check, base_absent, seconds)
    return out


def memory_one_key_per_list(n: int) -> float:
    """Worst case for the nested index: every revoked key in a list of its own."""
    chain = connect("embedded")
    owner = eth_account_from_key(PrivateKey.generate("ES256K"))
    chain.fund(owner.address, 10**18)
    registry = deploy_registry_tx(chain, owner).contract_address
    mirror = RevocationMirror(chain=chain, registry=registry, chain_id=chain.chain_id(), confirmations=0)
    events = [RevocationEvent(0, "0x", "0x", i, owner.address, os.urandom(32), os.urandom(32), True) for i in range(n)]
    gc.collect()
    tracemalloc.start()
    with mirror._lock:
        mirror._apply(events, None)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The key objects were allocated with the events (before tracing): add their size.
    return used / n + sys.getsizeof(events[0].revocation_key)


# --- 2. latency on anvil ----------------------------------------------------------------------


class Anvil:
    def __init__(self, node: AnvilNode) -> None:
        self.node = node
        self.chain = connect(node.url, timeout=120)
        self.owner = eth_account_from_key(PrivateKey.generate("ES256K"))
        self.chain.fund(self.owner.address, 10**21)
        self.deployed = deploy_registry_tx(self.chain, self.owner)
        self.registry = RegistryClient(self.chain, self.deployed.contract_address)

    def mirror(self, **kw: object) -> RevocationMirror:
        return RevocationMirror(
            chain=connect(self.node.url, timeout=120),
            registry=self.registry.address,
            chain_id=self.chain.chain_id(),
            start_block=self.deployed.block_number,
            **kw,  # type: ignore[arg-type]
        )


def latency(node: AnvilNode, trials: int) -> tuple[list[float], list[float]]:
    """Per trial: (mined -> refused, sent -> refused) in seconds.

    The transaction is sent raw and its receipt polled every ~2 ms alongside the mirror, so
    "mined" is known to a few ms (the node's block timestamps have 1 s resolution). A random
    pause before each send keeps the trials from locking onto the mirror's poll phase.
    """
    a = Anvil(node)
    w3 = a.chain.w3
    contract = a.registry.contract
    chain_id = a.chain.chain_id()
    lst = os.urandom(32)
    rng = random.Random(5539)
    from_mined, from_send = [], []
    with a.mirror(poll_interval=POLL, confirmations=3) as mirror:
        mirror.wait_ready(30)
        for _ in range(trials):
            key = os.urandom(32)
            mirror.check(a.owner.address, lst, key)
            tx = contract.functions.changeStatus(True, a.owner.address, lst, key).build_transaction(
                {
                    "from": a.owner.address,
                    "nonce": w3.eth.get_transaction_count(a.owner.address, "pending"),
                    "gas": 100_000,
                    "chainId": chain_id,
                }
            )
            raw = a.owner.sign_transaction(tx).raw_transaction
            time.sleep(rng.uniform(0, POLL))
            t_send = time.perf_counter()
            tx_hash = w3.eth.send_raw_transaction(raw)
            t_mined = t_refused = None
            while t_mined is None or t_refused is None:
                now = time.perf_counter()
                if now - t_send > 10:
                    raise SystemExit("the mirror did not see a revocation within 10 s")
                if t_refused is None:
                    try:
                        mirror.check(a.owner.address, lst, key)
                    except RevokedError:
                        t_refused = now
                if t_mined is None and w3.eth.get_transaction(tx_hash).get("blockNumber") is not None:
                    t_mined = time.perf_counter()
                time.sleep(0.002)
            from_mined.append(max(0.0, t_refused - t_mined))
            from_send.append(t_refused - t_send)
    return from_mined, from_send


# --- 3. initial sync --------------------------------------------------------------------------


def write_events(a: Anvil, total: int) -> tuple[float, int]:
    """``total`` revocations in ``changeStatusesInList`` batches, sent without waiting for each
    receipt (nonces assigned here), so the node mines them back to back."""
    w3 = a.chain.w3
    contract = a.registry.contract
    nonce = w3.eth.get_transaction_count(a.owner.address)
    chain_id = a.chain.chain_id()
    lst = os.urandom(32)
    t0 = time.perf_counter()
    last = None
    sent = 0
    while sent < total:
        size = min(BATCH, total - sent)
        tx = contract.functions.changeStatusesInList(
            [True] * size, a.owner.address, lst, [os.urandom(32) for _ in range(size)]
        ).build_transaction(
            {"from": a.owner.address, "nonce": nonce, "gas": 14_000_000, "chainId": chain_id}
        )
        last = w3.eth.send_raw_transaction(a.owner.sign_transaction(tx).raw_transaction)
        nonce += 1
        sent += size
    receipt = w3.eth.wait_for_transaction_receipt(last, timeout=600, poll_latency=0.05)
    if receipt["status"] != 1:
        raise SystemExit("a batch transaction failed")
    return time.perf_counter() - t0, a.chain.block_number()


def initial_sync(node: AnvilNode, total: int) -> dict[str, float]:
    a = Anvil(node)
    write_s, head = write_events(a, total)
    t0 = time.perf_counter()
    fetched = fetch_events(a.chain, a.registry.address, a.deployed.block_number, head)
    fetch_s = time.perf_counter() - t0
    assert len(fetched) == total, len(fetched)
    del fetched
    mirror = a.mirror(confirmations=12)
    t0 = time.perf_counter()
    result = mirror.sync_once()
    sync_s = time.perf_counter() - t0
    if not result.ok:
        raise SystemExit(f"initial sync failed: {result.error}")
    assert mirror.stats().revoked_keys == total
    return {
        "events": total,
        "blocks": head - a.deployed.block_number,
        "write_s": write_s,
        "fetch_s": fetch_s,
        "sync_s": sync_s,
        "rate": total / sync_s,
        "queries": mirror.stats().log_queries,
    }


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="events for the initial-sync benchmark")
    ap.add_argument("--trials", type=int, default=10, help="revocations per latency measurement")
    ap.add_argument("--seconds", type=float, default=2.0, help="time per lookup comparison")
    ap.add_argument("--no-anvil", action="store_true", help="only the in-process parts")
    args = ap.parse_args()

    print("== lookups (index loaded from a checkpoint; queries cycle over 1,024 keys) ==")
    rows = [lookups(n, args.seconds) for n in (1_000, 1_000_000)]
    for r in rows:
        print(
            f"N={int(r['n']):>9,}  check (not revoked) {r['check_absent']:.2f} us"
            f"  check (revoked, raises) {r['check_present']:.2f} us"
            f"  OnchainStatusMethod.check {r['method']:.2f} us"
            f"  | plain set membership {r['set_absent']:.3f} us"
        )
    for r in rows:
        print(
            f"N={int(r['n']):>9,}  ratio vs set membership: check {r['ratio_absent']:.1f}x,"
            f" revoked {r['ratio_present']:.1f}x, full entry {r['ratio_method']:.1f}x"
        )
    small, big = rows
    print(
        f"flatness: check at 10^6 / at 10^3 = {big['check_absent'] / small['check_absent']:.2f}"
        f" (target <= 2 us: {'met' if big['check_absent'] <= 2.0 else 'MISSED'} at 10^6)"
    )
    print(
        f"index fill rate {big['apply_rate']:,.0f} events/s (no decoding, no I/O);"
        f" checkpoint of 10^6 keys: save {big['save_s']:.2f} s, load+verify {big['load_s']:.2f} s,"
        f" {big['checkpoint_bytes_per_entry']:.0f} bytes/key on disk"
    )
    print("== memory per revoked entry (tracemalloc) ==")
    print(f"10^6 keys, {KEYS_PER_LIST:,} per list: {big['bytes_per_entry']:.0f} bytes/key")
    print(f"10^3 keys, {KEYS_PER_LIST:,} per list: {small['bytes_per_entry']:.0f} bytes/key")
    worst = memory_one_key_per_list(100_000)
    print(f"10^5 keys, one list each (worst case): {worst:.0f} bytes/key")
    print(f"ratio 10^6-key index / raw key bytes (32): {big['bytes_per_entry'] / 32:.1f}x")

    if args.no_anvil:
        return
    if find_anvil() is None:
        print("anvil not found: npm ci --prefix tools/chain (skipping the anvil parts)")
        return

    print(f"== revocation latency, poll {POLL} s, {args.trials} trials ==")
    for label, block_time in (("automine", None), ("1 s blocks", 1.0)):
        with AnvilNode(block_time=block_time) as node:
            mined, sent = latency(node, args.trials)
        target = POLL + (block_time or 0.0)
        print(
            f"{label + ':':<12} mined -> refused median {statistics.median(mined):.3f} s, max {max(mined):.3f} s;"
            f" sent -> refused median {statistics.median(sent):.3f} s, max {max(sent):.3f} s"
        )
        print(
            f"{'':<12} target one poll + one block = {target:.2f} s;"
            f" ratio max(sent -> refused) / target = {max(sent) / target:.2f}"
        )

    print(f"== initial sync of {args.events:,} revocation events from anvil ==")
    with AnvilNode() as node:
        r = initial_sync(node, args.events)
    print(
        f"wrote {r['events']:,.0f} events in {r['blocks']:,.0f} blocks in {r['write_s']:.1f} s;"
        f" fetch_events alone {r['fetch_s']:.1f} s ({r['events'] / r['fetch_s']:,.0f} events/s)"
    )
    print(
        f"mirror initial sync: {r['sync_s']:.1f} s, {r['rate']:,.0f} events/s,"
        f" {r['queries']:.0f} eth_getLogs queries (index fill alone: {big['apply_rate']:,.0f} events/s,"
        f" so JSON-RPC and log decoding are {1 - r['rate'] / big['apply_rate']:.0%} of it)"
    )
    if args.events != 100_000:
        print(f"extrapolated to 100,000 events: {100_000 / r['rate']:.1f} s")


if __name__ == "__main__":
    try:
        main()
    except VCGateError as exc:
        raise SystemExit(f"{exc.code}: {exc.message}") from exc
