"""The issuer's record: what ``vcgate issue`` issued, kept in a local SQLite file.

One row per credential: its id, subject, types, format, issuer, validity, status entries,
when it was issued, the SHA-256 of the credential as issued, and, once revoked, when and how.
Never the private key; the subject's claims only when the issuer asks for them
(``vcgate issue --record-claims``). The key file and status-list state file *paths* used at
issue time are kept, so ``vcgate credentials revoke ID`` needs fewer options.

SQLite (stdlib ``sqlite3``) in WAL mode with a busy timeout: several ``vcgate issue`` runs at
once each add their row in one short transaction. The file is created with mode 0600 (SQLite
gives its ``-wal`` / ``-shm`` files the database file's mode) in a folder of mode 0700.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import CredentialExistsError, CredentialUnknownError, RecordError

__all__ = ["RECORD_ENV", "IssuedCredential", "IssuerRecord", "credential_hash", "default_record_path", "record_path"]

#: The record's path, or ``off`` to keep no record.
RECORD_ENV = "VCGATE_ISSUER_RECORD"
STATES = ("active", "revoked", "expired")
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS credentials (
    id          TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    types       TEXT NOT NULL,          -- JSON array
    format      TEXT NOT NULL,          -- vc-jose | vc-jwt11 | sd-jwt
    issuer      TEXT NOT NULL,
    valid_from  REAL,                   -- POSIX seconds
    valid_until REAL,
    status      TEXT NOT NULL,          -- JSON array of status entries (may be empty)
    issued_at   REAL NOT NULL,
    sha256      TEXT NOT NULL,          -- hex SHA-256 of the credential as issued
    claims      TEXT,                   -- JSON, only with --record-claims
    key_file    TEXT,                   -- path of the issuer key file (never the key)
    status_list TEXT,                   -- path of the status-list state file, if any
    revoked_at  REAL,
    revocation  TEXT                    -- JSON array: what revoking changed (list index, tx)
);
CREATE INDEX IF NOT EXISTS credentials_subject ON credentials(subject);
CREATE INDEX IF NOT EXISTS credentials_sha256 ON credentials(sha256);
"""


def default_record_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/vcgate/issued.sqlite3`` (default ``~/.local/share/vcgate/issued.sqlite3``)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "share")
    return Path(base) / "vcgate" / "issued.sqlite3"


def record_path(value: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The record's path from ``--record`` / ``VCGATE_ISSUER_RECORD``: None for ``off`` (or ``none``),
    the default for an unset or empty value."""
    text = "" if value is None else os.fspath(value)
    if not text.strip():  # unset or empty: the default place
        return default_record_path(environ)
    if text.strip().lower() in ("off", "none"):
        return None
    return Path(text).expanduser()


def credential_hash(token: str) -> str:
    """The hex SHA-256 of a credential as issued (its compact serialization, ASCII)."""
    return hashlib.sha256(token.strip().encode("ascii")).hexdigest()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class IssuedCredential:
    """One row of the record."""

    id: str
    subject: str
    types: tuple[str, ...]
    format: str
    issuer: str
    valid_from: float | None
    valid_until: float | None
    status: tuple[Mapping[str, Any], ...]
    issued_at: float
    sha256: str
    claims: Mapping[str, Any] | None = None
    key_file: str | None = None
    status_list: str | None = None
    revoked_at: float | None = None
    revocation: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)

    def state(self, now: float) -> str:
        """``revoked`` (by this issuer, through the record or ``vcgate revoke``), ``expired``, else ``active``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.valid_until is not None and self.valid_until <= now:
            return "expired"
        return "active"

    def to_dict(self, now: float) -> dict[str, Any]:
        """The JSON shape of ``vcgate credentials show --json`` (and of each ``list --json`` item)."""
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state(now),
            "subject": self.subject,
            "types": list(self.types),
            "format": self.format,
            "issuer": self.issuer,
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until),
            "issued_at": _iso(self.issued_at),
            "status": [dict(s) for s in self.status],
            "sha256": self.sha256,
            "key_file": self.key_file,
            "status_list": self.status_list,
            "revoked_at": _iso(self.revoked_at),
            "revocation": [dict(r) for r in self.revocation],
        }
        if self.claims is not None:
            out["claims"] = dict(self.claims)
        return out


_COLUMNS = ("id", "subject", "types", "format", "issuer", "valid_from", "valid_until", "status", "issued_at",
            "sha256", "claims", "key_file", "status_list", "revoked_at", "revocation")


def _row_to_credential(row: Sequence[Any]) -> IssuedCredential:
    v = dict(zip(_COLUMNS, row))
    return IssuedCredential(
        id=v["id"], subject=v["subject"], types=tuple(json.loads(v["types"])), format=v["format"],
        issuer=v["issuer"], valid_from=v["valid_from"], valid_until=v["valid_until"],
        status=tuple(json.loads(v["status"])), issued_at=v["issued_at"], sha256=v["sha256"],
        claims=None if v["claims"] is None else json.loads(v["claims"]), key_file=v["key_file"],
        status_list=v["status_list"], revoked_at=v["revoked_at"],
        revocation=tuple(json.loads(v["revocation"])) if v["revocation"] else (),
    )


