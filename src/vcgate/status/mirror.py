"""A local, event-synced mirror of one ERC-5539 registry: revocation checks with no network call.

:class:`RevocationMirror` follows one registry on one chain through its logs
(:func:`vcgate.chain.fetch_events`: ``eth_getLogs`` by block range, no node-side filters) and
keeps what ``isRevoked`` would answer in memory. A check on the request path is a lock, two
set lookups and a clock read; the network is only touched by :meth:`RevocationMirror.sync_once`,
run by a background thread (:meth:`~RevocationMirror.start`) or by the caller.

What it guarantees:

* **The same chain, or a refusal.** Every sync first proves that the node is still the chain
  the mirror was configured for: the chain id the node reports *now* (never a cached
  answer), the hash of the registry's code at the head block (pinned at the first sync, or
  given as ``code_hash``, and kept in the checkpoint), and continuity with the blocks already
  mirrored (see reorgs below). When any proof fails -- a node replaced by an empty chain, by
  another network, a registry address without that code -- checks are refused at once with
  ``status_unavailable``, :attr:`~MirrorLag.chain_mismatch` names the reason, and the mirror
  keeps its state and keeps asking; it answers again only when the configured chain is back.
  "No events" from a chain it cannot prove is the same never reads as "nothing revoked".
* **Freshness, or a refusal.** It records the wall time of its last *good* sync (one that
  reached the node's head). When that is older than ``max_staleness`` -- node down, network
  cut, registry gone -- :meth:`~RevocationMirror.check` raises
  :class:`~vcgate.errors.StatusUnavailableError` instead of answering from old state (fail
  closed). Before the first good sync it refuses the same way.
* **Reorgs.** Events are applied up to the head (a revocation counts from the block that
  mines it), but the last ``confirmations`` blocks form an *unconfirmed tail*: their hashes
  are remembered along with an undo log of what each block changed. Every sync checks that
  the tail still is the node's chain (block hash / parent hash); if not, it undoes the blocks
  back to the last common one and replays the new branch -- atomically for readers, who see
  either the old branch or the new one, never a mix. When none of the mirrored blocks (tail
  or confirmed base, or a checkpoint's block) is on the node's chain any more, the change is
  deeper than the reorg window: the mirror treats it as a *replaced chain* (``history``
  mismatch, above) rather than resyncing from scratch.
* **Restarts.** With ``checkpoint_path`` it persists the state at the last *confirmed* block
  (number, hash, revoked lists and keys), written atomically (temporary file, ``fsync``,
  ``os.replace``). A restart loads it and syncs from there instead of from ``start_block``; a
  checkpoint for another chain, registry, code hash or namespace filter, or a corrupt file,
  is discarded with a warning and the mirror resyncs. A checkpoint whose block is no longer
  on the chain is a ``history`` mismatch: refused until that chain is back (or an operator
  removes the checkpoint, accepting the node's new history).

Sync errors (:class:`~vcgate.errors.ChainUnavailableError` and the rest) are logged and
counted, never raised into request threads; :meth:`~RevocationMirror.lag` and
:meth:`~RevocationMirror.stats` expose the mirror's state for metrics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from eth_utils.crypto import keccak

from ..chain import BlockRef, Chain, RevocationEvent, fetch_events
from ..chain.accounts import checksum_address
from ..errors import (
    ChainMismatchError,
    ChainUnavailableError,
    MalformedError,
    RevokedError,
    StatusUnavailableError,
    StatusUnsupportedError,
    VCGateError,
)

__all__ = ["CHECKPOINT_FORMAT", "MirrorLag", "MirrorStats", "RevocationMirror", "SyncResult"]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "vcgate-revocation-mirror/1"
# Readers wait for the writer while it applies events; during a long catch-up it lets them in
# at block boundaries (never inside a block) after about this many events.
_APPLY_CHUNK = 2000

# One undo record: (namespace+list prefix, key or None for the list flag, value before).
_Undo = tuple[bytes, bytes | None, bool]


@dataclass(frozen=True, slots=True)
class MirrorLag:
    """How far behind the mirror is, for metrics and health checks."""

    #: Seconds since the last good sync (``None``: never synced).
    seconds: float | None
    #: The block the mirror's state is current to (``None``: never synced).
    synced_block: int | None
    #: The node's head as last seen (even by a sync that then failed).
    head_block: int | None
    #: ``head_block - synced_block`` (``None`` if either is unknown).
    blocks_behind: int | None
    #: Whether checks are answered now (last good sync within ``max_staleness`` and the
    #: node proven to be the configured chain).
    healthy: bool
    #: Why the node is not provably the configured chain (``chain_id``, ``registry_code``,
    #: ``history``), ``None`` when it is (or when that is not known yet).
    chain_mismatch: str | None = None


@dataclass(frozen=True, slots=True)
class MirrorStats:
    """Counters since the mirror was created."""

    syncs: int
    good_syncs: int
    errors: int
    consecutive_errors: int
    last_error: str | None
    events: int
    log_queries: int
    header_queries: int
    reorgs: int
    blocks_rolled_back: int
    chain_mismatches: int
    revoked_keys: int
    revoked_lists: int
    tail_blocks: int
    checkpoint_block: int | None
    checkpoints_written: int
    checkpoints_rejected: int


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one :meth:`RevocationMirror.sync_once` did."""

    ok: bool
    #: First and last block whose logs were fetched (``None``: nothing new).
    from_block: int | None
    to_block: int | None
    events: int
    #: Unconfirmed blocks undone because the node switched to another branch.
    rolled_back: int
    error: VCGateError | None
    seconds: float


