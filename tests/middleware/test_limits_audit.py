"""Limits in the audit log: each metered decision records what it reserved per limit, and the
usage settled after the answer is a record of its own (docs/limits.md)."""

from __future__ import annotations

import json

import pytest

from tests.middleware.helpers import make_world, policy_text
from tests.middleware.test_middleware import AUD, BODY, CHAT, Client
from tests.support import make_party
from vcgate.audit import AuditLog, read_records
from vcgate.gate import Gate
from vcgate.policy import Policy

LIMITS = "limits:\n  - {name: tokens, key: $subject, tokens: 100000, per: 1d, reserve: 64}\n"


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_reserved_and_used_are_audited(kind, tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, fsync=False)
    w = make_world(AUD)
    gate = Gate(policy=Policy.from_yaml(policy_text(AUD, w.issuer.did) + LIMITS), verifier=w.gate.verifier,
                status=w.gate.status, clock=w.clock, audit=log, gateway_key=make_party().key)
    c = Client(kind, gate)
    nonce = c.request("GET", "/v1/models")[2]["nonce"]
    status, _, body = c.request("POST", CHAT, content=BODY, headers={
        "authorization": f"VP {w.presentation(nonce)}", "content-type": "application/json"})
    assert status == 200, body
    # The upstream got the output cap the reservation counts on.
    assert json.loads(body["body"])["max_tokens"] == 64
    log.close()
    records = [r for r in read_records(path) if r.get("kind") == "decision"]
    allowed = [r for r in records if r.get("outcome") == "allow"]
    assert allowed[-1]["reserved"] == {"tokens": len(BODY) + 64}
    used = [r for r in records if r.get("outcome") == "usage"]
    # The echo upstream reports no usage: the call stays charged what it reserved.
    assert used == [{**used[0], "usage": {"tokens": len(BODY) + 64}, "subject": w.holder.did, "rule": "chat"}]
