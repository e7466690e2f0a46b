"""The audit log wired into the gate, seen through the ASGI and WSGI middleware."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.middleware.helpers import make_world
from tests.middleware.test_middleware import AUD, BODY, CHAT, Client
from vcgate.audit import AuditLog, read_records, verify_file
from vcgate.cli import cli
from vcgate.session import create_proof

TOKEN = "/.well-known/vcgate/token"


def decisions(path: Path) -> list[dict]:
    return [r for r in read_records(path) if r.get("kind") == "decision"]


def strip(rec: dict) -> dict:
    """A record without the fields the log sets."""
    return {k: v for k, v in rec.items() if k not in ("seq", "prev", "hash", "kind", "time")}


@pytest.mark.parametrize("durability", ["sync", "async"])
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_sequence_recorded_in_order_and_verifies(kind, durability, tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, fsync=False)
    w = make_world(AUD, audit=log, audit_durability=durability)
    c = Client(kind, w.gate)
    json_h = {"content-type": "application/json"}
    holder, issuer = w.holder.did, w.issuer.did

    assert c.request("GET", "/healthz")[0] == 200
    status, _, body = c.request("GET", "/v1/models")
    assert status == 401
    vp = w.presentation(body["nonce"])
    assert c.request("POST", CHAT, content=BODY, headers={"authorization": f"VP {vp}", **json_h})[0] == 200
    nonce = c.request("GET", "/v1/models")[2]["nonce"]
    proof = create_proof(w.holder.key, htm="POST", htu=AUD + TOKEN, clock=w.clock)
    status, _, body = c.request("POST", TOKEN, data={"vp_token": w.presentation(nonce)}, headers={"DPoP": proof})
    assert status == 200, body
    token = body["access_token"]
    proof = create_proof(w.holder.key, htm="GET", htu=AUD + "/v1/models", access_token=token, clock=w.clock)
    h = {"authorization": f"DPoP {token}", "DPoP": proof}
    assert c.request("GET", "/v1/models", headers=h)[0] == 200
    assert c.request("GET", "/v1/models", headers=h)[2]["error"] == "dpop_replayed"
    assert c.request("GET", "/nowhere")[0] == 403
    assert c.request("GET", TOKEN)[0] == 405

    if durability == "sync":  # durable before answered: nothing left to flush
        seen = [strip(r) for r in decisions(path)]
    log.close()
    records = [strip(r) for r in decisions(path)]
    if durability == "sync":
        assert seen == records
    expected = [
        {"outcome": "allow", "status": 200, "method": "GET", "path": "/healthz", "rule": "health", "mode": "public"},
        {"outcome": "deny", "status": 401, "method": "GET", "path": "/v1/models", "code": "credential_required"},
        {"outcome": "allow", "status": 200, "method": "POST", "path": CHAT, "rule": "chat", "mode": "direct",
         "subject": holder, "issuer": issuer},
        {"outcome": "deny", "status": 401, "method": "GET", "path": "/v1/models", "code": "credential_required"},
        {"outcome": "allow", "status": 200, "method": "POST", "path": TOKEN, "mode": "token",
         "subject": holder, "issuer": issuer},
        {"outcome": "allow", "status": 200, "method": "GET", "path": "/v1/models", "rule": "list-models",
         "mode": "session", "subject": holder, "issuer": issuer},
        {"outcome": "deny", "status": 401, "method": "GET", "path": "/v1/models", "code": "dpop_replayed"},
        {"outcome": "deny", "status": 403, "method": "GET", "path": "/nowhere", "code": "no_matching_rule"},
        {"outcome": "deny", "status": 405, "method": "GET", "path": TOKEN, "code": "method_not_allowed"},
    ]
    # The anonymous denial may name the rule that wanted a credential; compare the rest exactly.
    assert [{k: v for k, v in r.items() if not (k == "rule" and r["outcome"] == "deny")} for r in records] == expected
    assert [r["seq"] for r in decisions(path)] == list(range(1, len(expected) + 1))

    report = verify_file(path)
    assert report.ok and report.records == len(expected), report
    result = CliRunner().invoke(cli, ["audit", "verify", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_cli_verify_installed_command(tmp_path):
    """The installed ``vcgate`` entry point (not just the click group) verifies a gate's log."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, fsync=False) as log:
        w = make_world(AUD, audit=log)
        c = Client("wsgi", w.gate)
        c.request("GET", "/healthz")
        c.request("GET", "/v1/models")
    exe = Path(sys.executable).with_name("vcgate")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from vcgate.cli import main; main()"]
    proc = subprocess.run([*cmd, "audit", "verify", str(path)], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 records" in proc.stdout or "ok" in proc.stdout


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_closed_log_fails_closed_503(kind, tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl", fsync=False)
    w = make_world(AUD, audit=log)
    c = Client(kind, w.gate)
    log.close()
    for method, path in (("GET", "/healthz"), ("GET", "/v1/models")):
        status, headers, body = c.request(method, path)
        assert status == 503 and body["error"] == "audit_unavailable", body
        assert body["details"]["reason"] == "closed"
        assert "www-authenticate" not in headers
    # The token endpoint fails closed too.
    vp = w.presentation(w.gate.nonce_store.issue(60))
    proof = create_proof(w.holder.key, htm="POST", htu=AUD + TOKEN, clock=w.clock)
    status, _, body = c.request("POST", TOKEN, data={"vp_token": vp}, headers={"DPoP": proof})
    assert status == 503 and body["error"] == "audit_unavailable" and "access_token" not in body


def test_decision_stays_in_app_scope_with_audit(tmp_path):
    with AuditLog(tmp_path / "a.jsonl", fsync=False) as log:
        w = make_world(AUD, audit=log)
        c = Client("asgi", w.gate)
        n = c.request("GET", "/v1/models")[2]["nonce"]
        status, _, body = c.request("POST", CHAT, content=BODY, headers={
            "authorization": f"VP {w.presentation(n)}", "content-type": "application/json"})
        assert status == 200 and body["rule"] == "chat" and json.loads(BODY)["model"] == "gpt-4o"