class _TailBlock:
    __slots__ = ("ref", "undo")

    def __init__(self, ref: BlockRef) -> None:
        self.ref = ref
        self.undo: list[_Undo] = []


class _ChainMoved(ChainUnavailableError):
    """The node's chain changed between two reads of one sync; the next sync starts over."""


class _CheckpointInvalid(ValueError):
    pass


@dataclass
class _Progress:
    from_block: int | None = None
    to_block: int | None = None
    events: int = 0
    rolled_back: int = 0
    completed: bool = True


class RevocationMirror:
    """An in-memory index of one registry's revocations on one chain, fed by its logs.

    Configuration (keyword-only):

    * ``chain``, ``registry``, ``chain_id`` -- which node, which contract, and the chain id the
      node must report (checked on every sync: answering for another chain would be answering
      about another registry).
    * ``code_hash`` -- keccak-256 (``0x`` hex) of the registry's runtime code; ``None`` pins
      the code seen at the first sync (and keeps it in the checkpoint).
    * ``confirmations`` -- depth after which a block is taken as final: the undo window for
      reorgs and the block the checkpoint is written at (default 12).
    * ``poll_interval`` -- seconds between syncs of the background thread (default 1.0).
    * ``max_staleness`` -- seconds after the last good sync when checks start to be refused
      with ``status_unavailable`` (default 30).
    * ``max_block_range`` -- blocks per ``eth_getLogs`` query (default 2,000; hosted nodes
      often cap this).
    * ``start_block`` -- where the registry's history starts (its deployment block; default 0).
    * ``checkpoint_path``, ``checkpoint_interval`` -- JSON checkpoint file and the minimum
      seconds between automatic writes (default 60; :meth:`stop` always writes one).
    * ``namespaces`` -- follow only these issuers (a topic filter applied by the node); checks
      for other namespaces raise ``status_unsupported``.
    * ``max_head_age`` -- if set, a sync only counts as good when the node's head block is at
      most this many seconds old by ``clock`` (catches a node that stopped following its
      network). Leave ``None`` for nodes that mine only on demand (anvil, embedded).
    * ``clock`` -- POSIX seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        chain: Chain,
        registry: str,
        chain_id: int,
        confirmations: int = 12,
        poll_interval: float = 1.0,
        max_staleness: float = 30.0,
        max_block_range: int = 2000,
        start_block: int = 0,
        checkpoint_path: str | os.PathLike[str] | None = None,
        checkpoint_interval: float = 60.0,
        namespaces: Iterable[str] | None = None,
        max_head_age: float | None = None,
        code_hash: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if type(chain_id) is not int or chain_id < 1:
            raise ValueError("chain_id must be a positive integer")
        if type(confirmations) is not int or confirmations < 0:
            raise ValueError("confirmations must be an integer >= 0")
        if poll_interval <= 0 or max_staleness <= 0 or checkpoint_interval < 0:
            raise ValueError("poll_interval and max_staleness must be > 0, checkpoint_interval >= 0")
        if type(max_block_range) is not int or max_block_range < 1:
            raise ValueError("max_block_range must be an integer >= 1")
        if type(start_block) is not int or start_block < 0:
            raise ValueError("start_block must be an integer >= 0")
        self.chain = chain
        self.registry = checksum_address(registry, what="registry address")
        self.chain_id = chain_id
        self.confirmations = confirmations
        self.poll_interval = float(poll_interval)
        self.max_staleness = float(max_staleness)
        self.max_block_range = max_block_range
        self.start_block = start_block
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.checkpoint_interval = float(checkpoint_interval)
        self.max_head_age = max_head_age
        self.code_hash = _code_hash_hex(code_hash) if code_hash is not None else None
        self._clock = clock
        if namespaces is None:
            self.namespaces: tuple[str, ...] | None = None
            self._ns_filter: frozenset[bytes] | None = None
        else:
            self.namespaces = tuple(sorted({checksum_address(n, what="namespace") for n in namespaces}))
            self._ns_filter = frozenset(bytes.fromhex(n[2:]) for n in self.namespaces)

        # The revocation state at the synced block. Mutated only by the sync (with _sync_lock
        # held), always under _lock; readers take _lock, so they never see half a block or a
        # rollback without its replay.
        self._lock = threading.Lock()
        self._lists: set[bytes] = set()  # namespace(20) + list(32) of revoked lists
        # namespace + list -> its revoked keys (32 bytes each): the key itself while there is
        # one, a set from the second on. Lists with a single key are common (one list per
        # credential batch, or per credential) and a set costs ~200 bytes more than a key.
        self._keys: dict[bytes, bytes | set[bytes]] = {}
        self._key_count = 0

        # Sync bookkeeping: touched only with _sync_lock held.
        self._sync_lock = threading.Lock()
        self._base: BlockRef | None = None  # last confirmed block applied
        self._tail: deque[_TailBlock] = deque()  # unconfirmed blocks applied, oldest first
        self._pending_rollback: BlockRef | None = None
        self._loaded = False
        # The code hash every sync must see at the registry: configured, from the checkpoint,
        # or pinned by the first sync.
        self._code_hash: str | None = self.code_hash
        self._saved_base: BlockRef | None = None
        self._saved_at: float | None = None  # time.monotonic() of the last checkpoint write

        # Health, written by the sync, read by anyone (single attribute reads).
        self._good_time: float | None = None
        self._good_block: int | None = None
        self._head_seen: int | None = None
        self._mismatch: ChainMismatchError | None = None  # set and cleared by the sync
        self._ready = threading.Event()

        self._n = dict.fromkeys(
            (
                "syncs",
                "good_syncs",
                "errors",
                "consecutive_errors",
                "events",
                "log_queries",
                "header_queries",
                "reorgs",
                "blocks_rolled_back",
                "chain_mismatches",
                "checkpoints_written",
                "checkpoints_rejected",
            ),
            0,
        )
        self._last_error: str | None = None

        self._thread: threading.Thread | None = None
        self._loop_thread: threading.Thread | None = None  # the thread stop() may interrupt
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"RevocationMirror(registry={self.registry}, chain_id={self.chain_id}, endpoint={self.chain.endpoint!r})"

    # --- the request path ----------------------------------------------------------------------

    def check(self, namespace: bytes | str, revocation_list: bytes | str, revocation_key: bytes | str) -> float:
        """Refuse a revoked or unknowable status; otherwise return the time the answer is current to.

        Raises :class:`~vcgate.errors.RevokedError` when the key or its whole list is revoked,
        :class:`~vcgate.errors.StatusUnavailableError` when the last good sync is older than
        ``max_staleness`` (or there was none), :class:`~vcgate.errors.StatusUnsupportedError`
        for a namespace this mirror does not follow. Returns the POSIX time of the last good
        sync. Never touches the network. Identifiers are raw bytes (20, 32, 32) or ``0x`` hex.
        """
        good, mismatch = self._good_time, self._mismatch
        if mismatch is not None:
            raise StatusUnavailableError(
                f"the revocation mirror cannot prove its node is chain {self.chain_id} with the registry "
                f"it follows: {mismatch.message}",
                registry=self.registry,
                reason=mismatch.details.get("reason"),
            )
        if good is None:
            raise StatusUnavailableError(
                "the revocation mirror has not completed a sync yet", registry=self.registry
            )
        age = self._clock() - good
        if age > self.max_staleness:
            raise StatusUnavailableError(
                f"the revocation mirror's last good sync was {age:.1f} s ago (max {self.max_staleness:g} s)",
                registry=self.registry,
            )
        if type(namespace) is not bytes or len(namespace) != 20:
            namespace = _address_bytes(namespace)
        if type(revocation_list) is not bytes or len(revocation_list) != 32:
            revocation_list = _bytes32(revocation_list, "revocation list")
        if type(revocation_key) is not bytes or len(revocation_key) != 32:
            revocation_key = _bytes32(revocation_key, "revocation key")
        if self._ns_filter is not None and namespace not in self._ns_filter:
            raise StatusUnsupportedError(
                "this gateway's revocation mirror does not follow the entry's namespace",
                registry=self.registry,
            )
        prefix = namespace + revocation_list
        with self._lock:  # the set too is read under the lock: a rollback mutates it in place
            list_revoked = prefix in self._lists
            keys = self._keys.get(prefix)
            key_revoked = keys is not None and (
                keys == revocation_key if type(keys) is bytes else revocation_key in keys  # type: ignore[operator]
            )
        if list_revoked:
            raise RevokedError("the credential's revocation list has been revoked by its issuer")
        if key_revoked:
            raise RevokedError()
        return good

    def is_revoked(self, namespace: bytes | str, revocation_list: bytes | str, revocation_key: bytes | str) -> bool:
        """What the contract's ``isRevoked`` said at the synced block (list OR key), with no
        staleness check -- for tools and tests; the request path uses :meth:`check`."""
        prefix = _address_bytes(namespace) + _bytes32(revocation_list, "revocation list")
        key = _bytes32(revocation_key, "revocation key")
        with self._lock:
            return prefix in self._lists or _has(self._keys.get(prefix), key)

    def list_is_revoked(self, namespace: bytes | str, revocation_list: bytes | str) -> bool:
        """The contract's ``listIsRevoked`` at the synced block (no staleness check)."""
        prefix = _address_bytes(namespace) + _bytes32(revocation_list, "revocation list")
        with self._lock:
            return prefix in self._lists

    # --- health ----------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Whether :meth:`check` answers now (the last good sync is within ``max_staleness``
        and the node was proven to be the configured chain)."""
        good = self._good_time
        return self._mismatch is None and good is not None and self._clock() - good <= self.max_staleness

    def lag(self) -> MirrorLag:
        good, block, head, mismatch = self._good_time, self._good_block, self._head_seen, self._mismatch
        seconds = None if good is None else max(0.0, self._clock() - good)
        return MirrorLag(
            seconds=seconds,
            synced_block=block,
            head_block=head,
            blocks_behind=None if block is None or head is None else max(0, head - block),
            healthy=mismatch is None and seconds is not None and seconds <= self.max_staleness,
            chain_mismatch=None if mismatch is None else mismatch.details.get("reason"),
        )

    def stats(self) -> MirrorStats:
        n = self._n
        return MirrorStats(
            syncs=n["syncs"],
            good_syncs=n["good_syncs"],
            errors=n["errors"],
            consecutive_errors=n["consecutive_errors"],
            last_error=self._last_error,
            events=n["events"],
            log_queries=n["log_queries"],
            header_queries=n["header_queries"],
            reorgs=n["reorgs"],
            blocks_rolled_back=n["blocks_rolled_back"],
            chain_mismatches=n["chain_mismatches"],
            revoked_keys=self._key_count,
            revoked_lists=len(self._lists),
            tail_blocks=len(self._tail),
            checkpoint_block=self._saved_base.number if self._saved_base else None,
            checkpoints_written=n["checkpoints_written"],
            checkpoints_rejected=n["checkpoints_rejected"],
        )

    def wait_ready(self, timeout: float) -> None:
        """Block until the first good sync (e.g. at gateway start-up);
        :class:`~vcgate.errors.StatusUnavailableError` if none within ``timeout`` seconds."""
        if not self._ready.wait(timeout):
            raise StatusUnavailableError(
                f"the revocation mirror did not complete a sync within {timeout:g} s"
                + (f" (last error: {self._last_error})" if self._last_error else ""),
                registry=self.registry,
            )

    # --- background thread -------------------------------------------------------------------

    def start(self) -> Self:
        """Sync in a daemon thread every ``poll_interval`` seconds (backing off after errors)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = self._loop_thread = threading.Thread(
            target=self._run, name=f"vcgate-mirror-{self.registry[:10]}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (waiting for a sync in progress) and write a checkpoint if configured."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        if self.checkpoint_path is not None:
            try:
                self.save_checkpoint()
            except OSError as exc:
                log.warning("revocation mirror %s: cannot write checkpoint: %s", self.registry, exc)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                ok = self.sync_once().ok
            except Exception as exc:  # a bug must not kill the thread silently, nor spin
                log.exception("revocation mirror %s: sync crashed", self.registry)
                self._n["errors"] += 1
                self._n["consecutive_errors"] += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                ok = False
            if ok:
                # Fixed rate, not fixed gap: a sync's own duration does not stretch the period.
                delay = max(0.0, self.poll_interval - (time.monotonic() - started))
            else:
                # Back off while the node is away, but never beyond max(poll, 2 s): recovery
                # must show up well within max_staleness.
                failures = max(1, self._n["consecutive_errors"])
                delay = min(self.poll_interval * 2 ** min(failures - 1, 6), max(self.poll_interval, 2.0))
            self._stop.wait(delay)

    # --- syncing ---------------------------------------------------------------------------------

    def sync_once(self) -> SyncResult:
        """Bring the mirror up to the node's head once. Chain errors are counted, logged and
        returned in the result (``ok`` false), never raised."""
        t0 = time.monotonic()
        progress = _Progress()
        with self._sync_lock:
            self._n["syncs"] += 1
            try:
                self._sync(progress)
            except VCGateError as exc:
                self._failed(exc)
                return SyncResult(
                    ok=False,
                    from_block=progress.from_block,
                    to_block=progress.to_block,
                    events=progress.events,
                    rolled_back=progress.rolled_back,
                    error=exc,
                    seconds=time.monotonic() - t0,
                )
            if progress.completed:
                self._maybe_checkpoint()
        return SyncResult(
            ok=progress.completed,
            from_block=progress.from_block,
            to_block=progress.to_block,
            events=progress.events,
            rolled_back=progress.rolled_back,
            error=None,
            seconds=time.monotonic() - t0,
        )

    def _failed(self, exc: VCGateError) -> None:
        if isinstance(exc, ChainMismatchError):
            if self._mismatch is None or self._mismatch.details.get("reason") != exc.details.get("reason"):
                self._n["chain_mismatches"] += 1
                log.error(
                    "revocation mirror %s: %s -- refusing every status check until the configured chain is back",
                    self.registry,
                    exc.message,
                )
            self._mismatch = exc
        self._n["errors"] += 1
        self._n["consecutive_errors"] += 1
        self._last_error = f"{exc.code}: {exc.message}"
        if self._n["consecutive_errors"] == 1:
            log.warning("revocation mirror %s: sync failed: %s", self.registry, self._last_error)
        else:
            log.debug("revocation mirror %s: sync failed again: %s", self.registry, self._last_error)

    def _good(self, head: BlockRef) -> None:
        now = self._clock()
        if self.max_head_age is not None and now - head.timestamp > self.max_head_age:
            raise ChainUnavailableError(
                f"the node's head block {head.number} is {now - head.timestamp:.0f} s old "
                f"(max_head_age {self.max_head_age:g} s): it is not following its network",
                endpoint=self.chain.endpoint,
            )
        if self._mismatch is not None:
            log.warning(
                "revocation mirror %s: the node is chain %d with the registry's code and the mirrored blocks again; "
                "answering status checks",
                self.registry,
                self.chain_id,
            )
            self._mismatch = None
        if self._n["consecutive_errors"]:
            log.info(
                "revocation mirror %s: recovered after %d failed syncs", self.registry, self._n["consecutive_errors"]
            )
        self._n["consecutive_errors"] = 0
        self._n["good_syncs"] += 1
        self._good_block = head.number
        self._good_time = now
        self._ready.set()

    def _verify_identity(self, head: BlockRef) -> None:
        """Prove the node is still the configured chain with the registry's code; else raise
        :class:`ChainMismatchError` (the caller keeps the state and refuses checks)."""
        actual = self.chain.node_chain_id()
        if actual != self.chain_id:
            raise ChainMismatchError(
                f"{self.chain.endpoint} is chain {actual}, the mirror is configured for chain {self.chain_id}",
                reason="chain_id",
                expected=self.chain_id,
                actual=actual,
            )
        code = self.chain.code_at(self.registry, head.number)
        if not code:
            # Without this, a wrong address or an emptied chain would yield no events and
            # every key would pass.
            raise ChainMismatchError(
                f"no contract at {self.registry} on chain {self.chain_id} at block {head.number}",
                reason="registry_code",
                registry=self.registry,
            )
        seen = "0x" + keccak(code).hex()
        if self._code_hash is None:
            self._code_hash = seen
        elif seen != self._code_hash:
            raise ChainMismatchError(
                f"the code at {self.registry} hashes to {seen[:18]}..., not to the registry's {self._code_hash[:18]}...",
                reason="registry_code",
                registry=self.registry,
            )

    def _tip(self) -> BlockRef | None:
        return self._tail[-1].ref if self._tail else self._base

    def _sync(self, progress: _Progress) -> None:
        if not self._loaded:
            self._loaded = True
            self._load_checkpoint()
        self._pending_rollback = None
        headers: dict[int, BlockRef | None] = {}

        def header(number: int) -> BlockRef | None:
            if number not in headers:
                self._n["header_queries"] += 1
                headers[number] = self.chain.block(number)
            return headers[number]

        head = self.chain.block("latest")
        if head is None:
            raise ChainUnavailableError("the node reports no latest block", endpoint=self.chain.endpoint)
        self._head_seen = head.number
        headers[head.number] = head
        self._verify_identity(head)

        # 1. Is what we applied still the node's chain?
        tip = self._tip()
        cursor = tip
        if tip is not None and tip.hash != head.hash:
            links = head.number == tip.number + 1 and head.parent_hash == tip.hash
            if not links:
                canon = header(tip.number) if tip.number <= head.number else None
                if canon is None or canon.hash != tip.hash:
                    cursor = self._common_ancestor(header)
                    if cursor is None:
                        # Deeper than the reorg window: a replaced (reset, other) chain, or a
                        # reorg of blocks taken as final. Either way the mirrored history
                        # cannot be proven on this node; keep it and refuse until it is back.
                        oldest = self._base or self._tail[0].ref
                        raise ChainMismatchError(
                            f"block {tip.number} ({tip.hash[:14]}...) is no longer on the node's chain, "
                            f"nor is any mirrored block back to block {oldest.number} "
                            f"(head {head.number}): the chain was replaced or reorganised deeper than "
                            f"{self.confirmations} confirmations",
                            reason="history",
                            block=tip.number,
                        )
                    self._n["reorgs"] += 1
                    log.info(
                        "revocation mirror %s: reorg, rolling back from block %d to %d",
                        self.registry,
                        tip.number,
                        cursor.number,
                    )
                    self._pending_rollback = cursor
        elif tip is not None:
            self._good(head)  # nothing new
            return

        lo = cursor.number + 1 if cursor is not None else self.start_block
        hi = head.number
        if lo > hi:
            self._commit(progress, [], None)
            self._good(head)
            return
        progress.from_block, progress.to_block = lo, hi
        safe = hi - self.confirmations
        prev = cursor

        # 2. Logs, one query per max_block_range blocks. Blocks past the confirmation depth are
        # committed page by page with no undo kept; the rest form the unconfirmed tail.
        tail_events: list[RevocationEvent] = []
        a = lo
        while a <= hi:
            if self._stop.is_set() and threading.current_thread() is self._loop_thread:
                progress.completed = False  # stop() is waiting: leave a long catch-up for later
                return
            b = min(a + self.max_block_range - 1, hi)
            events = self._fetch(a, b)
            if a <= safe:
                cut = min(b, safe)
                end = header(cut)
                if end is None:
                    raise _ChainMoved(f"block {cut} vanished during the sync", endpoint=self.chain.endpoint)
                self._commit(progress, [e for e in events if e.block_number <= cut], None, new_base=end)
                prev = end
                tail_events.extend(e for e in events if e.block_number > cut)
            else:
                tail_events.extend(events)
            a = b + 1

        # 3. The unconfirmed tail: hashes checked against each other and against every log.
        u0 = max(lo, safe + 1)
        if u0 <= hi:
            refs: list[BlockRef] = []
            for number in range(u0, hi + 1):
                ref = header(number)
                if ref is None:
                    raise _ChainMoved(f"block {number} vanished during the sync", endpoint=self.chain.endpoint)
                if refs and ref.parent_hash != refs[-1].hash:
                    raise _ChainMoved(f"block {number} does not follow block {number - 1}", endpoint=self.chain.endpoint)
                refs.append(ref)
            if prev is not None and refs[0].parent_hash != prev.hash:
                raise _ChainMoved(
                    f"block {u0} does not follow block {prev.number} any more", endpoint=self.chain.endpoint
                )
            for ev in tail_events:
                if not u0 <= ev.block_number <= hi or ev.block_hash != refs[ev.block_number - u0].hash:
                    raise _ChainMoved(
                        f"a log of block {ev.block_number} belongs to another branch", endpoint=self.chain.endpoint
                    )
            self._commit(progress, tail_events, refs)
        self._good(head)

    def _fetch(self, a: int, b: int) -> list[RevocationEvent]:
        self._n["log_queries"] += 1
        return fetch_events(self.chain, self.registry, a, b, namespaces=self.namespaces)

    def _common_ancestor(self, header: Callable[[int], BlockRef | None]) -> BlockRef | None:
        """The newest applied block still on the node's chain: in the tail, else the base."""
        candidates = [tb.ref for tb in reversed(self._tail)][1:]
        if self._base is not None:
            candidates.append(self._base)
        for ref in candidates:
            canon = header(ref.number)
            if canon is not None and canon.hash == ref.hash:
                return ref
        return None

    def _commit(
        self,
        progress: _Progress,
        events: Sequence[RevocationEvent],
        tail_refs: list[BlockRef] | None,
        *,
        new_base: BlockRef | None = None,
    ) -> None:
        """Apply a pending rollback and then ``events`` -- as confirmed history ending at
        ``new_base``, or as the unconfirmed blocks ``tail_refs`` (with undo logs)."""
        by_block: dict[int, list[RevocationEvent]] = {}
        for ev in events:
            by_block.setdefault(ev.block_number, []).append(ev)
        blocks = sorted(by_block)
        first = True
        i = 0
        while first or i < len(blocks):
            with self._lock:
                if first:
                    first = False
                    progress.rolled_back += self._rollback()
                applied = 0
                if tail_refs is not None:
                    # The tail is small (<= confirmations + a few blocks): one lock hold.
                    for ref in tail_refs:
                        tb = _TailBlock(ref)
                        self._apply(by_block.get(ref.number, ()), tb.undo)
                        self._tail.append(tb)
                    applied = len(events)
                    i = len(blocks)
                    while self._tail and self._tail[0].ref.number <= tail_refs[-1].number - self.confirmations:
                        self._base = self._tail.popleft().ref
                else:
                    while i < len(blocks) and applied < _APPLY_CHUNK:
                        block_events = by_block[blocks[i]]
                        self._apply(block_events, None)
                        applied += len(block_events)
                        i += 1
                    if i >= len(blocks) and new_base is not None:
                        self._tail.clear()  # everything before new_base is final now
                        self._base = new_base
                progress.events += applied
                self._n["events"] += applied

    def _rollback(self) -> int:
        """Undo the tail blocks above the pending rollback target (caller holds ``_lock``)."""
        target, self._pending_rollback = self._pending_rollback, None
        if target is None:
            return 0
        undone = 0
        while self._tail and self._tail[-1].ref.number > target.number:
            tb = self._tail.pop()
            for prefix, key, old in reversed(tb.undo):
                self._set(prefix, key, old)
            undone += 1
        self._n["blocks_rolled_back"] += undone
        return undone

    def _set(self, prefix: bytes, key: bytes | None, value: bool) -> bool:
        """Set one flag; return its previous value (caller holds ``_lock``)."""
        if key is None:
            old = prefix in self._lists
            if value:
                self._lists.add(prefix)
            else:
                self._lists.discard(prefix)
            return old
        keys = self._keys.get(prefix)
        old = _has(keys, key)
        if value and not old:
            if keys is None:
                self._keys[prefix] = key
            elif type(keys) is bytes:
                self._keys[prefix] = {keys, key}
            else:
                keys.add(key)  # type: ignore[union-attr]
            self._key_count += 1
        elif old and not value:
            if type(keys) is bytes:
                del self._keys[prefix]
            else:
                keys.discard(key)  # type: ignore[union-attr]
                if not keys:
                    del self._keys[prefix]
            self._key_count -= 1
        return old

    def _apply(self, events: Iterable[RevocationEvent], undo: list[_Undo] | None) -> None:
        """Apply events in (block, logIndex) order (caller holds ``_lock``)."""
        for ev in sorted(events, key=_order):
            prefix = bytes.fromhex(ev.namespace[2:]) + ev.revocation_list
            old = self._set(prefix, ev.revocation_key, ev.revoked)
            if undo is not None and old != ev.revoked:
                undo.append((prefix, ev.revocation_key, old))

    # --- checkpoints -----------------------------------------------------------------------------

    def save_checkpoint(self) -> bool:
        """Write the state at the last confirmed block to ``checkpoint_path`` now.

        Returns false when there is nothing to write yet (no confirmed block). Runs between
        syncs (it takes the sync lock); readers are not blocked.
        """
        if self.checkpoint_path is None:
            raise ValueError("this mirror has no checkpoint_path")
        with self._sync_lock:
            return self._write_checkpoint()

    def _maybe_checkpoint(self) -> None:
        if self.checkpoint_path is None or self._base is None or self._base == self._saved_base:
            return
        if self._saved_at is not None and time.monotonic() - self._saved_at < self.checkpoint_interval:
            return
        try:
            self._write_checkpoint()
        except OSError as exc:
            log.warning("revocation mirror %s: cannot write checkpoint: %s", self.registry, exc)

    def _state_at_base(self) -> tuple[set[bytes], dict[bytes, set[bytes]]]:
        """Revoked lists and keys as of the base block: the live state with the tail's
        changes reverted (only the touched entries are copied)."""
        lists_at: dict[bytes, bool] = {}
        keys_at: dict[tuple[bytes, bytes], bool] = {}
        for tb in self._tail:
            for prefix, key, old in tb.undo:
                if key is None:
                    lists_at.setdefault(prefix, old)
                else:
                    keys_at.setdefault((prefix, key), old)
        lists = {p for p in self._lists if lists_at.get(p, True)} | {p for p, v in lists_at.items() if v}
        touched: dict[bytes, dict[bytes, bool]] = {}
        for (prefix, key), old in keys_at.items():
            touched.setdefault(prefix, {})[key] = old
        keys: dict[bytes, set[bytes]] = {}
        for prefix, value in self._keys.items():
            live = _members(value)
            override = touched.get(prefix)
            keys[prefix] = live if override is None else {k for k in live if override.get(k, True)}
        for prefix, override in touched.items():
            restored = {k for k, v in override.items() if v}
            if restored:
                keys[prefix] = keys.get(prefix, set()) | restored
        return lists, {p: k for p, k in keys.items() if k}

    def _write_checkpoint(self) -> bool:
        assert self.checkpoint_path is not None
        base = self._base
        if base is None:
            return False
        lists, keys = self._state_at_base()
        doc = {
            "format": CHECKPOINT_FORMAT,
            "chainId": self.chain_id,
            "registry": self.registry,
            "namespaces": list(self.namespaces) if self.namespaces is not None else None,
            "startBlock": self.start_block,
            "codeHash": self._code_hash,
            "block": {
                "number": base.number,
                "hash": base.hash,
                "parentHash": base.parent_hash,
                "timestamp": base.timestamp,
            },
            "savedAt": self._clock(),
            "revokedLists": sorted(p.hex() for p in lists),
            # Keys of one list as one hex string of 64-digit keys: compact and quick to load.
            "revokedKeys": {p.hex(): b"".join(k).hex() for p, k in keys.items()},
            "keyCount": sum(len(k) for k in keys.values()),
        }
        path = self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)
        self._saved_base = base
        self._saved_at = time.monotonic()
        self._n["checkpoints_written"] += 1
        return True

    def _load_checkpoint(self) -> None:
        path = self.checkpoint_path
        if path is None:
            return
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            log.info("revocation mirror %s: no checkpoint at %s, syncing from block %d", self.registry, path, self.start_block)
            return
        except OSError as exc:
            self._reject_checkpoint(path, f"cannot read it ({exc})")
            return
        try:
            base, lists, keys, code_hash = self._parse_checkpoint(json.loads(text))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            self._reject_checkpoint(path, str(exc) or type(exc).__name__)
            return
        with self._lock:
            self._lists = lists
            self._keys = {p: (next(iter(k)) if len(k) == 1 else k) for p, k in keys.items()}
            self._key_count = sum(len(k) for k in keys.values())
            self._base = base
            self._tail.clear()
        self._saved_base = base
        if code_hash is not None:
            self._code_hash = code_hash
        log.info(
            "revocation mirror %s: loaded checkpoint at block %d (%d revoked keys, %d revoked lists)",
            self.registry,
            base.number,
            self._key_count,
            len(lists),
        )

    def _reject_checkpoint(self, path: Path, why: str) -> None:
        self._n["checkpoints_rejected"] += 1
        log.warning(
            "revocation mirror %s: ignoring checkpoint %s: %s; full resync from block %d",
            self.registry,
            path,
            why[:200],
            self.start_block,
        )

    def _parse_checkpoint(self, doc: Any) -> tuple[BlockRef, set[bytes], dict[bytes, set[bytes]], str | None]:
        if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
            raise _CheckpointInvalid(f"not a {CHECKPOINT_FORMAT} checkpoint")
        expected = {
            "chainId": self.chain_id,
            "registry": self.registry,
            "namespaces": list(self.namespaces) if self.namespaces is not None else None,
            "startBlock": self.start_block,
        }
        for name, value in expected.items():
            if doc.get(name) != value:
                raise _CheckpointInvalid(f"it was written for {name} {doc.get(name)!r}, this mirror has {value!r}")
        saved_hash = doc.get("codeHash")
        if saved_hash is not None:
            saved_hash = _code_hash_hex(saved_hash)
            if self.code_hash is not None and saved_hash != self.code_hash:
                raise _CheckpointInvalid(f"it was written for registry code {saved_hash}, this mirror expects {self.code_hash}")
        block = doc["block"]
        number, timestamp = block["number"], block["timestamp"]
        if type(number) is not int or number < self.start_block or type(timestamp) is not int:
            raise _CheckpointInvalid("bad block number or timestamp")
        base = BlockRef(
            number=number,
            hash=_hash_hex(block["hash"]),
            parent_hash=_hash_hex(block["parentHash"]),
            timestamp=timestamp,
        )
        lists = {_prefix_hex(p) for p in doc["revokedLists"]}
        keys: dict[bytes, set[bytes]] = {}
        total = 0
        for p, blob in doc["revokedKeys"].items():
            if not isinstance(blob, str) or not blob or len(blob) % 64:
                raise _CheckpointInvalid("bad key list")
            raw = bytes.fromhex(blob)
            if len(raw) * 2 != len(blob):  # fromhex skips spaces
                raise _CheckpointInvalid("bad key list")
            found = {raw[i : i + 32] for i in range(0, len(raw), 32)}
            keys[_prefix_hex(p)] = found
            total += len(found)
        if total != doc["keyCount"]:
            raise _CheckpointInvalid(f"key count {total} does not match {doc['keyCount']!r}")
        return base, lists, keys, saved_hash


