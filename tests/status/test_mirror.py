"""The revocation mirror: on the embedded chain (eth-tester) and on a scripted fake chain.

The embedded chain gives real logs, real block hashes and real reorgs (eth-tester's
snapshot / revert); the fake chain scripts what a real node rarely does on demand: a reorg
deeper than the confirmation window, a branch switch between two reads of one sync, a node
that goes away.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time

import pytest

from tests.chain.helpers import require_chain_stack

require_chain_stack()

from tests.chain.conftest import chain, owner, registry, stranger  # noqa: E402,F401 - shared fixtures
from vcgate.chain import BlockRef, RevocationEvent  # noqa: E402
from vcgate.errors import ChainUnavailableError  # noqa: E402
from vcgate.errors import (  # noqa: E402
    RevokedError,
    StatusUnavailableError,
    StatusUnsupportedError,
    VCGateError,
)
from vcgate.status import mirror as mirror_module  # noqa: E402
from vcgate.status.mirror import CHECKPOINT_FORMAT, RevocationMirror  # noqa: E402


class Clock:
    def __init__(self, now: float = 1_780_272_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def make_mirror(chain, registry):  # noqa: F811 - the shared fixtures
    made: list[RevocationMirror] = []

    def make(**kw):
        kw.setdefault("chain", chain)
        kw.setdefault("registry", registry.address)
        kw.setdefault("chain_id", chain.chain_id())
        kw.setdefault("confirmations", 2)
        made.append(RevocationMirror(**kw))
        return made[-1]

    yield make
    for m in made:
        m.stop()


def refused(fn, *args) -> str:
    with pytest.raises(VCGateError) as excinfo:
        fn(*args)
    return excinfo.value.code


def synced(m: RevocationMirror):
    result = m.sync_once()
    assert result.ok, result.error
    return result


# --- basic mirroring on the embedded chain --------------------------------------------------


def test_docs_example_runs(capsys):
    import re

    from tests.chain.helpers import REPO

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "revocation.md").read_text(), re.DOTALL)
    (example,) = [b for b in blocks if "registry.change_status(" in b]
    exec(compile(example, "docs/revocation.md", "exec"), {})  # noqa: S102 - our own documentation
    out = capsys.readouterr().out
    assert "before the first sync: status_unavailable" in out
    assert "in force, as of" in out and "refused: revoked" in out


def test_revoke_unrevoke_and_list_revocation(make_mirror, registry, owner):  # noqa: F811
    lst, key, other = os.urandom(32), os.urandom(32), os.urandom(32)
    m = make_mirror()
    synced(m)
    as_of = m.check(owner.address, lst, key)
    assert isinstance(as_of, float)

    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=key)
    synced(m)
    assert refused(m.check, owner.address, lst, key) == "revoked"
    assert m.check(owner.address, lst, other)  # another key of the list is fine
    assert m.is_revoked(owner.address, lst, key) and not m.is_revoked(owner.address, lst, other)

    registry.change_status(owner, revoked=False, revocation_list=lst, revocation_key=key)
    synced(m)
    m.check(owner.address, lst, key)

    # Whole list: every key reads revoked; a key revoked on its own stays revoked afterwards.
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=other)
    registry.change_list_status(owner, revoked=True, revocation_list=lst)
    synced(m)
    assert refused(m.check, owner.address, lst, key) == "revoked"
    assert refused(m.check, owner.address, lst, os.urandom(32)) == "revoked"
    assert m.list_is_revoked(owner.address, lst)
    registry.change_list_status(owner, revoked=False, revocation_list=lst)
    synced(m)
    m.check(owner.address, lst, key)
    assert refused(m.check, owner.address, lst, other) == "revoked"


def test_hex_and_bytes_identifiers_agree(make_mirror, registry, owner):  # noqa: F811
    lst, key = os.urandom(32), os.urandom(32)
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=key)
    m = make_mirror()
    synced(m)
    for ns in (owner.address, owner.address.lower(), bytes.fromhex(owner.address[2:])):
        assert refused(m.check, ns, "0x" + lst.hex(), "0x" + key.hex()) == "revoked"
    assert refused(m.check, owner.address, lst, b"short") == "malformed"
    assert refused(m.check, "0x1234", lst, key) == "malformed"


def test_mirror_answers_exactly_like_the_contract(make_mirror, registry, owner):  # noqa: F811
    """A random history of key, batch and list writes: the mirror equals isRevoked everywhere."""
    rng = random.Random(5539)
    lists = [os.urandom(32) for _ in range(2)]
    keys = [os.urandom(32) for _ in range(4)]
    m = make_mirror(confirmations=3)
    synced(m)
    for step in range(14):
        lst = rng.choice(lists)
        op = rng.random()
        if op < 0.5:
            registry.change_status(
                owner, revoked=rng.random() < 0.6, revocation_list=lst, revocation_key=rng.choice(keys)
            )
        elif op < 0.8:
            batch = [rng.choice(keys) for _ in range(4)]  # duplicates: the last write wins
            registry.change_statuses(
                owner, revoked=[rng.random() < 0.5 for _ in batch], revocation_list=lst, revocation_keys=batch
            )
        else:
            registry.change_list_status(owner, revoked=rng.random() < 0.5, revocation_list=lst)
        if step % 3 == 2:
            synced(m)
    synced(m)
    for lst in lists:
        assert m.list_is_revoked(owner.address, lst) == registry.list_is_revoked(owner.address, lst)
        for key in keys:
            assert m.is_revoked(owner.address, lst, key) == registry.is_revoked(owner.address, lst, key)


def test_events_of_one_block_apply_in_log_order(make_mirror, registry, owner, monkeypatch):  # noqa: F811
    lst, key = os.urandom(32), os.urandom(32)
    # One transaction, one block: revoke then reinstate the same key -> reinstated.
    registry.change_statuses(owner, revoked=[True, False], revocation_list=lst, revocation_keys=[key, key])
    assert not registry.is_revoked(owner.address, lst, key)
    # ... and the opposite order in the next block -> revoked.
    key2 = os.urandom(32)
    registry.change_statuses(owner, revoked=[False, True], revocation_list=lst, revocation_keys=[key2, key2])

    # Even if logs came back from the node shuffled, the mirror orders them by (block, logIndex).
    real = mirror_module.fetch_events

    def shuffled(*args, **kwargs):
        events = real(*args, **kwargs)
        random.Random(1).shuffle(events)
        return list(reversed(events))

    monkeypatch.setattr(mirror_module, "fetch_events", shuffled)
    m = make_mirror(confirmations=0)
    synced(m)
    assert not m.is_revoked(owner.address, lst, key)
    assert m.is_revoked(owner.address, lst, key2)


def test_paging_by_max_block_range(make_mirror, registry, owner, chain, monkeypatch):  # noqa: F811
    lst = os.urandom(32)
    keys = [os.urandom(32) for _ in range(5)]
    start = chain.block_number() + 1
    for key in keys:  # one block each (the embedded chain mines every transaction at once)
        registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=key)
    end = chain.block_number()
    ranges: list[tuple[int, int]] = []
    real = mirror_module.fetch_events

    def counting(chain_, address, a, b, **kwargs):
        ranges.append((a, b))
        return real(chain_, address, a, b, **kwargs)

    monkeypatch.setattr(mirror_module, "fetch_events", counting)
    m = make_mirror(start_block=start, max_block_range=2, confirmations=1)
    result = synced(m)
    assert (result.from_block, result.to_block, result.events) == (start, end, 5)
    assert all(b - a + 1 <= 2 for a, b in ranges)
    covered = sorted(n for a, b in ranges for n in range(a, b + 1))
    assert covered == list(range(start, end + 1))  # every block exactly once
    assert all(m.is_revoked(owner.address, lst, k) for k in keys)
    assert m.stats().log_queries == len(ranges) == 3


def test_namespace_filter(make_mirror, registry, owner, stranger):  # noqa: F811
    lst, key = os.urandom(32), os.urandom(32)
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=key)
    registry.change_status(stranger, revoked=True, revocation_list=lst, revocation_key=key)
    m = make_mirror(namespaces=[owner.address.lower()])
    synced(m)
    assert refused(m.check, owner.address, lst, key) == "revoked"
    assert not m.is_revoked(stranger.address, lst, key)  # never fetched
    assert refused(m.check, stranger.address, lst, key) == "status_unsupported"


# --- staleness, errors, health --------------------------------------------------------------


def test_unavailable_before_the_first_sync(make_mirror, owner):  # noqa: F811
    m = make_mirror()
    assert refused(m.check, owner.address, os.urandom(32), os.urandom(32)) == "status_unavailable"
    assert not m.healthy
    assert m.lag().seconds is None
    with pytest.raises(StatusUnavailableError):
        m.wait_ready(0.01)


def test_stale_mirror_fails_closed_then_recovers(make_mirror, registry, owner, chain):  # noqa: F811
    clock = Clock()
    lst, key = os.urandom(32), os.urandom(32)
    m = make_mirror(clock=clock, max_staleness=30)
    synced(m)
    m.check(owner.address, lst, key)
    clock.advance(29)
    assert m.check(owner.address, lst, key) == clock.now - 29  # as_of: the last good sync
    assert m.lag().seconds == pytest.approx(29) and m.healthy
    clock.advance(2)
    assert refused(m.check, owner.address, lst, key) == "status_unavailable"
    lag = m.lag()
    assert not m.healthy and not lag.healthy and lag.seconds == pytest.approx(31)
    assert lag.synced_block == lag.head_block == chain.block_number() and lag.blocks_behind == 0
    synced(m)
    m.check(owner.address, lst, key)
    assert m.healthy


class _Down:
    """Stands in for a node that stopped answering."""

    endpoint = "http://127.0.0.1:9"

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ChainUnavailableError("cannot reach the node (ConnectionError)", endpoint=self.endpoint)

        return fail


def test_sync_errors_are_counted_never_raised(make_mirror, owner, caplog):  # noqa: F811
    clock = Clock()
    m = make_mirror(clock=clock, max_staleness=5)
    synced(m)
    real_chain = m.chain
    m.chain = _Down()  # type: ignore[assignment]
    with caplog.at_level(logging.DEBUG, logger="vcgate.status.mirror"):
        for _ in range(3):
            result = m.sync_once()
            assert not result.ok and result.error.code == "chain_unavailable"
    stats = m.stats()
    assert (stats.errors, stats.consecutive_errors) == (3, 3)
    assert "chain_unavailable" in stats.last_error
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one warning per outage, not one per poll
    m.check(owner.address, os.urandom(32), os.urandom(32))  # still within max_staleness
    clock.advance(6)
    assert refused(m.check, owner.address, os.urandom(32), os.urandom(32)) == "status_unavailable"
    m.chain = real_chain
    synced(m)
    assert m.stats().consecutive_errors == 0 and m.healthy


def test_wrong_chain_or_registry_never_becomes_healthy(make_mirror, chain, owner):  # noqa: F811
    m = make_mirror(chain_id=chain.chain_id() + 1)
    error = m.sync_once().error
    assert (error.code, error.details["reason"]) == ("chain_mismatch", "chain_id")
    assert not m.healthy and m.lag().chain_mismatch == "chain_id"
    m = make_mirror(registry=owner.address)  # an account, no contract: no events, ever
    error = m.sync_once().error
    assert (error.code, error.details["reason"]) == ("chain_mismatch", "registry_code")
    assert refused(m.check, owner.address, os.urandom(32), os.urandom(32)) == "status_unavailable"


def test_max_head_age(make_mirror, chain):  # noqa: F811
    head = chain.block()
    m = make_mirror(clock=Clock(head.timestamp + 100), max_head_age=60)
    result = m.sync_once()
    assert not result.ok and result.error.code == "chain_unavailable"
    assert "not following its network" in result.error.message
    m = make_mirror(clock=Clock(head.timestamp + 10), max_head_age=60)
    synced(m)


def test_background_thread_survives_errors(make_mirror, owner):  # noqa: F811
    m = make_mirror(poll_interval=0.02)
    m.chain = _Down()  # type: ignore[assignment]
    m.start()
    time.sleep(0.3)
    assert m._thread.is_alive()
    m.stop()
    assert m.stats().errors >= 2
    assert refused(m.check, owner.address, os.urandom(32), os.urandom(32)) == "status_unavailable"


# --- checkpoints --------------------------------------------------------------------------


def test_restart_from_checkpoint_without_replay(make_mirror, registry, owner, chain, tmp_path, monkeypatch):  # noqa: F811
    lst, early, late = os.urandom(32), os.urandom(32), os.urandom(32)
    path = tmp_path / "cp.json"
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=early)
    first = make_mirror(checkpoint_path=path, confirmations=2)
    synced(first)
    first.stop()
    doc = json.loads(path.read_text())
    base = doc["block"]["number"]
    assert doc["format"] == CHECKPOINT_FORMAT and base == chain.block_number() - 2

    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=late)
    ranges: list[tuple[int, int]] = []
    real = mirror_module.fetch_events

    def counting(chain_, address, a, b, **kwargs):
        ranges.append((a, b))
        return real(chain_, address, a, b, **kwargs)

    monkeypatch.setattr(mirror_module, "fetch_events", counting)
    second = make_mirror(checkpoint_path=path, confirmations=2)
    result = synced(second)
    assert result.from_block == base + 1 and min(a for a, _ in ranges) == base + 1
    assert len(ranges) == 1  # three blocks, one query: no replay from block 0
    assert second.is_revoked(owner.address, lst, early)  # from the checkpoint
    assert second.is_revoked(owner.address, lst, late)  # from the new blocks
    assert second.stats().checkpoints_rejected == 0


def test_checkpoint_holds_the_confirmed_state_only(make_mirror, registry, owner, chain, tmp_path):  # noqa: F811
    lst, old, tail_key = os.urandom(32), os.urandom(32), os.urandom(32)
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=old)
    m = make_mirror(checkpoint_path=tmp_path / "cp.json", confirmations=3)
    synced(m)
    # Now change things inside the unconfirmed window: un-revoke one, revoke another, list too.
    registry.change_status(owner, revoked=False, revocation_list=lst, revocation_key=old)
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=tail_key)
    registry.change_list_status(owner, revoked=True, revocation_list=lst)
    synced(m)
    assert m.stats().tail_blocks == 3
    assert m.save_checkpoint()
    doc = json.loads((tmp_path / "cp.json").read_text())
    assert doc["block"]["number"] == chain.block_number() - 3
    prefix = bytes.fromhex(owner.address[2:]) + lst
    keys = bytes.fromhex(doc["revokedKeys"][prefix.hex()])
    assert old in {keys[i : i + 32] for i in range(0, len(keys), 32)}  # as of the base block
    assert tail_key not in keys
    assert prefix.hex() not in doc["revokedLists"]
    # The live view has the tail applied.
    assert not m.is_revoked(owner.address, os.urandom(32), old)
    assert m.list_is_revoked(owner.address, lst)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda doc: "{not json", id="not-json"),
        pytest.param(lambda doc: json.dumps(doc)[: len(json.dumps(doc)) // 2], id="truncated"),
        pytest.param(lambda doc: json.dumps({**doc, "format": "other/1"}), id="format"),
        pytest.param(lambda doc: json.dumps({**doc, "chainId": doc["chainId"] + 1}), id="other-chain"),
        pytest.param(lambda doc: json.dumps({**doc, "registry": "0x" + "11" * 20}), id="other-registry"),
        pytest.param(lambda doc: json.dumps({**doc, "namespaces": ["0x" + "11" * 20]}), id="other-filter"),
        pytest.param(lambda doc: json.dumps({**doc, "keyCount": doc["keyCount"] + 1}), id="key-count"),
        pytest.param(
            lambda doc: json.dumps({**doc, "revokedKeys": {k: v[:-2] for k, v in doc["revokedKeys"].items()}}),
            id="short-key",
        ),
        pytest.param(lambda doc: json.dumps({**doc, "block": {**doc["block"], "hash": "0x12"}}), id="bad-hash"),
        pytest.param(lambda doc: json.dumps([doc]), id="not-an-object"),
    ],
)
def test_bad_checkpoint_means_full_resync_with_a_warning(
    corrupt, make_mirror, registry, owner, chain, tmp_path, caplog, monkeypatch  # noqa: F811
):
    lst, key = os.urandom(32), os.urandom(32)
    start = chain.block_number()
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=key)
    chain.w3.testing.mine(2)  # so that the revocation is past the confirmation depth
    path = tmp_path / "cp.json"
    first = make_mirror(checkpoint_path=path, start_block=start)
    synced(first)
    first.stop()
    path.write_text(corrupt(json.loads(path.read_text())))

    starts: list[int] = []
    real = mirror_module.fetch_events

    def counting(chain_, address, a, b, **kwargs):
        starts.append(a)
        return real(chain_, address, a, b, **kwargs)

    monkeypatch.setattr(mirror_module, "fetch_events", counting)
    with caplog.at_level(logging.WARNING, logger="vcgate.status.mirror"):
        second = make_mirror(checkpoint_path=path, start_block=start)
        synced(second)
    assert any("ignoring checkpoint" in r.getMessage() for r in caplog.records)
    assert second.stats().checkpoints_rejected == 1
    assert min(starts) == start  # replayed from start_block
    assert second.is_revoked(owner.address, lst, key)


def test_checkpoint_block_reorganised_away_fails_closed(make_mirror, registry, owner, chain, tmp_path, caplog):  # noqa: F811
    lst, key = os.urandom(32), os.urandom(32)
    snapshot = chain.w3.testing.snapshot()
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=key)
    chain.w3.testing.mine(2)
    path = tmp_path / "cp.json"
    first = make_mirror(checkpoint_path=path, confirmations=1)
    synced(first)
    first.stop()
    saved = json.loads(path.read_text())["block"]["number"]
    # The node now follows another history past the checkpoint's block.
    chain.w3.testing.revert(snapshot)
    chain.w3.testing.mine(4)
    assert chain.block(saved).hash != json.loads(path.read_text())["block"]["hash"]

    with caplog.at_level(logging.WARNING, logger="vcgate.status.mirror"):
        second = make_mirror(checkpoint_path=path, confirmations=1)
        result = second.sync_once()
    assert not result.ok and result.error.details["reason"] == "history"
    assert any("no longer on the node's chain" in r.getMessage() for r in caplog.records)
    assert second.is_revoked(owner.address, lst, key)  # the checkpoint's state is kept, unanswered
    assert refused(second.check, owner.address, lst, key) == "status_unavailable"
    # An operator who accepts the node's new history removes the checkpoint.
    path.unlink()
    third = make_mirror(checkpoint_path=path, confirmations=1)
    synced(third)
    third.check(owner.address, lst, key)


# --- reorgs on the embedded chain -------------------------------------------------------------


def test_reorg_undoes_a_revocation(make_mirror, registry, owner, chain):  # noqa: F811
    lst, key = os.urandom(32), os.urandom(32)
    m = make_mirror(confirmations=4)
    synced(m)
    snapshot = chain.w3.testing.snapshot()
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=key)
    synced(m)
    assert refused(m.check, owner.address, lst, key) == "revoked"

    chain.w3.testing.revert(snapshot)
    chain.w3.testing.mine(3)  # a longer branch without the revocation
    result = synced(m)
    assert result.rolled_back == 1 and m.stats().reorgs == 1
    assert not m.is_revoked(owner.address, lst, key)
    m.check(owner.address, lst, key)
    assert m.lag().synced_block == chain.block_number()


def test_reorg_to_a_branch_with_other_writes(make_mirror, registry, owner, chain):  # noqa: F811
    lst, a, b = os.urandom(32), os.urandom(32), os.urandom(32)
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=a)
    m = make_mirror(confirmations=5)
    synced(m)
    snapshot = chain.w3.testing.snapshot()
    registry.change_status(owner, revoked=False, revocation_list=lst, revocation_key=a)
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=b)
    synced(m)
    assert (m.is_revoked(owner.address, lst, a), m.is_revoked(owner.address, lst, b)) == (False, True)

    chain.w3.testing.revert(snapshot)
    registry.change_list_status(owner, revoked=True, revocation_list=lst)  # same height, other content
    result = synced(m)
    assert result.rolled_back == 2
    assert m.list_is_revoked(owner.address, lst)
    assert m.is_revoked(owner.address, lst, a)  # still revoked on its own (never reinstated here)
    registry.change_list_status(owner, revoked=False, revocation_list=lst)
    synced(m)
    assert (m.is_revoked(owner.address, lst, a), m.is_revoked(owner.address, lst, b)) == (True, False)
    assert registry.is_revoked(owner.address, lst, a) and not registry.is_revoked(owner.address, lst, b)


def test_chain_shorter_after_revert(make_mirror, registry, owner, chain):  # noqa: F811
    lst, key = os.urandom(32), os.urandom(32)
    m = make_mirror(confirmations=3)
    synced(m)
    snapshot = chain.w3.testing.snapshot()
    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=key)
    chain.w3.testing.mine(1)
    synced(m)
    chain.w3.testing.revert(snapshot)  # nothing mined after: the head is lower than the mirror's
    result = synced(m)
    assert result.rolled_back == 2
    assert not m.is_revoked(owner.address, lst, key)
    assert m.lag().synced_block == chain.block_number()


# --- scripted chain: deep reorgs, races, atomicity -----------------------------------------------

NS = "0x" + "ab" * 20
LIST = b"\x01" * 32


def _hash(*parts: object) -> str:
    return "0x" + hashlib.sha256(repr(parts).encode()).hexdigest()


class FakeChain:
    """Blocks and logs scripted by the test; ``fork(n)`` keeps blocks 0..n and starts a new branch."""

    endpoint = "fake://node"
    kind = "fake"

    def __init__(self, chain_id: int = 4242) -> None:
        self._chain_id = chain_id
        self.branch = 0
        self.blocks = [BlockRef(0, _hash("genesis"), "0x" + "00" * 32, 1000)]
        self.events: dict[int, list[RevocationEvent]] = {0: []}
        self.on_get_logs = None

    def chain_id(self) -> int:
        return self._chain_id

    node_chain_id = chain_id

    code = b"\x60"

    def code_at(self, address: str, block="latest") -> bytes:
        return self.code

    def block(self, ident="latest"):
        if ident == "latest":
            return self.blocks[-1]
        return self.blocks[ident] if 0 <= ident < len(self.blocks) else None

    def mine(self, *changes: tuple[bytes | None, bool]) -> BlockRef:
        parent = self.blocks[-1]
        ref = BlockRef(parent.number + 1, _hash(self.branch, parent.hash), parent.hash, parent.timestamp + 1)
        self.blocks.append(ref)
        self.events[ref.number] = [
            RevocationEvent(ref.number, ref.hash, _hash("tx", ref.hash, i), i, NS, LIST, key, revoked)
            for i, (key, revoked) in enumerate(changes)
        ]
        return ref

    def fork(self, keep: int) -> None:
        self.branch += 1
        del self.blocks[keep + 1 :]
        for n in list(self.events):
            if n > keep:
                del self.events[n]

    def get_logs(self, a: int, b: int) -> list[RevocationEvent]:
        if self.on_get_logs is not None:
            self.on_get_logs(a, b)
        return [ev for n in range(a, min(b, len(self.blocks) - 1) + 1) for ev in self.events[n]]


@pytest.fixture
def fake(monkeypatch) -> FakeChain:
    node = FakeChain()
    real = mirror_module.fetch_events

    def fetch(chain_, address, a, b, **kwargs):
        if isinstance(chain_, FakeChain):
            return chain_.get_logs(a, b)
        return real(chain_, address, a, b, **kwargs)

    monkeypatch.setattr(mirror_module, "fetch_events", fetch)
    return node


def fake_mirror(node: FakeChain, **kw) -> RevocationMirror:
    kw.setdefault("confirmations", 3)
    return RevocationMirror(chain=node, registry="0x" + "cd" * 20, chain_id=4242, **kw)  # type: ignore[arg-type]


K1, K2 = b"\x11" * 32, b"\x22" * 32


def test_fake_reorg_within_the_window(fake):
    fake.mine()
    m = fake_mirror(fake)
    synced(m)
    fake.mine((K1, True))
    fake.mine((K2, True))
    synced(m)
    fake.fork(1)
    fake.mine((K2, True))  # K2 again, one block earlier; K1 never
    fake.mine()
    fake.mine()
    result = synced(m)
    assert result.rolled_back == 2
    assert not m.is_revoked(NS, LIST, K1) and m.is_revoked(NS, LIST, K2)


def test_fake_reorg_deeper_than_the_window_is_a_replaced_chain(fake, caplog):
    """A reorg below the confirmed base cannot be told from a replaced chain: refuse, keep the
    state, and answer again only when the mirrored history is back."""
    for _ in range(3):
        fake.mine()
    fake.mine((K1, True))
    for _ in range(6):
        fake.mine()
    m = fake_mirror(fake, confirmations=2)
    synced(m)
    assert m.is_revoked(NS, LIST, K1)
    original = (list(fake.blocks), dict(fake.events))
    fake.fork(2)  # below the confirmed base (block 8)
    for _ in range(9):
        fake.mine()
    with caplog.at_level(logging.ERROR, logger="vcgate.status.mirror"):
        result = m.sync_once()
    assert not result.ok and result.error.code == "chain_mismatch"
    assert result.error.details["reason"] == "history"
    assert any("no longer on the node's chain" in r.getMessage() for r in caplog.records)
    assert m.is_revoked(NS, LIST, K1)  # the state is kept...
    assert refused(m.check, NS, LIST, K2) == "status_unavailable"  # ...and nothing is answered
    assert not m.healthy and m.lag().chain_mismatch == "history" and m.stats().chain_mismatches == 1
    fake.blocks, fake.events = original  # the configured chain is back
    synced(m)
    assert m.healthy and m.lag().chain_mismatch is None
    assert refused(m.check, NS, LIST, K1) == "revoked"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        pytest.param(lambda node: setattr(node, "_chain_id", 999), "chain_id", id="other-chain-id"),
        pytest.param(lambda node: setattr(node, "code", b""), "registry_code", id="no-contract"),
        pytest.param(lambda node: setattr(node, "code", b"\x60\x00"), "registry_code", id="other-code"),
    ],
)
def test_fake_identity_is_checked_on_every_sync(fake, fault, reason):
    fake.mine((K1, True))
    m = fake_mirror(fake, confirmations=0)
    synced(m)
    assert refused(m.check, NS, LIST, K1) == "revoked"
    saved = (fake._chain_id, fake.code)
    fault(fake)
    result = m.sync_once()
    assert not result.ok and result.error.code == "chain_mismatch" and result.error.details["reason"] == reason
    # At once, not after max_staleness: the last good sync is still fresh.
    assert refused(m.check, NS, LIST, K2) == "status_unavailable"
    assert m.lag().chain_mismatch == reason and not m.lag().healthy
    fake._chain_id, fake.code = saved
    synced(m)
    m.check(NS, LIST, K2)
    assert refused(m.check, NS, LIST, K1) == "revoked"


def test_fake_configured_code_hash(fake):
    from eth_utils.crypto import keccak

    good = "0x" + keccak(fake.code).hex()
    assert fake_mirror(fake, code_hash=good).sync_once().ok
    other = fake_mirror(fake, code_hash="0x" + "00" * 32).sync_once()
    assert not other.ok and other.error.details["reason"] == "registry_code"
    with pytest.raises(ValueError):
        fake_mirror(fake, code_hash="0x12")


def test_fake_branch_switch_during_a_sync_is_retried(fake):
    fake.mine()
    m = fake_mirror(fake)
    synced(m)
    fake.mine((K1, True))

    def switch(a, b):  # the node moves to another branch between the header and log reads
        fake.on_get_logs = None
        fake.fork(1)
        fake.mine((K2, True))

    fake.on_get_logs = switch
    result = m.sync_once()
    assert not result.ok and result.error.code == "chain_unavailable"
    assert not m.is_revoked(NS, LIST, K1) and not m.is_revoked(NS, LIST, K2)  # nothing half-applied
    synced(m)
    assert not m.is_revoked(NS, LIST, K1) and m.is_revoked(NS, LIST, K2)


def test_fake_rollback_and_replay_are_atomic_for_readers(fake):
    """K1 is revoked on both branches (in different blocks): no reader may ever see it reinstated."""
    fake.mine()
    m = fake_mirror(fake, confirmations=5)
    synced(m)
    fake.mine((K1, True))
    synced(m)
    fake.fork(1)
    fake.mine()
    fake.mine((K1, True))
    seen_during_fetch: list[bool] = []
    fake.on_get_logs = lambda a, b: seen_during_fetch.append(m.is_revoked(NS, LIST, K1))

    stop = threading.Event()
    glitches: list[int] = []

    def reader():
        while not stop.is_set():
            if not m.is_revoked(NS, LIST, K1):
                glitches.append(1)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(30):
            result = synced(m)
            if result.rolled_back:
                break
    finally:
        stop.set()
        t.join()
    assert result.rolled_back == 1
    assert seen_during_fetch == [True]  # the rollback waited for the new branch's logs
    assert not glitches
    assert m.is_revoked(NS, LIST, K1)


def test_fake_lag_reports_blocks_behind(fake):
    fake.mine()
    m = fake_mirror(fake)
    synced(m)
    for _ in range(4):
        fake.mine()
    fake.on_get_logs = lambda a, b: (_ for _ in ()).throw(ChainUnavailableError("timeout"))
    assert not m.sync_once().ok
    lag = m.lag()
    assert (lag.synced_block, lag.head_block, lag.blocks_behind) == (1, 5, 4)


def test_fake_unsupported_namespace_is_not_unavailable(fake):
    m = fake_mirror(fake, namespaces=[NS])
    synced(m)
    with pytest.raises(StatusUnsupportedError):
        m.check("0x" + "ef" * 20, LIST, K1)


def test_config_validation(fake):
    for bad in (
        {"confirmations": -1},
        {"poll_interval": 0},
        {"max_staleness": 0},
        {"max_block_range": 0},
        {"start_block": -1},
    ):
        with pytest.raises(ValueError):
            fake_mirror(fake, **bad)
    with pytest.raises(ValueError):
        RevocationMirror(chain=fake, registry="0x" + "cd" * 20, chain_id=0)  # type: ignore[arg-type]
    m = fake_mirror(fake)
    with pytest.raises(ValueError):
        m.save_checkpoint()  # no path configured


def test_background_thread(fake, tmp_path):
    """The daemon thread picks up a revocation within a few polls; stop() writes a checkpoint.
    (On the scripted chain: eth-tester is not safe to share between threads.)"""
    path = tmp_path / "mirror.json"
    fake.mine()
    with fake_mirror(fake, poll_interval=0.02, checkpoint_path=path, confirmations=0) as m:
        m.wait_ready(5)
        m.check(NS, LIST, K1)
        fake.mine((K1, True))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                m.check(NS, LIST, K1)
            except RevokedError:
                break
            time.sleep(0.005)
        else:
            pytest.fail("the running mirror did not see the revocation")
    assert m._thread is None
    assert json.loads(path.read_text())["keyCount"] == 1  # stop() wrote a checkpoint
    # After stop(), syncing by hand still works (stop only interrupts its own thread).
    fake.mine((K2, True))
    synced(m)
    assert m.is_revoked(NS, LIST, K2)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"data": b"\x00" * 31 + b"\x02"}, id="bool-not-0-or-1"),
        pytest.param({"data": b"\x01"}, id="short-data"),
        pytest.param({"topics": "drop-key"}, id="missing-topic"),
        pytest.param({"address": "0x" + "99" * 20}, id="other-contract"),
        pytest.param({"namespace": b"\x01" * 32}, id="dirty-address-topic"),
    ],
)
def test_log_decoder_refuses_malformed_logs(change):
    """fetch_events' decoder (vcgate.chain.events) checks each log before the mirror sees it."""
    from vcgate.chain import events

    registry = "0x" + "cd" * 20
    log = {
        "address": registry,
        "topics": [b"\x00" * 32, b"\x00" * 12 + b"\xab" * 20, LIST, K1],
        "data": b"\x00" * 31 + b"\x01",
        "blockNumber": 7,
        "blockHash": b"\x07" * 32,
        "transactionHash": b"\x08" * 32,
        "logIndex": 0,
    }
    ev = events._decode("RevocationStatusChanged", dict(log), registry, {})
    assert (ev.revocation_key, ev.revoked, ev.block_number, ev.namespace.lower()) == (K1, True, 7, NS)
    bad = dict(log)
    if change.get("topics") == "drop-key":
        bad["topics"] = log["topics"][:3]
    elif "namespace" in change:
        bad["topics"] = [log["topics"][0], change["namespace"], LIST, K1]
    else:
        bad.update(change)
    with pytest.raises(ValueError):
        events._decode("RevocationStatusChanged", bad, registry, {})
