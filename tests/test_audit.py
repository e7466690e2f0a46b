"""The audit log: chain round trip, every tamper kind, crash durability, group commit, backpressure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from vcgate.audit import (
    AuditCorruptError,
    AuditLog,
    AuditTamperedError,
    AuditUnavailableError,
    canonical_json,
    read_records,
    verify_file,
)
from vcgate.cli import cli
from vcgate.errors import VCGateError

KEY = b"k" * 32
FIXED = 1_780_272_000.25


def decision(i: int, **extra: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "subject": "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH",
        "issuer": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        "rule": "frontier",
        "outcome": "allow" if i % 3 else "deny",
        "code": None if i % 3 else "claim_mismatch",
        "status": 200 if i % 3 else 403,
        "method": "POST",
        "path": f"/v1/chat/completions?i={i}",
    }
    rec.update(extra)
    return rec


def make_log(path: Path, n: int = 6, **kw: object) -> Path:
    kw.setdefault("fsync", False)
    with AuditLog(path, **kw) as log:  # type: ignore[arg-type]
        for i in range(1, n + 1):
            log.append(decision(i))
    return path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# --- round trip and format ---------------------------------------------------------------------


def test_round_trip(tmp_path):
    p = tmp_path / "a.jsonl"
    with AuditLog(p, fsync=False, clock=lambda: FIXED) as log:
        tickets = [log.append(decision(i)) for i in range(1, 11)]
        assert [t.seq for t in tickets] == list(range(1, 11))
        assert tickets[-1].wait(5) == 10
        assert log.head[0] == 10
    rep = verify_file(p)
    assert rep.ok and rep.records == 10 and rep.last_seq == 10 and rep.alg == "sha256"
    recs = list(read_records(p))
    assert recs[0]["kind"] == "header" and recs[0]["seq"] == 0
    assert recs[1]["prev"] == recs[0]["hash"] and recs[1]["time"] == "2026-06-01T00:00:00.250000Z"
    assert all(r["kind"] == "decision" for r in recs[1:])
    assert rep.check() is rep


def test_lines_are_canonical_jcs(tmp_path):
    assert canonical_json({"b": 1, "a": "\u0001é\u2028\"\\", "c": [True, None]}) == (
        '{"a":"\\u0001é\u2028\\"\\\\","b":1,"c":[true,null]}'.encode()
    )
    for bad in (1.5, 2**53, float("nan"), b"x", {1: 2}, "\ud800"):
        with pytest.raises(ValueError):
            canonical_json({"x": bad})
    p = make_log(tmp_path / "a.jsonl")
    for raw in lines(p):
        assert canonical_json(json.loads(raw)) + b"\n" == raw


def test_record_validation_and_truncation(tmp_path):
    with AuditLog(tmp_path / "a.jsonl", fsync=False, max_field_chars=16) as log:
        for bad in ({"seq": 3}, {"hash": "x"}, {"prev": "x"}, {"Bad-Name": 1}, {"x": 0.5}, {"kind": "header"}):
            with pytest.raises(ValueError):
                log.append(bad)
        log.append_sync({"path": "/" + "a" * 100, "reasons": ["r" * 40], "raw": "\udcff"})
    rec = list(read_records(tmp_path / "a.jsonl"))[1]
    assert rec["path"] == "/" + "a" * 15 and rec["reasons"] == ["r" * 16] and rec["truncated"] is True
    assert rec["raw"] == "?"
    assert verify_file(tmp_path / "a.jsonl").ok


def test_resume_appends_to_the_same_chain(tmp_path):
    p = make_log(tmp_path / "a.jsonl", 3)
    with AuditLog(p, fsync=False) as log:
        assert log.append_sync(decision(4)) == 4
    rep = verify_file(p)
    assert rep.ok and rep.records == 4


def test_keyed_log(tmp_path):
    p = make_log(tmp_path / "k.jsonl", key=KEY)
    assert verify_file(p, key=KEY).ok
    assert verify_file(p).reason == "key_required"
    wrong = verify_file(p, key=b"w" * 32)
    assert (wrong.ok, wrong.line, wrong.reason) == (False, 1, "hash_mismatch")
    with pytest.raises(AuditCorruptError):
        AuditLog(p, fsync=False)  # keyed log opened without its key
    with pytest.raises(AuditCorruptError):
        AuditLog(p, fsync=False, key=b"w" * 32)
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "short.jsonl", key=b"short")


# --- tampering ------------------------------------------------------------------------------------


def _edit(raw: bytes, **changes: object) -> bytes:
    obj = json.loads(raw)
    obj.update(changes)
    return canonical_json(obj) + b"\n"


def _rehash(raw: bytes, key: bytes | None = None) -> bytes:
    from vcgate.audit import _seal

    return _seal(json.loads(raw), key)


def t_edit(ls, other):
    ls[3] = _edit(ls[3], outcome="allow", status=200, code=None, path="/v1/other")


def t_edit_rehash(ls, other):  # a plain chain: the edited record itself checks, the next does not
    ls[3] = _rehash(_edit(ls[3], path="/v1/other"))


def t_remove(ls, other):
    del ls[3]


def t_reorder(ls, other):
    ls[3], ls[4] = ls[4], ls[3]


def t_duplicate(ls, other):
    ls.insert(4, ls[3])


def t_insert_foreign(ls, other):
    ls.insert(4, other[4])  # seq 4 from another log, right place by number


def t_replace_foreign(ls, other):
    ls[3] = other[3]


def t_truncate_middle(ls, other):
    ls[3] = ls[3][:40] + b"\n"


def t_whitespace(ls, other):
    ls[3] = ls[3].replace(b'","', b'", "', 1)


def t_swap_header(ls, other):
    ls[0] = other[0]


def t_drop_header(ls, other):
    del ls[0]


def t_splice(ls, other):
    ls.extend(other[1:])


def t_second_header(ls, other):
    ls.insert(3, other[0])


def t_duplicate_key(ls, other):
    ls[3] = ls[3][:-2] + b',"seq":3}\n'


TAMPERS = [
    pytest.param(t_edit, 4, "hash_mismatch", id="edited"),
    pytest.param(t_edit_rehash, 5, "chain_broken", id="edited-and-rehashed"),
    pytest.param(t_remove, 4, "seq_gap", id="removed"),
    pytest.param(t_reorder, 4, "seq_gap", id="reordered"),
    pytest.param(t_duplicate, 5, "seq_out_of_order", id="duplicated"),
    pytest.param(t_insert_foreign, 5, "chain_broken", id="inserted-from-other-log"),
    pytest.param(t_replace_foreign, 4, "chain_broken", id="replaced-from-other-log"),
    pytest.param(t_truncate_middle, 4, "malformed", id="truncated-line-in-the-middle"),
    pytest.param(t_whitespace, 4, "not_canonical", id="reformatted"),
    pytest.param(t_swap_header, 2, "chain_broken", id="header-swapped"),
    pytest.param(t_drop_header, 1, "bad_header", id="header-removed"),
    pytest.param(t_splice, 8, "seq_out_of_order", id="spliced-logs"),
    pytest.param(t_second_header, 4, "chain_broken", id="second-header"),
    pytest.param(t_duplicate_key, 4, "malformed", id="duplicate-member"),
]


@pytest.mark.parametrize("tamper, line, reason", TAMPERS)
def test_tamper_detected_at_the_right_line(tmp_path, tamper, line, reason):
    p = make_log(tmp_path / "a.jsonl")
    other = lines(make_log(tmp_path / "b.jsonl"))
    ls = lines(p)
    tamper(ls, other)
    p.write_bytes(b"".join(ls))
    rep = verify_file(p)
    assert (rep.ok, rep.line, rep.reason) == (False, line, reason), rep
    with pytest.raises(AuditTamperedError) as err:
        rep.check()
    assert err.value.code == "audit_tampered" and f":{line}:" in err.value.message


def test_rehashed_edit_cannot_be_hidden_without_the_key(tmp_path):
    p = make_log(tmp_path / "k.jsonl", key=KEY)
    ls = lines(p)
    ls[3] = _rehash(_edit(ls[3], path="/v1/other"))  # the attacker does not know KEY
    p.write_bytes(b"".join(ls))
    rep = verify_file(p, key=KEY)
    assert (rep.ok, rep.line, rep.reason) == (False, 4, "hash_mismatch")


def test_downgrade_to_a_plain_chain_is_refused_with_the_key(tmp_path):
    p = make_log(tmp_path / "k.jsonl", key=KEY)
    forged = make_log(tmp_path / "forged.jsonl")  # whole file rewritten as an unkeyed log
    rep = verify_file(forged, key=KEY)
    assert (rep.ok, rep.line, rep.reason) == (False, 1, "not_keyed")
    assert verify_file(p, key=KEY).ok


def test_records_cut_off_the_end_need_an_anchor(tmp_path):
    p = make_log(tmp_path / "a.jsonl")
    head = verify_file(p)
    anchor = {head.last_seq: head.last_hash}
    p.write_bytes(b"".join(lines(p)[:-2]))
    assert verify_file(p).ok  # a bare chain cannot see this: documented
    rep = verify_file(p, anchors=anchor)
    assert (rep.ok, rep.reason) == (False, "truncated")
    bad = verify_file(make_log(tmp_path / "b.jsonl"), anchors={3: "0" * 64})
    assert (bad.ok, bad.line, bad.reason) == (False, 4, "anchor_mismatch")


def test_empty_file(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_bytes(b"")
    assert verify_file(p).reason == "empty"


# --- torn tail and corrupt files -------------------------------------------------------------------


def test_torn_last_line_is_reported_then_cut_and_logged_on_open(tmp_path):
    p = make_log(tmp_path / "a.jsonl", 4)
    whole = lines(p)
    torn = whole[-1][:50]
    p.write_bytes(b"".join(whole[:-1]) + torn)  # the last write was cut short by a crash
    rep = verify_file(p)
    assert rep.ok and rep.torn_tail and rep.last_seq == 3
    with AuditLog(p, fsync=False) as log:
        log.append_sync(decision(9))
    recs = list(read_records(p))
    assert recs[4]["kind"] == "recovery" and recs[4]["truncated_bytes"] == 50 and recs[4]["seq"] == 4
    assert recs[5]["seq"] == 5 and recs[5]["path"].endswith("i=9")
    rep = verify_file(p)
    assert rep.ok and not rep.torn_tail and rep.records == 5


def test_torn_header_starts_a_new_log(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"alg":"sha2')
    with AuditLog(p, fsync=False) as log:
        log.append_sync(decision(1))
    assert verify_file(p).ok and [r["kind"] for r in read_records(p)] == ["header", "recovery", "decision"]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not json\n", id="garbage-header"),
        pytest.param(None, id="edited-last-line"),
    ],
)
def test_corrupt_file_is_not_extended(tmp_path, content):
    p = make_log(tmp_path / "a.jsonl", 3)
    if content is None:
        ls = lines(p)
        ls[-1] = _edit(ls[-1], path="/x")
        content = b"".join(ls)
    p.write_bytes(content)
    with pytest.raises(AuditCorruptError) as err:
        AuditLog(p, fsync=False)
    assert isinstance(err.value, AuditUnavailableError) and err.value.status == 503


def test_verify_on_open_checks_the_whole_file(tmp_path):
    p = make_log(tmp_path / "a.jsonl")
    ls = lines(p)
    del ls[2]
    p.write_bytes(b"".join(ls))
    AuditLog(p, fsync=False).close()  # only header and last line are checked by default
    with pytest.raises(AuditCorruptError, match=":3:"):
        AuditLog(p, fsync=False, verify_on_open=True)


def test_one_writer_per_file(tmp_path):
    p = tmp_path / "a.jsonl"
    with AuditLog(p, fsync=False), pytest.raises(AuditUnavailableError, match="in use"):
        AuditLog(p, fsync=False)


# --- concurrency, group commit, backpressure, failures --------------------------------------------


def test_concurrent_appenders_keep_order_and_chain(tmp_path):
    p = tmp_path / "a.jsonl"
    seen: dict[int, tuple[int, int]] = {}
    lock = threading.Lock()

    def worker(t: int) -> None:
        for i in range(200):
            seq = log.append({"thread": t, "i": i}).seq if i % 2 else log.append_sync({"thread": t, "i": i})
            with lock:
                seen[seq] = (t, i)

    with AuditLog(p, fsync=lambda fd: time.sleep(0.0005)) as log:
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    rep = verify_file(p)
    assert rep.ok and rep.records == 1600
    recs = list(read_records(p))[1:]
    assert [r["seq"] for r in recs] == list(range(1, 1601))
    assert all(seen[r["seq"]] == (r["thread"], r["i"]) for r in recs)
    times = [r["time"] for r in recs]
    assert times == sorted(times)
    for t in range(8):  # each thread's records appear in its own call order
        assert [r["i"] for r in recs if r["thread"] == t] == list(range(200))


def test_group_commit_batches_fsyncs(tmp_path):
    calls = []

    def slow_fsync(fd: int) -> None:
        calls.append(fd)
        time.sleep(0.002)  # a disk flush

    def run(max_batch: int) -> tuple[int, int]:
        p = tmp_path / f"b{max_batch}.jsonl"
        calls.clear()
        with AuditLog(p, fsync=slow_fsync, max_batch=max_batch) as log:
            header_fsyncs = len(calls)
            threads = [threading.Thread(target=lambda: [log.append_sync(decision(i)) for i in range(25)]) for _ in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        assert verify_file(p).records == 200
        return len(calls) - header_fsyncs, log.batches

    fsyncs, batches = run(1024)
    assert fsyncs == batches and batches <= 200 / 3, batches  # 8 waiting threads share each flush
    fsyncs, batches = run(1)
    assert fsyncs == batches == 200


def test_max_delay_gathers_a_batch(tmp_path):
    with AuditLog(tmp_path / "a.jsonl", fsync=False, max_delay=0.2) as log:
        tickets = [log.append(decision(i)) for i in range(50)]
        tickets[-1].wait(5)
        assert log.batches == 1


def test_backpressure_fails_closed(tmp_path):
    release = threading.Event()
    release.set()  # the header's fsync passes; the disk stalls after that
    log = AuditLog(tmp_path / "a.jsonl", fsync=lambda fd: release.wait(10), max_queue=4, block_timeout=0.05)
    release.clear()
    try:
        first = log.append(decision(0))  # taken by the writer, now stuck in fsync
        time.sleep(0.05)
        for i in range(4):
            log.append(decision(i))
        t0 = time.monotonic()
        with pytest.raises(AuditUnavailableError) as err:
            log.append(decision(9))
        assert 0.04 <= time.monotonic() - t0 < 1.0
        assert err.value.code == "audit_unavailable" and err.value.status == 503
        assert err.value.details["reason"] == "queue_full" and isinstance(err.value, VCGateError)
        with pytest.raises(AuditUnavailableError, match="timed out"):
            first.wait(0.01)
    finally:
        release.set()
        log.close()
    rep = verify_file(tmp_path / "a.jsonl")
    assert rep.ok and rep.records == 5


def test_write_failure_fails_closed_for_good(tmp_path):
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    log = AuditLog(tmp_path / "a.jsonl", fsync=False)
    log._fsync = broken  # the disk dies after open
    with pytest.raises(AuditUnavailableError, match="writer failed"):
        log.append_sync(decision(1))
    with pytest.raises(AuditUnavailableError):
        log.append(decision(2))
    with pytest.raises(AuditUnavailableError):
        log.close()


def test_closed_log_refuses(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl", fsync=False)
    log.append(decision(1))
    log.close()
    log.close()
    with pytest.raises(AuditUnavailableError, match="closed"):
        log.append(decision(2))
    assert verify_file(tmp_path / "a.jsonl").records == 1


# --- crash durability ------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, threading
    from vcgate.audit import AuditLog
    log = AuditLog(sys.argv[1], fsync=True)
    out = threading.Lock()
    def work(t):
        i = 0
        while True:
            seq = log.append_sync({"thread": t, "i": i, "path": "/v1/chat/completions"})
            with out:  # the gateway answers only now: this line is the acknowledgement
                sys.stdout.write(f"{seq} {t} {i}\\n")
                sys.stdout.flush()
            i += 1
    for t in range(4):
        threading.Thread(target=work, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


@pytest.mark.parametrize("run", range(4))
def test_acknowledged_records_survive_sigkill(tmp_path, run):
    p = tmp_path / "crash.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    for round_ in range(2):  # the second round resumes the file the first one was killed on
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(p)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # started and acknowledging
        time.sleep(0.05 + 0.07 * run)
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait()
        acked = [tuple(map(int, line.split())) for line in (first + rest).decode().splitlines()]
        assert acked
        rep = verify_file(p)
        assert rep.ok, rep
        stored = {r["seq"]: (r.get("thread"), r.get("i")) for r in read_records(p) if r["kind"] == "decision"}
        for seq, t, i in acked:
            assert stored.get(seq) == (t, i), f"acknowledged record {seq} lost in round {round_}"
    with AuditLog(p, fsync=False) as log:
        log.append_sync({"after": "crash"})
    assert verify_file(p).ok


# --- CLI -----------------------------------------------------------------------------------------------


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, ["audit", *args], env=env)


def test_cli_verify_ok_and_head(tmp_path):
    p = make_log(tmp_path / "a.jsonl")
    r = invoke("verify", str(p))
    assert r.exit_code == 0 and "ok:" in r.output and "6 records" in r.output
    head = invoke("head", str(p)).output.strip()
    assert head.startswith("6:")
    assert invoke("verify", str(p), "--anchor", head).exit_code == 0
    r = invoke("verify", str(p), "--json")
    assert r.exit_code == 0 and json.loads(r.output)["ok"] is True


def test_cli_verify_tampered(tmp_path):
    p = make_log(tmp_path / "a.jsonl")
    ls = lines(p)
    del ls[3]
    p.write_bytes(b"".join(ls))
    r = invoke("verify", str(p))
    assert r.exit_code == 1 and f"{p}:4: seq_gap" in r.output
    r = invoke("verify", str(p), "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["line"] == 4


def test_cli_verify_keyed(tmp_path):
    p = make_log(tmp_path / "k.jsonl", key=KEY)
    assert invoke("verify", str(p), "--key-env", "AK", env={"AK": KEY.decode()}).exit_code == 0
    r = invoke("verify", str(p))
    assert r.exit_code == 1 and "key_required" in r.output
    assert invoke("verify", str(p), "--key-env", "NOPE_UNSET_VAR").exit_code == 2


def test_cli_usage_errors(tmp_path):
    assert invoke("verify", str(tmp_path / "missing.jsonl")).exit_code == 2
    p = make_log(tmp_path / "a.jsonl")
    assert invoke("verify", str(p), "--anchor", "nonsense").exit_code == 2


def test_cli_tail(tmp_path):
    p = tmp_path / "a.jsonl"
    with AuditLog(p, fsync=False) as log:
        for i in range(1, 6):
            log.append(decision(i))
        log.append({"outcome": "deny", "path": "/evil\n\x1b[2J"})
    r = invoke("tail", str(p), "-n", "2")
    out = r.output.splitlines()
    assert r.exit_code == 0 and len(out) == 2 and out[0].startswith("5 ")
    assert "\x1b" not in r.output and "/evil\\n\\u001b[2J" in out[1]
    r = invoke("tail", str(p), "-n", "1", "--json")
    assert json.loads(r.output)["seq"] == 6
