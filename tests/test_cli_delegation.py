"""``vcgate delegate``, ``vcgate present`` with a chain, and ``vcgate policy explain --presentation``.

Real key files and did:key identities: an issuer issues a root credential to a user, who
delegates to an agent, who delegates to a sub-agent; the sub-agent presents the chain and the
policy explains how it decides, hop by hop.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from vcgate.cli import cli
from vcgate.credentials import Verifier

ENV: dict[str, str | None] = {"VCGATE_PASSPHRASE": None, "VCGATE_DEBUG": None, "VCGATE_STATUS_LIST": None}
AUD = "https://models.example.com"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=dict(ENV), catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("delegation")
    parties = {}
    for name in ("issuer", "user", "agent", "sub"):
        path = d / f"{name}.key"
        did = ok(run("key", "new", "--alg", "EdDSA", "--unencrypted", "--out", str(path))).strip()
        parties[name] = (path, did)
    root = d / "root.jwt"
    root.write_text(ok(run(
        "issue", "--key", str(parties["issuer"][0]), "--subject", parties["user"][1], "--type", "ModelAccessCredential",
        "--claims", json.dumps({"models": ["llama-3-70b", "gpt-4o"], "limits": {"rpm": 100}}), "--valid-for", "30d",
        "--max-delegation-depth", "2",
    )))
    policy = d / "policy.yaml"
    policy.write_text(f"""version: 1
audience: {AUD}
trusted_issuers:
  - did: {parties['issuer'][1]}
delegation: {{max_depth: 2, types: [ModelAccessCredential]}}
rules:
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
      status: off
    grants:
      headers:
        X-Vcgate-Actors: $actors
