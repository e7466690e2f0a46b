"""`policy check` and `policy explain` bodies, with real signed credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import NOW, Party, make_party
from vcgate.credentials import FORMAT_VC_JWT11, issue_credential
from vcgate.cli.policy_report import check, explain


def policy_text(issuer: Party) -> str:
    return f"""version: 1
audience: https://gw.example
trusted_issuers:
  - did: {issuer.did}
    types: [ModelAccessCredential]
rules:
  - name: health
    match: {{methods: [GET], paths: [/healthz]}}
    public: true
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
        tier: {{one_of: [gold, silver]}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
        X-Vcgate-Tier: $claims.tier
      scopes: [chat]
"""


@pytest.fixture
def policy_file(tmp_path: Path, issuer: Party) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(issuer))
    return path


def token(issuer: Party, holder: Party, **kw) -> str:
    args = dict(
        issuer=issuer.did,
        kid=issuer.kid,
        subject=holder.did,
        types=["ModelAccessCredential"],
        claims={"models": ["gpt-4o", "llama-3"], "tier": "gold"},
        valid_from=NOW - 3600,
        valid_until=NOW + 86400,
    )
    args.update(kw)
    return issue_credential(issuer.key, **args)


def run(policy_file: Path, tok: str, model: str | None = "gpt-4o", **kw):
    kw.setdefault("now", NOW)
    return explain(policy_file, tok, "POST", "/v1/chat/completions", model, None, **kw)


# --- check ----------------------------------------------------------------------------------------


def test_check_ok(policy_file):
    code, text = check(policy_file)
    assert code == 0
    assert text.startswith(f"{policy_file}: ok (version 1, 2 rules, 1 trusted issuer)")
    assert "1. health: allow (public) for GET /healthz" in text
    assert "2. chat: allow with ModelAccessCredential + claims models, tier" in text
    assert "[needs body]" in text and "note: chat depends on the request body" in text


def test_check_reports_every_problem_with_line(tmp_path, issuer):
    path = tmp_path / "bad.yaml"
    path.write_text(policy_text(issuer).replace("require:", "requir:").replace("methods: [GET]", "methods: GET"))
    code, text = check(path)
    assert code == 1
    lines = text.splitlines()
    assert all(line.startswith(f"error: policy_invalid: {path}:") for line in lines)
    assert any(":8:22:" in line and "methods" in line for line in lines)
    assert any(":12:5:" in line and "did you mean 'require'" in line for line in lines)


def test_check_missing_file(tmp_path):
    code, text = check(tmp_path / "nope.yaml")
    assert code == 1 and "cannot read the policy file" in text


def test_check_warns_about_unreachable_rules(tmp_path, issuer):
    path = tmp_path / "p.yaml"
    path.write_text(
        policy_text(issuer).replace(
            "rules:\n", "rules:\n  - name: everything\n    match: {paths: ['/**']}\n    allow: false\n"
        )
    )
    code, text = check(path)
    assert code == 0
    assert "warning: rule 'health' is never reached: rule 'everything'" in text
    assert "warning: rule 'chat' is never reached" in text


# --- explain ---------------------------------------------------------------------------------------


def test_explain_allow(policy_file, issuer, holder):
    code, text = run(policy_file, token(issuer, holder))
    assert code == 0, text
    assert "decision: allow, HTTP 200" in text
    assert "rule: chat" in text
    assert f"credential: ModelAccessCredential issued by {issuer.did} to {holder.did}" in text
    assert f"X-Vcgate-Subject: {holder.did}" in text
    assert "X-Vcgate-Tier: gold" in text and "scopes: chat" in text
    assert "assumed: presented by its subject" in text


def test_explain_deny_lists_every_reason(policy_file, issuer, holder):
    tok = token(issuer, holder, claims={"models": ["llama-3"], "tier": "bronze"})
    code, text = run(policy_file, tok)
    assert code == 1
    assert "decision: deny (claim_mismatch), HTTP 403" in text
    assert "rule: chat" in text
    assert "claim 'tier' is 'bronze'" in text
    assert "claim 'models' does not contain 'gpt-4o'" in text


def test_explain_vcdm11_credential(policy_file, issuer, holder):
    code, text = run(policy_file, token(issuer, holder, format=FORMAT_VC_JWT11))
    assert code == 0, text


def test_explain_untrusted_issuer(policy_file, holder):
    stranger = make_party()
    code, text = run(policy_file, token(stranger, holder))
    assert code == 1 and "deny (issuer_not_trusted)" in text


def test_explain_other_holder(policy_file, issuer, holder):
    code, text = run(policy_file, token(issuer, holder), holder=make_party().did)
    assert code == 1 and "deny (holder_mismatch), HTTP 401" in text


def test_explain_status_is_assumed(policy_file, issuer, holder):
    status = {"type": "BitstringStatusListEntry", "statusPurpose": "revocation", "statusListIndex": "3",
              "statusListCredential": "https://issuer.example/status/1"}
    tok = token(issuer, holder, status=status)
    code, text = run(policy_file, tok)
    assert code == 0 and "assumed: status ok (status is not checked by explain)" in text
    code, text = run(policy_file, tok, assume_status="revoked")
    assert code == 1 and "deny (revoked), HTTP 401" in text
    code, text = run(policy_file, tok, assume_status="maybe")
    assert code == 1 and text.startswith("error: usage: unknown status outcome")


def test_explain_without_body(policy_file, issuer, holder):
    code, text = run(policy_file, token(issuer, holder), model=None, body_available=False)
    assert code == 1 and "deny (body_required)" in text and "(body not seen)" in text


def test_explain_json(policy_file, issuer, holder):
    code, text = run(policy_file, token(issuer, holder), as_json=True)
    body = json.loads(text)
    assert code == 0 and body["allow"] is True and body["rule"] == "chat"
    assert body["grants"]["scopes"] == ["chat"]
    assert body["assumed"]


@pytest.mark.parametrize(
    "mutate, code_text",
    [
        pytest.param(lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"), "error: signature_invalid", id="bad-signature"),
        pytest.param(lambda t: "not-a-jwt", "error: malformed", id="not-a-jwt"),
    ],
)
def test_explain_refuses_unverifiable_credential(policy_file, issuer, holder, mutate, code_text):
    code, text = run(policy_file, mutate(token(issuer, holder)))
    assert code == 1 and text.startswith(code_text), text


def test_explain_expired_credential(policy_file, issuer, holder):
    tok = token(issuer, holder, valid_until=NOW - 3600, valid_from=NOW - 7200)
    code, text = run(policy_file, tok)
    assert code == 1 and text.startswith("error: expired")


def test_explain_invalid_policy(tmp_path, issuer, holder):
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\n")
    code, text = run(path, token(issuer, holder))
    assert code == 1 and text.startswith(f"error: policy_invalid: {path}:1:1: missing required key 'audience'")
