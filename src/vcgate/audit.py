"""Append-only, hash-chained decision log (JSON lines) with group commit.

One line per record, each a canonical JSON object (see :func:`canonical_json`). The first
line is a header carrying a random per-file ``file_id``; every record carries ``seq``
(header 0, then 1, 2, ...), ``prev`` (the ``hash`` of the record before it; for the header a
genesis value derived from ``file_id``) and ``hash`` = SHA-256 (or HMAC-SHA-256 with a key)
over the canonical record without ``hash``. :func:`verify_file` walks the chain and names
the first line that was edited, removed, inserted, reordered or spliced from another file.

Writes happen off the request path: :meth:`AuditLog.append` validates and enqueues (a few
microseconds) and returns a :class:`Ticket`; one background thread writes everything queued,
then calls ``fdatasync`` once for the whole batch (group commit). ``ticket.wait()`` returns
once the record is on disk, so a gateway that waits before answering never acknowledges a
decision a crash can lose. See ``docs/audit.md``.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import hashlib
import heapq
import hmac
import itertools
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from .errors import AuditCorruptError, AuditTamperedError, AuditUnavailableError

__all__ = [
    "DECISION_FIELDS",
    "FORMAT",
    "AuditCorruptError",
    "AuditLog",
    "AuditTamperedError",
    "AuditUnavailableError",
    "Ticket",
    "VerifyReport",
    "canonical_json",
    "read_records",
    "tail_records",
    "verify_file",
]

FORMAT = "vcgate-audit/1"
#: The fields a gateway decision record carries (all optional; unknown extra fields are
#: allowed if their names are lower-case identifiers).
DECISION_FIELDS = ("subject", "issuer", "rule", "outcome", "code", "status", "method", "path")
_RESERVED = frozenset({"seq", "prev", "hash", "kind", "time"})
_FIELD_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HEX32 = re.compile(r"[0-9a-f]{32}\Z")
# I-JSON / RFC 8785: integers outside +-(2**53 - 1) are not exactly representable as doubles.
_MAX_SAFE_INT = 2**53 - 1
_MAX_LINE = 256 * 1024


# --- errors (to move to errors.py) ------------------------------------------------------------


# --- canonical JSON ----------------------------------------------------------------------------


def _check_value(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return
        raise ValueError(f"{where}: integer out of the exactly representable range")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not k.isascii():
                raise ValueError(f"{where}: member names must be ASCII strings")
            _check_value(v, f"{where}.{k}")
        return
    raise ValueError(f"{where}: {type(value).__name__} is not allowed in an audit record")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) serialisation for the value types audit records use.

    Records hold only ASCII member names, strings, booleans, null, lists, objects and
    integers within +-(2**53 - 1); floats are refused. For exactly that subset Python's
    ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` produces the JCS
    bytes: code-point order equals UTF-16 order for ASCII names, integers in the safe range
    print as ECMAScript does, and Python escapes the same characters JCS does (``"``, ``\\``,
    U+0000..U+001F with the short forms and lower-case ``\\u00xx``), leaving the rest as
    UTF-8. Floats are where a hand-rolled JCS goes wrong, so there are none; this avoids a
    dependency for ~10 lines. Lone surrogates are refused (not encodable as UTF-8).
    """
    _check_value(value, "record")
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )
    except UnicodeEncodeError as exc:
        raise ValueError("lone surrogate in an audit record string") from exc


def _clean_str(s: str, limit: int) -> tuple[str, bool]:
    truncated = False
    if len(s) > limit:
        s, truncated = s[:limit], True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        # WSGI/ASGI may hand over surrogate-escaped bytes; the log must still record the call.
        s = s.encode("utf-8", "replace").decode("utf-8")
    return s, truncated


def _genesis(file_id: str) -> str:
    return hashlib.sha256(f"{FORMAT} genesis {file_id}".encode()).hexdigest()


def _digest(body: bytes, key: bytes | None) -> str:
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _dumps(value: Any) -> bytes:
    # canonical_json without the type walk, for records already checked by AuditLog._prepare.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _seal(record: dict[str, Any], key: bytes | None) -> bytes:
    """Set ``record["hash"]`` and return the canonical line (with newline)."""
    record.pop("hash", None)
    record["hash"] = _digest(_dumps(record), key)
    return _dumps(record) + b"\n"


