"""The issuer's record through the CLI: `vcgate issue` records, `vcgate credentials list|show|revoke`,
against a real HTTPS status-list host (the one of test_cli_status_list: a TLS server on 127.0.0.1
for ``status.test``, only its name lookup faked) and a verifier that then refuses the credential.
The on-chain twin (`credentials revoke` on anvil) is in test_cli_revocation.py.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cli_status_list import (  # noqa: F401  (fixtures)
    World,
    assert_refused_json,
    assert_valid,
    create_list,
    ok,
    run,
    status_test_resolves_to_loopback,
    world,
)
from vcgate.keys import b64url_decode

pytestmark = pytest.mark.integration


def issue(world: World, record: Path, *extra: Any, out: str | None = None) -> tuple[str, dict[str, Any]]:
    result = ok(run("issue", "--key", world.issuer_key, "--subject", world.agent, "--type", "AgentCredential",
                    "--claims", '{"models": ["gpt-4o-secret-model"]}', "--valid-for", "1d", "--record", record, *extra))
    token = result.stdout.strip()
    if out:
        (world.work / out).write_text(token + "\n")
    return token, json.loads(b64url_decode(token.split("~")[0].split(".")[1]))


def show(record: Path, cid: str) -> dict[str, Any]:
    return json.loads(ok(run("credentials", "show", "--json", "--record", record, cid)).stdout)


def listed(record: Path, *extra: str) -> list[str]:
    body = json.loads(ok(run("credentials", "list", "--json", "--record", record, *extra)).stdout)
    assert body["record"] == str(record)
    return [c["id"] for c in body["credentials"]]


def coded(result: Any, code: str, exit_code: int = 1) -> dict[str, Any]:
    """A --json refusal: one JSON object on stderr with code, message and hint; nothing on stdout."""
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    error = json.loads(result.stderr)["error"]
    assert error["code"] == code and error["message"] and error["hint"], error
    assert result.stdout == ""
    return error


def test_issue_records_what_it_issued_and_nothing_secret(world: World, tmp_path: Path) -> None:
    record = tmp_path / "rec" / "issued.sqlite3"
    state = create_list(world, "rec-state.json", "/rec/1")
    token, payload = issue(world, record, "--status", "bitstring", "--status-list", state)
    entry = show(record, payload["id"])
    assert entry == {
        "id": payload["id"], "state": "active", "subject": world.agent,
        "types": ["VerifiableCredential", "AgentCredential"], "format": "vc-jose", "issuer": world.issuer,
        "valid_from": payload["validFrom"], "valid_until": payload["validUntil"], "issued_at": entry["issued_at"],
        "status": [payload["credentialStatus"]], "sha256": hashlib.sha256(token.encode()).hexdigest(),
        "key_file": str(world.issuer_key.resolve()), "status_list": str(state.resolve()),
        "revoked_at": None, "revocation": [],
    }
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    with sqlite3.connect(record) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw = b"".join(p.read_bytes() for p in record.parent.iterdir())
    assert b"gpt-4o-secret-model" not in raw  # claims only on request
    key_file = json.loads(world.issuer_key.read_text())
    assert key_file["ciphertext"].encode() not in raw and key_file["encryption"]["salt"].encode() not in raw


def test_record_claims_on_request_and_every_format(world: World, tmp_path: Path) -> None:
    record = tmp_path / "issued.sqlite3"
    _, p1 = issue(world, record, "--record-claims")
    _, p2 = issue(world, record, "--format", "vc-jwt11")
    token, _ = issue(world, record, "--format", "sd-jwt")
    assert show(record, p1["id"])["claims"] == {"models": ["gpt-4o-secret-model"]}
    assert show(record, p2["jti"])["format"] == "vc-jwt11"
    sd = json.loads(ok(run("credentials", "list", "--json", "--record", record)).stdout)["credentials"][-1]
    assert (sd["format"], sd["types"], sd["sha256"]) == ("sd-jwt", ["AgentCredential"],
                                                          hashlib.sha256(token.encode()).hexdigest())


def test_revoke_by_id_then_the_verifier_refuses(world: World, tmp_path: Path) -> None:
    record = tmp_path / "issued.sqlite3"
    state = create_list(world, "rec-revoke.json", "/rec/2")
    _, p1 = issue(world, record, "--status", "bitstring", "--status-list", state, out="rec1.jwt")
    _, p2 = issue(world, record, "--status", "bitstring", "--status-list", state, out="rec2.jwt")
    published = world.publish(state, "/rec/2")
    assert_valid(world, world.work / "rec1.jwt")

    # Key and state file come from the record; only where to publish is new.
    result = ok(run("credentials", "revoke", "--json", "--record", record, "--publish", published, p1["id"]))
    body = json.loads(result.stdout)
    index = int(p1["credentialStatus"]["statusListIndex"])
    assert body["status"] == "revoked" and body["record"] == {"id": p1["id"], "path": str(record)}
    assert body["changes"] == [{"list": world.url("/rec/2"), "purpose": "revocation", "index": index}]

    assert_refused_json(world, world.work / "rec1.jwt", "revoked")
    assert_valid(world, world.work / "rec2.jwt")
    assert listed(record, "--status", "revoked") == [p1["id"]]
    assert listed(record, "--status", "active") == [p2["id"]]
    assert listed(record, "--subject", world.agent) == [p1["id"], p2["id"]]
    shown = show(record, p1["id"])
    assert shown["state"] == "revoked" and shown["revoked_at"] and shown["revocation"] == body["changes"]


def test_vcgate_revoke_by_token_keeps_the_record_in_step(world: World, tmp_path: Path) -> None:
    record = tmp_path / "issued.sqlite3"
    state = create_list(world, "rec-token.json", "/rec/3")
    _, payload = issue(world, record, "--status", "bitstring", "--status-list", state, out="rec3.jwt")
    published = world.publish(state, "/rec/3")
    common = ("--record", record, "--status-list", state, "--key", world.issuer_key, "--publish", published)
    ok(run("revoke", *common, world.work / "rec3.jwt"))
    assert show(record, payload["id"])["state"] == "revoked"
    ok(run("unrevoke", *common, world.work / "rec3.jwt"))
    assert show(record, payload["id"])["state"] == "active"
    assert_valid(world, world.work / "rec3.jwt")


def test_refusals_are_coded_with_a_next_step(world: World, tmp_path: Path) -> None:
    record = tmp_path / "issued.sqlite3"
    _, plain = issue(world, record, "--id", "urn:example:plain")
    assert plain["id"] == "urn:example:plain"

    unknown = coded(run("credentials", "revoke", "--json", "--record", record, "urn:example:nope"), "credential_unknown")
    assert "credentials list" in unknown["hint"]
    coded(run("credentials", "show", "--json", "--record", record, "urn:example:nope"), "credential_unknown")
    no_status = coded(run("credentials", "revoke", "--json", "--record", record, "urn:example:plain"),
                      "credential_not_revocable")
    assert "--status" in no_status["hint"]
    assert show(record, "urn:example:plain")["state"] == "active"
    # The same id twice: refused before anything is signed.
    coded(run("issue", "--json", "--key", world.issuer_key, "--subject", world.agent, "--record", record,
              "--id", "urn:example:plain"), "credential_exists")

    text = run("credentials", "revoke", "--record", record, "urn:example:nope")
    assert text.exit_code == 1 and text.stderr.splitlines()[0].startswith("error: credential_unknown: ")
    assert text.stderr.splitlines()[1].startswith("hint: ")


def test_record_from_the_environment_and_off(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "from-env.sqlite3"
    monkeypatch.setenv("VCGATE_ISSUER_RECORD", str(record))
    ok(run("issue", "--key", world.issuer_key, "--subject", world.agent, "--record", "off"))
    assert not record.exists()
    ok(run("issue", "--key", world.issuer_key, "--subject", world.agent))
    assert len(json.loads(ok(run("credentials", "list", "--json")).stdout)["credentials"]) == 1
    off = run("credentials", "list", "--record", "off")
    assert off.exit_code == 2 and "--record" in off.stderr


def test_shell_completion_offers_recorded_ids(world: World, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    record = tmp_path / "issued.sqlite3"
    issue(world, record, "--id", "urn:example:alpha")
    issue(world, record, "--id", "urn:example:beta")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "VCGATE_ISSUER_RECORD": str(record),
           "_VCGATE_COMPLETE": "bash_complete", "COMP_WORDS": "vcgate credentials revoke urn:example:a", "COMP_CWORD": "3"}
    done = subprocess.run([sys.executable, "-m", "vcgate"], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["plain,urn:example:alpha"], (done.stdout, done.stderr)