def _has(keys: bytes | set[bytes] | None, key: bytes) -> bool:
    if keys is None:
        return False
    return keys == key if type(keys) is bytes else key in keys  # type: ignore[operator]


def _members(keys: bytes | set[bytes]) -> set[bytes]:
    return {keys} if type(keys) is bytes else keys  # type: ignore[return-value]


def _order(ev: RevocationEvent) -> tuple[int, int]:
    return (ev.block_number, ev.log_index)


def _address_bytes(value: bytes | str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 20:
            raise MalformedError(f"a namespace is 20 bytes, got {len(value)}")
        return bytes(value)
    if not isinstance(value, str) or len(value) != 42 or value[:2] != "0x":
        raise MalformedError("a namespace is 0x followed by 40 hex digits")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise MalformedError("a namespace is 0x followed by 40 hex digits") from exc


def _bytes32(value: bytes | str, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 32:
            raise MalformedError(f"a {what} is 32 bytes, got {len(value)}")
        return bytes(value)
    if not isinstance(value, str) or len(value) != 66 or value[:2] != "0x":
        raise MalformedError(f"a {what} is 0x followed by 64 hex digits")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise MalformedError(f"a {what} is 0x followed by 64 hex digits") from exc
    if len(raw) != 32:
        raise MalformedError(f"a {what} is 0x followed by 64 hex digits")
    return raw


def _hash_hex(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 66 or value[:2] != "0x":
        raise _CheckpointInvalid("bad block hash")
    bytes.fromhex(value[2:])
    return value.lower()


def _code_hash_hex(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 66 or value[:2] not in ("0x", "0X"):
        raise ValueError("a registry code hash is 0x followed by 64 hex digits")
    bytes.fromhex(value[2:])
    return value.lower()


def _prefix_hex(value: Any) -> bytes:
    if not isinstance(value, str) or len(value) != 104:
        raise _CheckpointInvalid("bad namespace/list entry")
    raw = bytes.fromhex(value)
    if len(raw) != 52:
        raise _CheckpointInvalid("bad namespace/list entry")
    return raw


def _fsync_dir(directory: Path) -> None:
    # Make the rename itself durable (POSIX); not possible (nor needed) everywhere.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
