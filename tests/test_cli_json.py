"""`--json` on every command that prints a result, JSON errors, and a next step on every common error.

The first table walks the whole click tree: a command must take ``--json`` unless it is listed
in NO_RESULT (it prints no result), and must have a row in INVOCATIONS whose run prints JSON
that parses -- the result on stdout, or ``{"error": {"code", "message", "hint"}}`` on stderr. A
new command without both fails here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from tests.test_audit import make_log
from vcgate.cli import cli

PASS = "json-table-passphrase"

#: Commands that print no result, and why (they take no --json).
NO_RESULT = {
    "serve": "runs the auth service in the foreground; its answers are HTTP",
    "conformance jose issue": "writes its result to --output, the file the W3C suite reads",
    "conformance jose verify": "writes its result to --output, the file the W3C suite reads",
}


def leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from leaves(cmd, (*path, name))
        else:
            yield " ".join((*path, name)), cmd


COMMANDS = dict(leaves(cli))


def run(*args: Any, env: dict[str, str | None] | None = None) -> Result:
    base = {"VCGATE_PASSPHRASE": PASS, "VCGATE_DEBUG": None, "VCGATE_STATUS_LIST": None, "VCGATE_RPC_URL": None}
    return CliRunner().invoke(cli, [str(a) for a in args], env={**base, **(env or {})}, catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result


@dataclass
class World:
    work: Path
    issuer: str = ""
    agent: str = ""
    cred: Path = Path()
    cred_id: str = ""
    state: Path = Path()
    published: Path = Path()
    policy: Path = Path()
    audit: Path = Path()

    def __getattr__(self, name: str) -> Path:  # world.issuer_key -> work/issuer.key
        if name.endswith("_key"):
            return self.work / f"{name[:-4]}.key"
        raise AttributeError(name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(tmp_path_factory.mktemp("json"))
    record = w.work / "issued.sqlite3"
    w.issuer = ok(run("key", "new", "--unencrypted", "--out", w.issuer_key)).stdout.strip()
    w.agent = ok(run("key", "new", "--alg", "ES256", "--unencrypted", "--out", w.agent_key)).stdout.strip()
    ok(run("key", "new", "--alg", "ES256K", "--unencrypted", "--out", w.eth_key))
    w.state = w.work / "state.json"
    ok(run("status-list", "create", "--url", "https://status.example/lists/1", "--out", w.state))
    issued = json.loads(ok(run("issue", "--json", "--key", w.issuer_key, "--subject", w.agent, "--type",
                               "ModelAccessCredential", "--claims", '{"models": ["m1"]}', "--valid-for", "1d",
                               "--status", "bitstring", "--status-list", w.state, "--record", record)).stdout)
    w.cred, w.cred_id = w.work / "cred.jwt", issued["id"]
    w.cred.write_text(issued["credential"] + "\n")
    w.published = w.work / "www" / "lists" / "1"
    w.policy = w.work / "policy.yaml"
    w.policy.write_text(
        f"version: 1\naudience: https://api.example\ntrusted_issuers:\n  - did: {w.issuer}\nrules:\n"
        "  - name: chat\n    match: {paths: [/v1/**]}\n    require: {types: [ModelAccessCredential]}\n"
        "    grants: {headers: {X-Vcgate-Subject: $subject}}\n")
    w.audit = make_log(w.work / "audit.jsonl")
    return w


def _record(w: World) -> tuple[str, str]:
    return ("--record", str(w.work / "issued.sqlite3"))


# command -> (arguments, expected): "ok" = exit 0 and a JSON result on stdout; "lines" = JSON
# lines on stdout; an error code = a JSON error on stderr with that code.
INVOCATIONS: dict[str, tuple[Callable[[World], list[Any]], str]] = {
    "audit verify": (lambda w: ["audit", "verify", "--json", w.audit], "ok"),
    "audit head": (lambda w: ["audit", "head", "--json", w.audit], "ok"),
    "audit tail": (lambda w: ["audit", "tail", "--json", w.audit], "lines"),
    "chain dev": (lambda w: ["chain", "dev", "--json", "--chain-id", "not-a-number"], "usage_error"),
    "registry deploy": (lambda w: ["registry", "deploy", "--json", "--rpc", "http://127.0.0.1:9", "--eth-key", w.eth_key],
                        "chain_unavailable"),
    "status": (lambda w: ["status", "--json", w.cred], "usage_error"),  # a bitstring entry: nothing on chain
    "status-list create": (lambda w: ["status-list", "create", "--json", "--url", "https://status.example/lists/2",
                                      "--out", w.work / "state2.json"], "ok"),
    "status-list publish": (lambda w: ["status-list", "publish", "--json", "--status-list", w.state, "--key",
                                       w.issuer_key, "--out", w.published], "ok"),
    "status-list show": (lambda w: ["status-list", "show", "--json", w.state], "ok"),
    "issue": (lambda w: ["issue", "--json", "--key", w.issuer_key, "--subject", w.agent, *_record(w)], "ok"),
    "present": (lambda w: ["present", "--json", "--key", w.agent_key, "--aud", "https://api.example", "--nonce", "n1",
                           w.cred], "ok"),
    "verify": (lambda w: ["verify", "--json", "--resolver", "local", "--no-status-lists", w.cred], "ok"),
    "revoke": (lambda w: ["revoke", "--json", "--status-list", w.state, "--key", w.issuer_key, "--publish",
                          w.published, *_record(w), w.cred], "ok"),
    "unrevoke": (lambda w: ["unrevoke", "--json", "--status-list", w.state, "--key", w.issuer_key, "--publish",
                            w.published, *_record(w), w.cred], "ok"),
    "credentials list": (lambda w: ["credentials", "list", "--json", *_record(w)], "ok"),
    "credentials show": (lambda w: ["credentials", "show", "--json", *_record(w), w.cred_id], "ok"),
    "credentials revoke": (lambda w: ["credentials", "revoke", "--json", *_record(w), "--publish", w.published,
                                      w.cred_id], "ok"),
    "delegate": (lambda w: ["delegate", "--json", "--key", w.agent_key, "--credential", w.cred, "--subject",
                            "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", "--valid-for", "10m"], "ok"),
    "did resolve": (lambda w: ["did", "resolve", "--json", "--resolver", "local", w.issuer], "ok"),
    "init": (lambda w: ["init", "--json", w.work / "app"], "ok"),
    "key new": (lambda w: ["key", "new", "--json", "--unencrypted", "--out", w.work / "new.key"], "ok"),
    "key import": (lambda w: ["key", "import", "--json", "--unencrypted", "--hex",
                              "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
                              "--out", w.work / "imported.key"], "ok"),
    "key show": (lambda w: ["key", "show", "--json", w.issuer_key], "ok"),
    "policy check": (lambda w: ["policy", "check", "--json", w.policy], "ok"),
    "policy explain": (lambda w: ["policy", "explain", "--json", "--policy", w.policy, "--credential", w.cred,
                                  "--method", "POST", "--path", "/v1/chat/completions"], "ok"),
    "policy nginx-snippet": (lambda w: ["policy", "nginx-snippet", "--json", w.policy], "ok"),
}


def test_the_table_covers_every_command() -> None:
    missing = sorted(set(COMMANDS) - set(INVOCATIONS) - set(NO_RESULT))
    assert not missing, f"commands without a --json row (add one, or list them in NO_RESULT with why): {missing}"
    assert not set(INVOCATIONS) - set(COMMANDS) and not set(NO_RESULT) - set(COMMANDS), "stale rows"
    assert not set(INVOCATIONS) & set(NO_RESULT)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_json_option_exists_where_a_result_is_printed(name: str) -> None:
    has_json = any("--json" in p.opts for p in COMMANDS[name].params if isinstance(p, click.Option))
    assert has_json == (name not in NO_RESULT), (name, NO_RESULT.get(name, "prints a result: needs --json"))


@pytest.mark.parametrize("name", sorted(INVOCATIONS))
def test_json_output_parses(name: str, world: World) -> None:
    args, expected = INVOCATIONS[name]
    result = run(*args(world))
    assert "Traceback" not in result.output
    if expected == "ok":
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
        assert isinstance(json.loads(result.stdout), (dict, list))
    elif expected == "lines":
        assert result.exit_code == 0 and result.stdout.strip()
        assert all(isinstance(json.loads(line), dict) for line in result.stdout.splitlines())
    else:
        assert result.exit_code == (2 if expected == "usage_error" else 1), (result.stdout, result.stderr)
        assert result.stdout == ""
        error = json.loads(result.stderr)["error"]
        assert error["code"] == expected and error["message"] and error["hint"], error


# --- every common error names what to do next ---------------------------------------------------------


def _write(w: World, name: str, text: str) -> Path:
    path = w.work / name
    path.write_text(text)
    return path


def _expired(w: World) -> list[Any]:
    # `vcgate issue` refuses to sign an already expired credential: sign one with the library.
    from vcgate.credentials import issue_credential
    from vcgate.keys import read_key_file

    jwt = issue_credential(read_key_file(w.issuer_key, passphrase=None), issuer=w.issuer,
                           kid=f"{w.issuer}#{w.issuer.split(':')[2]}", subject=w.agent,
                           valid_from=1_577_836_800.0, valid_until=1_577_840_400.0)
    return ["verify", "--resolver", "local", _write(w, "expired.jwt", jwt)]


def _tampered(w: World) -> list[Any]:
    head, payload, sig = w.cred.read_text().strip().split(".")
    return ["verify", "--resolver", "local", "--no-status-lists",
            _write(w, "tampered.jwt", f"{head}.{payload}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}")]


def _encrypted_key(w: World) -> Path:
    path = w.work / "locked.key"
    if not path.exists():
        ok(run("key", "new", "--out", path))
    return path


STDOUT, STDERR = "stdout", "stderr"

# (arguments, environment, code, exit code, a fragment the hint must contain, where --json puts it)
ERRORS = [
    pytest.param(lambda w: ["issue", "--key", _encrypted_key(w), "--subject", w.agent, "--record", "off"],
                 {"VCGATE_PASSPHRASE": None}, "passphrase_invalid", 1, "VCGATE_PASSPHRASE", STDERR, id="no-passphrase"),
    pytest.param(lambda w: ["issue", "--key", _encrypted_key(w), "--subject", w.agent, "--record", "off"],
                 {"VCGATE_PASSPHRASE": "wrong"}, "passphrase_invalid", 1, "VCGATE_PASSPHRASE", STDERR, id="wrong-passphrase"),
    pytest.param(lambda w: ["issue", "--key", w.work / "nosuch.key", "--subject", w.agent],
                 {}, "usage_error", 2, "vcgate issue --help", STDERR, id="missing-file"),
    pytest.param(lambda w: ["verify", "--resolve", "status.localhost", w.cred],
                 {}, "usage_error", 2, "check --resolve", STDERR, id="bad-resolve"),
    pytest.param(lambda w: ["credentials", "show", *_record(w), "urn:example:nope"],
                 {}, "credential_unknown", 1, "credentials list", STDERR, id="unknown-credential"),
    pytest.param(lambda w: ["issue", "--key", w.issuer_key, "--subject", w.agent, "--record",
                            _write(w, "a-file", "x") / "issued.sqlite3"],
                 {}, "record_unavailable", 1, "VCGATE_ISSUER_RECORD", STDERR, id="record-unwritable"),
    pytest.param(_expired, {}, "expired", 1, "new credential", STDOUT, id="expired"),
    pytest.param(_tampered, {}, "signature_invalid", 1, "fresh copy", STDOUT, id="tampered"),
    pytest.param(lambda w: ["verify", "--resolver", "local", w.cred], {}, "status_unavailable", 1, "--allow-network",
                 STDOUT, id="status-list-unreachable"),
    pytest.param(lambda w: ["policy", "explain", "--policy", w.policy, "--credential", _tampered(w)[-1], "--method",
                            "POST", "--path", "/v1/chat/completions"], {}, "signature_invalid", 1, "fresh copy",
                 STDERR, id="explain-tampered"),
    pytest.param(lambda w: ["policy", "check", _write(w, "bad-policy.yaml", "version: 1\nrules: 3\n")],
                 {}, "policy_invalid", 1, "vcgate policy check", STDOUT, id="policy-invalid"),
    pytest.param(lambda w: ["registry", "deploy", "--rpc", "http://127.0.0.1:9", "--eth-key", w.eth_key],
                 {}, "chain_unavailable", 1, "vcgate chain dev", STDERR, id="no-chain-node"),
    pytest.param(lambda w: ["audit", "head", _write(w, "bad.jsonl", w.audit.read_text().replace('"POST"', '"GET"', 1))],
                 {}, "audit_tampered", 1, "evidence", STDERR, id="audit-tampered"),
]


@pytest.mark.parametrize(("args", "env", "code", "exit_code", "fragment", "where"), ERRORS)
def test_common_errors_name_the_next_step(world: World, args, env, code: str, exit_code: int, fragment: str,
                                          where: str) -> None:
    argv = args(world)
    text = run(*argv, env=env)
    assert text.exit_code == exit_code, (text.stdout, text.stderr)
    if code != "usage_error":  # click's own usage text ends in "Try 'vcgate ... -h' for help."
        lines = text.stderr.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith(f"error: {code}: "))
        hints = [line for line in lines[at + 1:] if line.startswith("hint: ")]
        assert len(hints) == 1 and fragment in hints[0], lines
    # The same error with --json: one object on stderr, nothing on stdout, the same exit code.
    result = run(*argv, "--json", env=env)
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    if where == STDOUT:  # verify --json and policy check --json answer a refusal on stdout (documented)
        body = json.loads(result.stdout)
        assert (body["valid"], body["error"]) == (False, code) and fragment in body["hint"]
        return
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["code"] == code and fragment in error["hint"], error


def test_extra_missing_names_the_pip_extra(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # A missing optional dependency cannot be shown by the real part here (it is installed):
    # make its import fail, as it does without the extra.
    monkeypatch.setitem(sys.modules, "waitress", None)
    result = run("serve", "--policy", world.policy)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith("error: extra_missing: ")
    assert result.stderr.splitlines()[1] == "hint: pip install 'vcgate[server]'"


def test_internal_errors_are_json_too(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from vcgate.cli import main
    from vcgate.cli import key as key_module

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(key_module, "read_key_header", boom)
    monkeypatch.delenv("VCGATE_DEBUG", raising=False)
    with pytest.raises(SystemExit) as done:
        main(["key", "show", "--json", __file__])
    assert done.value.code == 1
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["code"] == "internal_error" and "VCGATE_DEBUG" in error["hint"]