""")
    return {"dir": d, "parties": parties, "root": root, "policy": policy}


def _chain(world: dict[str, object]) -> tuple[Path, Path]:
    d: Path = world["dir"]  # type: ignore[assignment]
    p = world["parties"]  # type: ignore[assignment]
    agent_chain = d / "agent.chain"
    agent_chain.write_text(ok(run(
        "delegate", "--key", str(p["user"][0]), "--credential", str(world["root"]), "--subject", p["agent"][1],
        "--claims", '{"models": ["llama-3-70b"]}', "--chain",
    )))
    sub_link = d / "sub.jwt"
    sub_link.write_text(ok(run(
        "delegate", "--key", str(p["agent"][0]), "--credential", str(agent_chain), "--subject", p["sub"][1],
        "--claims", '{"limits": {"rpm": 10}}', "--valid-for", "15m",
    )))
    return agent_chain, sub_link


def test_delegate_present_and_explain(world: dict[str, object]) -> None:
    p = world["parties"]  # type: ignore[assignment]
    agent_chain, sub_link = _chain(world)
    assert len(agent_chain.read_text().split()) == 2  # --chain: root first, then the new link
    link = Verifier().verify_credential(sub_link.read_text().strip())
    assert link.issuer == p["agent"][1] and link.subject == p["sub"][1]
    assert link.valid_until is not None and link.valid_from is not None
    assert link.valid_until - link.valid_from == 15 * 60

    # Given in any order, the chain is presented root first, without a holder warning.
    result = run("present", "--key", str(p["sub"][0]), "--aud", AUD, "--nonce", "n1", str(sub_link), str(agent_chain))
    vp = ok(result).strip()
    assert "warning" not in result.stderr
    pres = Verifier().verify_presentation(vp, audience=AUD, nonce="n1", holder_binding=True)
    assert [c.subject for c in pres.credentials] == [p["user"][1], p["agent"][1], p["sub"][1]]

    vp_file = world["dir"] / "vp.jwt"  # type: ignore[operator]
    vp_file.write_text(vp)
    args = ["policy", "explain", "--policy", str(world["policy"]), "--presentation", str(vp_file),
            "--method", "POST", "--path", "/v1/chat/completions"]
    text = ok(run(*args, "--model", "llama-3-70b"))
    assert "decision: allow" in text
    assert f"chain: 2 links, principal {p['user'][1]}" in text
    assert "hop 0: ModelAccessCredential from" in text and ": holds (root)" in text
    assert "hop 1: " in text and "holds (restates models)" in text
    assert "holds (restates limits)" in text
    assert '"rpm":10' in text  # the effective claims

    refused = run(*args, "--model", "gpt-4o")  # the agent passed on llama-3-70b only
    assert refused.exit_code == 1
    assert "decision: deny (claim_mismatch)" in refused.stdout

    as_json = json.loads(ok(run(*args, "--model", "llama-3-70b", "--json")))
    assert as_json["actors"] == [p["agent"][1], p["sub"][1]]
    assert [h["holds"] for h in as_json["chains"][0]["hops"]] == [True, True, True]


def test_delegate_refuses_to_widen(world: dict[str, object]) -> None:
    p = world["parties"]  # type: ignore[assignment]
    result = run("delegate", "--key", str(p["user"][0]), "--credential", str(world["root"]), "--subject", p["agent"][1],
                 "--claims", '{"models": ["gpt-5"]}')
    assert result.exit_code == 1
    assert "error: delegation_list_widened: hop 1" in result.stderr
    result = run("delegate", "--key", str(p["agent"][0]), "--credential", str(world["root"]), "--subject", p["sub"][1])
    assert result.exit_code == 1
    assert "error: delegation_issuer_mismatch" in result.stderr


def test_explain_names_the_failing_hop(world: dict[str, object]) -> None:
    p = world["parties"]  # type: ignore[assignment]
    d: Path = world["dir"]  # type: ignore[assignment]
    agent_chain, sub_link = _chain(world)
    shallow = d / "shallow.yaml"
    shallow.write_text(world["policy"].read_text().replace("max_depth: 2", "max_depth: 1"))  # type: ignore[attr-defined]
    vp = ok(run("present", "--key", str(p["sub"][0]), "--aud", AUD, "--nonce", "n", str(agent_chain), str(sub_link)))
    args = ["policy", "explain", "--presentation", vp.strip(), "--method", "POST", "--path", "/v1/chat/completions",
            "--model", "llama-3-70b"]
    result = run(*args, "--policy", str(shallow))
    assert result.exit_code == 1
    assert "decision: deny (delegation_depth_exceeded)" in result.stdout
    assert "hop 2: the chain has 2 links" in result.stdout

    # The agent's link left out: the sub-agent's link has no parent to hold on to.
    root = str(world["root"])
    vp = ok(run("present", "--key", str(p["sub"][0]), "--aud", AUD, "--nonce", "n", root, str(sub_link)))
    result = run(*args[:3], vp.strip(), *args[4:], "--policy", str(world["policy"]))
    assert result.exit_code == 1
    assert "chain: does not hold (delegation_parent_missing)" in result.stdout
    assert "fails: delegation_parent_missing" in result.stdout

    # Presented by the agent, not the sub-agent it was delegated to.
    vp = ok(run("present", "--key", str(p["agent"][0]), "--aud", AUD, "--nonce", "n", str(agent_chain), str(sub_link)))
    result = run(*args[:3], vp.strip(), *args[4:], "--policy", str(world["policy"]))
    assert result.exit_code == 1 and "decision: deny (delegation_holder_mismatch)" in result.stdout


def test_policy_check_shows_delegation(world: dict[str, object]) -> None:
    text = ok(run("policy", "check", str(world["policy"])))
    assert "delegation: allowed, at most 2 links, roots of ModelAccessCredential" in text
    loose = world["dir"] / "loose.yaml"  # type: ignore[operator]
    loose.write_text(world["policy"].read_text().replace("      status: off", "      status: off\n      holder_binding: false"))  # type: ignore[attr-defined]
    assert "accepts delegation chains without holder binding" in ok(run("policy", "check", str(loose)))


def test_explain_needs_one_input(world: dict[str, object]) -> None:
    result = run("policy", "explain", "--policy", str(world["policy"]), "--method", "GET", "--path", "/")
    assert result.exit_code == 2 and "exactly one of --credential and --presentation" in result.stderr
