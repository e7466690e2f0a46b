"""vcgate.issuer_record: the SQLite file behind `vcgate credentials` (states, file mode, WAL,
concurrent writers in separate processes, refusals)."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vcgate.errors import CredentialExistsError, CredentialUnknownError, RecordError
from vcgate.issuer_record import IssuedCredential, IssuerRecord, credential_hash, default_record_path, record_path

NOW = 1_900_000_000.0
REPO = Path(__file__).resolve().parents[1]


def cred(cid: str, *, until: float | None = NOW + 3600, subject: str = "did:key:zA", status: bool = True) -> IssuedCredential:
    entry = {"type": "BitstringStatusListEntry", "statusPurpose": "revocation", "statusListIndex": "7",
             "statusListCredential": "https://issuer.example/status/1"}
    return IssuedCredential(id=cid, subject=subject, types=("VerifiableCredential", "AgentCredential"),
                            format="vc-jose", issuer="did:key:zI", valid_from=NOW - 60, valid_until=until,
                            status=(entry,) if status else (), issued_at=NOW - 60, sha256=credential_hash(f"t.{cid}.s"))


@pytest.fixture
def record(tmp_path: Path) -> IssuerRecord:
    return IssuerRecord(tmp_path / "data" / "issued.sqlite3", clock=lambda: NOW)


def test_file_is_private_and_in_wal_mode(record: IssuerRecord) -> None:
    record.add(cred("urn:a"))
    assert stat.S_IMODE(record.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(record.path.parent.stat().st_mode) == 0o700
    with sqlite3.connect(record.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_states_and_filters(record: IssuerRecord) -> None:
    record.add(cred("urn:active"))
    record.add(cred("urn:expired", until=NOW - 1))
    record.add(cred("urn:no-expiry", until=None, subject="did:key:zB"))
    record.add(cred("urn:revoked"))
    record.mark("urn:revoked", revoked=True, changes=[{"list": "https://issuer.example/status/1", "index": 7}])
    ids = lambda **kw: [c.id for c in record.list(**kw)]  # noqa: E731
    assert ids() == ["urn:active", "urn:expired", "urn:no-expiry", "urn:revoked"]
    assert ids(state="active") == ["urn:active", "urn:no-expiry"]
    assert ids(state="expired") == ["urn:expired"]
    assert ids(state="revoked") == ["urn:revoked"]
    assert ids(subject="did:key:zB") == ["urn:no-expiry"]
    shown = record.get("urn:revoked").to_dict(NOW)
    assert shown["state"] == "revoked" and shown["revocation"] == [{"list": "https://issuer.example/status/1", "index": 7}]
    assert shown["valid_until"] == "2030-03-17T18:46:40Z" and "claims" not in shown
    record.mark("urn:revoked", revoked=False)
    assert record.get("urn:revoked").state(NOW) == "active"


@pytest.mark.parametrize("action", [
    pytest.param(lambda r: r.get("urn:nope"), id="get"),
    pytest.param(lambda r: r.mark("urn:nope", revoked=True), id="mark"),
])
def test_unknown_id_is_a_coded_error(record: IssuerRecord, action) -> None:
    record.add(cred("urn:a"))
    with pytest.raises(CredentialUnknownError) as info:
        action(record)
    assert info.value.code == "credential_unknown" and info.value.hint


def test_duplicate_id_refused(record: IssuerRecord) -> None:
    record.add(cred("urn:a"))
    with pytest.raises(CredentialExistsError):
        record.add(cred("urn:a"))


def test_missing_file_reads_as_empty_and_is_not_created(record: IssuerRecord) -> None:
    assert record.list() == [] and record.find("urn:a") is None and record.find_by_hash("00") is None
    with pytest.raises(CredentialUnknownError):
        record.get("urn:a")
    assert not record.path.exists()


@pytest.mark.parametrize("content", [pytest.param(b"not a database, just text\n" * 100, id="not-sqlite"),
                                     pytest.param(None, id="newer-version")])
def test_unreadable_record_fails_closed(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "issued.sqlite3"
    if content is None:
        IssuerRecord(path).add(cred("urn:a"))
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA user_version = 99")
    else:
        path.write_bytes(content)
    with pytest.raises(RecordError) as info:
        IssuerRecord(path).add(cred("urn:b"))
    assert info.value.code == "record_unavailable"


def test_concurrent_writers_in_separate_processes(tmp_path: Path) -> None:
    path = tmp_path / "issued.sqlite3"
    script = (
        "import sys; from tests.test_issuer_record import cred; from vcgate.issuer_record import IssuerRecord\n"
        "r = IssuerRecord(sys.argv[1])\n"
        "for i in range(20): r.add(cred(f'urn:{sys.argv[2]}:{i}'))\n"
    )
    env = {"PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(n)], cwd=REPO, env=env,
                              stderr=subprocess.PIPE, text=True) for n in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert len(IssuerRecord(path).list()) == 80


def test_paths() -> None:
    assert default_record_path({"XDG_DATA_HOME": "/data"}) == Path("/data/vcgate/issued.sqlite3")
    assert default_record_path({"HOME": "/home/ada"}) == Path("/home/ada/.local/share/vcgate/issued.sqlite3")
    assert record_path("off") is None and record_path("OFF") is None
    assert record_path("/x/r.db") == Path("/x/r.db")
    assert record_path("", {"XDG_DATA_HOME": "/data"}) == record_path(None, {"XDG_DATA_HOME": "/data"}) \
        == Path("/data/vcgate/issued.sqlite3")