class IssuerRecord:
    """The record at ``path`` (created on first write). ``clock``: POSIX seconds, for tests."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time,
                 busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout

    # -- opening ------------------------------------------------------------------------------

    def _create_file(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created here, not by sqlite3, so the mode is 0600 from the first byte on.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)

    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection]:
        try:
            if not self.path.exists():
                if not create:
                    raise CredentialUnknownError(f"{self.path} does not exist yet: nothing was recorded there")
                self._create_file()
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        except OSError as exc:
            raise RecordError(f"{self.path}: {exc.strerror or exc}") from exc
        except sqlite3.Error as exc:
            raise RecordError(f"{self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # a recorded credential survives a power cut
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:  # a new file; CREATE ... IF NOT EXISTS makes a race between creators harmless
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;")
            elif version != _SCHEMA_VERSION:
                raise RecordError(f"{self.path} has record version {version}; this vcgate knows {_SCHEMA_VERSION}")
            yield conn
        except sqlite3.DatabaseError as exc:
            raise RecordError(f"{self.path}: {exc}") from exc
        finally:
            conn.close()

    # -- writing ------------------------------------------------------------------------------

    def add(self, cred: IssuedCredential) -> None:
        """Record a new credential; ``CredentialExistsError`` if its id is taken."""
        values = (
            cred.id, cred.subject, json.dumps(list(cred.types)), cred.format, cred.issuer, cred.valid_from,
            cred.valid_until, json.dumps([dict(s) for s in cred.status]), cred.issued_at, cred.sha256,
            None if cred.claims is None else json.dumps(dict(cred.claims)), cred.key_file, cred.status_list,
            cred.revoked_at, json.dumps([dict(r) for r in cred.revocation]) if cred.revocation else None,
        )
        with self._connect(create=True) as conn:
            try:
                conn.execute(f"INSERT INTO credentials ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                             values)
            except sqlite3.IntegrityError as exc:
                raise CredentialExistsError(f"{self.path} already has a credential {cred.id[:100]}") from exc

    def mark(self, credential_id: str, *, revoked: bool, changes: Sequence[Mapping[str, Any]] = ()) -> IssuedCredential:
        """Record a revocation (``revoked``) or a reinstatement of ``credential_id``."""
        with self._connect(create=False) as conn:
            if revoked:
                cur = conn.execute(
                    "UPDATE credentials SET revoked_at = COALESCE(revoked_at, ?), revocation = ? WHERE id = ?",
                    (self._clock(), json.dumps([dict(c) for c in changes]), credential_id))
            else:
                cur = conn.execute("UPDATE credentials SET revoked_at = NULL, revocation = NULL WHERE id = ?",
                                   (credential_id,))
            if cur.rowcount == 0:
                raise CredentialUnknownError(f"no credential {credential_id[:100]} in {self.path}")
        return self.get(credential_id)

    # -- reading ------------------------------------------------------------------------------

    def get(self, credential_id: str) -> IssuedCredential:
        with self._connect(create=False) as conn:
            row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM credentials WHERE id = ?", (credential_id,)).fetchone()
        if row is None:
            raise CredentialUnknownError(f"no credential {credential_id[:100]} in {self.path}")
        return _row_to_credential(row)

    def find(self, credential_id: str) -> IssuedCredential | None:
        """The credential with this id, or None (also when the record file does not exist yet)."""
        if not self.path.exists():
            return None
        try:
            return self.get(credential_id)
        except CredentialUnknownError:
            return None

    def find_by_hash(self, sha256: str) -> IssuedCredential | None:
        """The credential issued as exactly these bytes, if this record has it (no file: None)."""
        if not self.path.exists():
            return None
        with self._connect(create=False) as conn:
            row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM credentials WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else _row_to_credential(row)

    def list(self, *, subject: str | None = None, state: str | None = None) -> list[IssuedCredential]:
        """Credentials, oldest first, optionally of one subject and in one state."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        if not self.path.exists():
            return []
        now = self._clock()
        where, args = [], []  # type: tuple[list[str], list[Any]]
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        if state == "revoked":
            where.append("revoked_at IS NOT NULL")
        elif state == "expired":
            where.append("revoked_at IS NULL AND valid_until IS NOT NULL AND valid_until <= ?")
            args.append(now)
        elif state == "active":
            where.append("revoked_at IS NULL AND (valid_until IS NULL OR valid_until > ?)")
            args.append(now)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM credentials"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect(create=False) as conn:
            rows = conn.execute(sql + " ORDER BY issued_at, rowid", args).fetchall()
        return [_row_to_credential(r) for r in rows]

    def now(self) -> float:
        return self._clock()
