"""`vcgate policy check` and `vcgate policy explain` through the real command group."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner

from tests.support import make_party
from vcgate.cli import cli
from vcgate.credentials import issue_credential

POLICY = """\
version: 1
audience: https://models.example.com
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
rules:
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      status: "off"
      claims:
        models: {{contains: $model}}
"""


def test_check_and_explain(tmp_path: Path):
    issuer, agent = make_party(), make_party()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(issuer=issuer.did))
    runner = CliRunner()
    ok = runner.invoke(cli, ["policy", "check", str(policy)])
    assert ok.exit_code == 0 and ": ok (version 1, 1 rule" in ok.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.format(issuer=issuer.did).replace("require:", "requir:"))
    refused = runner.invoke(cli, ["policy", "check", str(bad)])
    assert refused.exit_code == 1
    assert "error: policy_invalid" in refused.stderr and "bad.yaml:9:" in refused.stderr and "requir" in refused.stderr

    now = time.time()
    vc = issue_credential(
        issuer.key, issuer=issuer.did, kid=issuer.kid, subject=agent.did, types=["ModelAccessCredential"],
        claims={"models": ["llama-3"]}, valid_from=now - 10, valid_until=now + 3600,
    )
    cred = tmp_path / "vc.jwt"
    cred.write_text(vc)
    base = ["policy", "explain", "--policy", str(policy), "--credential", str(cred), "--method", "POST",
            "--path", "/v1/chat/completions"]
    allowed = runner.invoke(cli, [*base, "--model", "llama-3"])
    assert allowed.exit_code == 0 and "chat" in allowed.stdout, allowed.output
    denied = runner.invoke(cli, [*base, "--model", "gpt-4o"])
    assert denied.exit_code == 1 and "claim_mismatch" in denied.output
    no_body = runner.invoke(cli, [*base, "--no-body"])
    assert no_body.exit_code == 1 and "body_required" in no_body.output