def _format_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_key(key: bytes | str | None) -> bytes | None:
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode("utf-8")
    if len(key) < 16:
        raise ValueError("an audit HMAC key must be at least 16 bytes")
    return key


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_file` found. ``ok`` is False from the first bad line on.

    ``line`` is the 1-based line number of the first problem (None when ok); ``reason`` a
    stable code: ``malformed``, ``not_canonical``, ``bad_header``, ``hash_mismatch`` (edited, or
    wrong key), ``seq_gap`` (records removed), ``seq_out_of_order`` (reordered or duplicated),
    ``chain_broken`` (prev does not match: inserted, removed-and-renumbered, spliced),
    ``key_required`` / ``not_keyed`` (key given or not does not match the header's ``alg``),
    ``anchor_mismatch`` / ``truncated`` (an anchor given from outside is wrong or missing),
    ``empty``. ``torn_tail`` flags a last line without newline: a write a crash interrupted,
    never acknowledged; it is reported but does not make the log fail.
    """

    ok: bool
    path: str
    records: int  # decision/recovery records, the header not counted
    file_id: str | None = None
    alg: str | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    line: int | None = None
    reason: str | None = None
    message: str | None = None
    torn_tail: bool = False

    def check(self) -> VerifyReport:
        """Return self if ok, else raise :class:`AuditTamperedError`."""
        if not self.ok:
            raise AuditTamperedError(f"{self.path}:{self.line}: {self.message}", reason=self.reason, line=self.line)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _parse_line(raw: bytes) -> dict[str, Any]:
    def no_dups(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            raise ValueError("duplicate member name")
        return obj

    def no_const(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    obj = json.loads(raw.decode("utf-8"), object_pairs_hook=no_dups, parse_constant=no_const)
    if not isinstance(obj, dict):
        raise ValueError("a record must be a JSON object")  # noqa: TRY004 - callers catch ValueError
    return obj


class _Bad(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def _check_record(obj: dict[str, Any], raw: bytes, key: bytes | None) -> None:
    """Canonical form and own hash."""
    h = obj.get("hash")
    if not isinstance(h, str) or not _HEX64.match(h):
        raise _Bad("malformed", "missing or malformed 'hash'")
    try:
        canon = canonical_json(obj)
    except ValueError as exc:
        raise _Bad("malformed", str(exc)) from exc
    if canon != raw:
        raise _Bad("not_canonical", "the line is not in canonical form (edited by hand?)")
    body = dict(obj)
    del body["hash"]
    if not hmac.compare_digest(_digest(canonical_json(body), key), h):
        raise _Bad("hash_mismatch", "record hash does not match its content (edited, or wrong key)")
    if not isinstance(obj.get("seq"), int) or isinstance(obj.get("seq"), bool) or not isinstance(obj.get("prev"), str):
        raise _Bad("malformed", "missing or malformed 'seq' or 'prev'")


def _check_header(obj: dict[str, Any], key: bytes | None) -> None:
    if obj.get("kind") != "header" or obj.get("format") != FORMAT:
        raise _Bad("bad_header", f"line 1 is not a {FORMAT} header")
    fid = obj.get("file_id")
    if not isinstance(fid, str) or not _HEX32.match(fid):
        raise _Bad("bad_header", "header has no valid file_id")
    alg = obj.get("alg")
    if alg == "hmac-sha256" and key is None:
        raise _Bad("key_required", "the log is HMAC-keyed; verification needs the key")
    if alg == "sha256" and key is not None:
        raise _Bad("not_keyed", "a key was given but the log is not keyed (downgraded or wrong file?)")
    if alg not in ("sha256", "hmac-sha256"):
        raise _Bad("bad_header", f"unknown alg {alg!r}")


def _iter_lines(f: Any) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, line without newline, complete?)."""
    for n, raw in enumerate(f, start=1):
        if raw.endswith(b"\n"):
            yield n, raw[:-1], True
        else:
            yield n, raw, False


def verify_file(
    path: str | os.PathLike[str],
    *,
    key: bytes | str | None = None,
    anchors: Mapping[int, str] | None = None,
) -> VerifyReport:
    """Walk the whole chain of ``path``; report the first line that breaks it.

    ``key`` is the HMAC key for a keyed log (required then, refused otherwise). ``anchors``
    maps seq -> hash values kept outside the file (``AuditLog.head``, shipped to a SIEM or
    printed by ``vcgate audit head``): a plain chain cannot notice records cut off its end,
    an anchor can. Raises ``OSError`` only if the file cannot be read.
    """
    key = _check_key(key)
    anchors = dict(anchors or {})
    p = str(path)
    records = 0
    file_id = alg = None
    last_seq: int | None = None
    last_hash: str | None = None
    torn = False

    def report(ok: bool, line: int | None = None, reason: str | None = None, message: str | None = None) -> VerifyReport:
        return VerifyReport(ok, p, records, file_id, alg, last_seq, last_hash, line, reason, message, torn)

    with open(p, "rb") as f:
        for n, raw, complete in _iter_lines(f):
            if not complete:
                # A line without newline can only be last: a write cut short by a crash.
                torn = True
                break
            try:
                if len(raw) > _MAX_LINE:
                    raise _Bad("malformed", "line too long")
                try:
                    obj = _parse_line(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise _Bad("malformed", f"not a JSON record ({exc})") from exc
                if n == 1:
                    _check_header(obj, key)
                    file_id, alg = obj["file_id"], obj["alg"]
                _check_record(obj, raw, key)
                seq = obj["seq"]
                if n == 1:
                    if seq != 0 or obj["prev"] != _genesis(file_id):  # type: ignore[arg-type]
                        raise _Bad("bad_header", "header seq/prev do not match its file_id")
                else:
                    if obj.get("kind") == "header":
                        raise _Bad("chain_broken", "a second header inside the log (files spliced?)")
                    assert last_seq is not None
                    if seq > last_seq + 1:
                        raise _Bad("seq_gap", f"seq jumps from {last_seq} to {seq}: {seq - last_seq - 1} record(s) missing or moved")
                    if seq <= last_seq:
                        raise _Bad("seq_out_of_order", f"seq {seq} after {last_seq}: records reordered or duplicated")
                    if obj["prev"] != last_hash:
                        raise _Bad("chain_broken", "prev does not match the previous record's hash (inserted or replaced)")
                if seq in anchors and anchors.pop(seq) != obj["hash"]:
                    raise _Bad("anchor_mismatch", f"record {seq} does not match the anchor kept outside the file")
            except _Bad as bad:
                return report(False, n, bad.reason, bad.message)
            last_seq, last_hash = seq, obj["hash"]
            if n > 1:
                records += 1
    if file_id is None:
        return report(False, 1, "empty", "no complete header line")
    if anchors:
        seq = min(anchors)
        return report(False, None, "truncated", f"anchored record {seq} is missing: the log was cut short")
    return report(True)


def read_records(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Parse the complete lines of a log (no verification; the header included)."""
    with open(path, "rb") as f:
        for _, raw, complete in _iter_lines(f):
            if complete:
                yield _parse_line(raw)


# --- the writer ----------------------------------------------------------------------------------


class Ticket:
    """The handle :meth:`AuditLog.append` returns. ``seq`` is known at once."""

    __slots__ = ("_log", "seq")

    def __init__(self, log: AuditLog, seq: int) -> None:
        self._log = log
        self.seq = seq

    def done(self) -> bool:
        return self._log._durable_seq >= self.seq

    def wait(self, timeout: float | None = None) -> int:
        """Block until the record is durable (written and fsynced); return its seq.

        Raises :class:`AuditUnavailableError` if the writer failed, or on timeout (the record
        may still be written later; the caller must treat the decision as not recorded).
        """
        return self._log._wait_durable(self.seq, timeout)


_Item = tuple[int, float, dict[str, Any]]


class AuditLog:
    """An append-only, hash-chained JSON-lines audit log written by one background thread.

    ``fsync``: True (``os.fdatasync`` once per batch), False (never; tests/dev only: a crash
    of the OS, not of the process, can lose acknowledged records), or a callable taking the
    file descriptor (tests count batches with it). ``max_batch``: most records per write +
    fsync. ``max_delay``: how long the writer lingers after the first queued record to gather
    more (0 = write at once; batches still form while the previous fsync runs).
    ``max_queue`` / ``block_timeout``: backpressure; an append that finds the queue full waits
    up to ``block_timeout`` seconds, then raises :class:`AuditUnavailableError`.
    ``key``: HMAC-SHA-256 key (>= 16 bytes) for a keyed chain. ``clock``: returns epoch
    seconds. ``max_field_chars``: longer strings are cut (and the record gets
    ``"truncated": true``) so an attacker-sized path cannot blow up the log.

    On open an existing file is resumed: its header and last complete line are checked (not the
    whole file; ``verify_on_open=True`` for that). A torn last line (no newline: a crash during
    a write, so never acknowledged) is cut off and the cut is itself logged as a ``recovery``
    record. Anything else that does not check raises :class:`AuditCorruptError`. The file is
    locked (``flock``) so two processes never append to the same log.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool | Callable[[int], None] = True,
        max_batch: int = 1024,
        max_delay: float = 0.0,
        max_queue: int = 65536,
        block_timeout: float = 0.05,
        key: bytes | str | None = None,
        clock: Callable[[], float] = time.time,
        max_field_chars: int = 2048,
        verify_on_open: bool = False,
    ) -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be >= 1")
        self.path = Path(path)
        self._key = _check_key(key)
        if fsync is True:
            self._fsync: Callable[[int], None] | None = getattr(os, "fdatasync", os.fsync)
        elif fsync is False:
            self._fsync = None
        else:
            self._fsync = fsync
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_queue = max_queue
        self._block_timeout = block_timeout
        self._clock = clock
        self._max_field = max_field_chars
        self._names: set[str] = set(DECISION_FIELDS)  # field names already checked

        self._cond = threading.Condition(threading.Lock())
        # Waiters sleep on their own Event, kept in a heap by seq: a finished batch wakes only
        # the callers it made durable (a shared Condition woke all of them, every batch).
        self._durable_lock = threading.Lock()
        self._waiters: list[tuple[int, int, threading.Event]] = []
        self._waiter_ids = itertools.count()
        self._queue: collections.deque[_Item] = collections.deque()
        self._closing = False
        self._error: BaseException | None = None
        #: Batches written (one fsync each); for tests and metrics.
        self.batches = 0

        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise AuditUnavailableError(f"{self.path}: in use by another process") from exc
                raise
            pending = self._open_chain(verify_on_open)
        except BaseException:
            os.close(self._fd)
            raise
        self._next_seq = self._last_seq + 1
        self._durable_seq = self._last_seq
        self._durable_hash = self._last_hash
        for rec in pending:
            self._enqueue_nowait(rec)
        self._thread = threading.Thread(target=self._run, name=f"vcgate-audit:{self.path.name}", daemon=True)
        self._thread.start()

    # -- opening and resuming

    def _open_chain(self, verify_on_open: bool) -> list[dict[str, Any]]:
        """Set ``_file_id``, ``_last_seq``, ``_last_hash``; return records to log first."""
        size = os.fstat(self._fd).st_size
        pending: list[dict[str, Any]] = []
        end = self._last_newline(size)
        if end < size:  # torn tail
            torn = os.pread(self._fd, size - end, end)
            os.ftruncate(self._fd, end)
            if self._fsync:
                self._fsync(self._fd)
            pending.append(
                {"kind": "recovery", "truncated_bytes": size - end, "torn_sha256": hashlib.sha256(torn).hexdigest()}
            )
            size = end
        alg = "hmac-sha256" if self._key else "sha256"
        if size == 0:
            self._file_id = secrets.token_hex(16)
            header: dict[str, Any] = {
                "kind": "header",
                "format": FORMAT,
                "file_id": self._file_id,
                "alg": alg,
                "seq": 0,
                "time": _format_time(self._clock()),
                "prev": _genesis(self._file_id),
            }
            line = _seal(header, self._key)
            self._write_all(line)
            if self._fsync:
                self._fsync(self._fd)
            self._fsync_dir()
            self._last_seq, self._last_hash = 0, header["hash"]
            return pending
        if verify_on_open:
            rep = verify_file(self.path, key=self._key)
            if not rep.ok:
                raise AuditCorruptError(f"{self.path}:{rep.line}: {rep.message}")
        first = self._read_line_at(0)
        try:
            hdr = _parse_line(first)
            _check_header(hdr, self._key)
            _check_record(hdr, first, self._key)
        except _Bad as bad:
            raise AuditCorruptError(f"{self.path}:1: {bad.message}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise AuditCorruptError(f"{self.path}:1: not a {FORMAT} header") from exc
        self._file_id = hdr["file_id"]
        start = self._last_newline(size - 1)
        last_raw = os.pread(self._fd, size - 1 - start, start)
        try:
            last = _parse_line(last_raw)
            _check_record(last, last_raw, self._key)
        except _Bad as bad:
            raise AuditCorruptError(f"{self.path}: last line: {bad.message}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise AuditCorruptError(f"{self.path}: last line is not a record") from exc
        self._last_seq, self._last_hash = last["seq"], last["hash"]
        return pending

    def _last_newline(self, size: int) -> int:
        """Offset just past the last b"\\n" before ``size`` (0 if none)."""
        pos = size
        while pos > 0:
            n = min(65536, pos)
            chunk = os.pread(self._fd, n, pos - n)
            i = chunk.rfind(b"\n")
            if i >= 0:
                return pos - n + i + 1
            pos -= n
        return 0

    def _read_line_at(self, offset: int) -> bytes:
        buf = b""
        while True:
            chunk = os.pread(self._fd, 65536, offset + len(buf))
            i = chunk.find(b"\n")
            if i >= 0:
                return buf + chunk[:i]
            if not chunk or len(buf) > _MAX_LINE:
                return buf + chunk
            buf += chunk

    def _fsync_dir(self) -> None:
        if not self._fsync:
            return
        try:
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- the request path

    @property
    def healthy(self) -> bool:
        """Whether the log takes records now (open, and its writer has not failed)."""
        return self._error is None and not self._closing

    @property
    def file_id(self) -> str:
        return self._file_id

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last durable record: an anchor to keep outside the file."""
        with self._durable_lock:
            return self._durable_seq, self._durable_hash

    def _prepare(self, record: Mapping[str, Any]) -> dict[str, Any]:
        rec: dict[str, Any] = {"kind": "decision"}
        truncated = False
        names = self._names
        for k, v in record.items():
            if k not in names:
                if not isinstance(k, str) or not _FIELD_NAME.match(k):
                    raise ValueError(f"audit field name {k!r} must match {_FIELD_NAME.pattern}")
                if k not in _RESERVED and len(names) < 256:
                    names.add(k)
            if k in _RESERVED:
                if k == "kind" and isinstance(v, str) and v not in ("header", "recovery"):
                    rec["kind"] = v
                    continue
                raise ValueError(f"audit field {k!r} is set by the log")
            if v is None or isinstance(v, bool):
                rec[k] = v
                continue
            if isinstance(v, int):  # HTTPStatus and other int enums are logged as plain numbers
                v = int(v)
                if not -_MAX_SAFE_INT <= v <= _MAX_SAFE_INT:
                    raise ValueError(f"{k}: integer out of the exactly representable range")
                rec[k] = v
                continue
            if isinstance(v, str):  # DID(str) and other str subclasses are logged as plain strings
                v = str(v)
                if len(v) > self._max_field or not v.isascii():
                    v, t = _clean_str(v, self._max_field)
                    truncated |= t
                rec[k] = v
                continue
            if isinstance(v, (list, tuple)):
                items = []
                for item in v:
                    if isinstance(item, str):
                        item, t = _clean_str(item, self._max_field)
                        truncated |= t
                    items.append(item)
                v = items
            _check_value(v, k)
            rec[k] = v
        if truncated:
            rec["truncated"] = True
        return rec

    def append(self, record: Mapping[str, Any]) -> Ticket:
        """Enqueue one decision record; return at once with a :class:`Ticket`.

        ``seq`` and ``time`` are assigned here, under one lock, so they follow call order.
        Raises ``ValueError`` for a record with types JSON cannot carry exactly, and
        :class:`AuditUnavailableError` when the queue stays full for ``block_timeout`` or the
        writer has failed or the log is closed: the caller must then refuse the request.
        """
        return self._enqueue(self._prepare(record), self._block_timeout)

    def append_sync(self, record: Mapping[str, Any], timeout: float | None = 5.0) -> int:
        """Append and wait until the record is durable; return its seq."""
        return self.append(record).wait(timeout)

    def _enqueue_nowait(self, rec: dict[str, Any]) -> None:
        with self._cond:
            self._push(rec)

    def _push(self, rec: dict[str, Any]) -> int:
        seq = self._next_seq
        self._next_seq += 1
        self._queue.append((seq, self._clock(), rec))
        self._cond.notify()
        return seq

    def _enqueue(self, rec: dict[str, Any], block: float) -> Ticket:
        with self._cond:
            if self._error is not None or self._closing:
                raise self._unavailable()
            if len(self._queue) >= self._max_queue:
                deadline = time.monotonic() + block
                while len(self._queue) >= self._max_queue:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._error is not None or self._closing:
                        if self._error is not None or self._closing:
                            raise self._unavailable()
                        raise AuditUnavailableError("audit queue full: the disk is not keeping up", reason="queue_full")
                    self._cond.wait(left)
            return Ticket(self, self._push(rec))

    def _unavailable(self) -> AuditUnavailableError:
        if self._error is not None:
            return AuditUnavailableError(f"audit writer failed: {self._error}", reason="write_failed")
        return AuditUnavailableError("audit log is closed", reason="closed")

    def _wait_durable(self, seq: int, timeout: float | None) -> int:
        if self._durable_seq >= seq:
            return seq
        with self._durable_lock:
            if self._durable_seq >= seq:
                return seq
            if self._error is not None:
                raise self._unavailable()
            ev = threading.Event()
            heapq.heappush(self._waiters, (seq, next(self._waiter_ids), ev))
        ev.wait(timeout)
        if self._durable_seq >= seq:
            return seq
        if self._error is not None:
            raise self._unavailable()
        raise AuditUnavailableError("timed out waiting for the audit record to be durable", reason="timeout")

    # -- the writer thread

    def _run(self) -> None:
        prev = self._last_hash
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                if self._max_delay > 0 and len(self._queue) < self._max_batch and not self._closing:
                    deadline = time.monotonic() + self._max_delay
                    while len(self._queue) < self._max_batch and not self._closing:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                n = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(n)]
                self._cond.notify_all()  # room in the queue for blocked appenders
            try:
                lines = []
                for seq, stamp, rec in batch:
                    rec["seq"], rec["time"], rec["prev"] = seq, _format_time(stamp), prev
                    lines.append(_seal(rec, self._key))
                    prev = rec["hash"]
                self._write_all(b"".join(lines))
                if self._fsync:
                    self._fsync(self._fd)
            except BaseException as exc:  # noqa: BLE001 - any failure must fail closed, not kill silently
                # After a failed write/fsync the page cache state is unknown (fsyncgate):
                # stop for good; every waiting and later append fails closed.
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                with self._durable_lock:
                    waiters, self._waiters = self._waiters, []
                for _, _, ev in waiters:
                    ev.set()
                return
            woken = []
            with self._durable_lock:
                self.batches += 1
                self._durable_seq = done = batch[-1][0]
                self._durable_hash = prev
                while self._waiters and self._waiters[0][0] <= done:
                    woken.append(heapq.heappop(self._waiters)[2])
            for ev in woken:
                ev.set()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    # -- lifecycle

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything appended so far is durable."""
        with self._cond:
            last = self._next_seq - 1
        self._wait_durable(last, timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Write and fsync everything queued, stop the writer, close the file. Idempotent."""
        with self._cond:
            if self._closing and self._fd < 0:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._fd >= 0 and not self._thread.is_alive():
            os.close(self._fd)
            self._fd = -1
        if self._error is not None:
            raise self._unavailable()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def tail_records(path: str | os.PathLike[str], n: int) -> list[dict[str, Any]]:
    """The last ``n`` complete records (header excluded), unverified."""
    out: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(n, 0))
    for rec in read_records(path):
        if rec.get("kind") != "header":
            out.append(rec)
    return list(out)
