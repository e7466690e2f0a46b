"""Issue 14: each step a newcomer found failing as documented, as a test.

The passphrase variable is in tests/test_passphrase.py, LiteLLM's start-up check in
tests/integration/test_litellm_startup.py, the NGINX 401 body in tests/integration/test_nginx.py;
the rest is here. CLI steps run in-process (click's runner) unless the point is the process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vcgate.cli import cli

REPO = Path(__file__).resolve().parents[1]
ENV = {"VCGATE_PASSPHRASE": None, "VCGATE_KEY_PASSPHRASE": None, "VCGATE_DEBUG": None, "VCGATE_STATUS_LIST": None}
# secp256k1 test key whose Ethereum address is well known (also in tests/test_cli.py).
ETH_HEX = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ETH_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


def run(*args: object, input: str | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=ENV, catch_exceptions=False)


def _py(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def eth_key(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "eth.key"
    made = run("key", "import", "--hex", "-", "--unencrypted", "--out", path, input=ETH_HEX + "\n")
    assert made.exit_code == 0, made.stderr
    return path


# --- 1. the documented example servers start with the documented policy ------------------------


@pytest.mark.parametrize("doc", ["docs/middleware.md", "examples/server_fastapi.py", "examples/server_flask.py"])
def test_the_documented_policy_file_exists(doc):
    text = (REPO / doc).read_text()
    named = [w.split("=", 1)[1] for w in text.split() if w.startswith("VCGATE_POLICY=examples/")]
    assert named, f"{doc} names no example policy"
    for path in named:
        assert (REPO / path).is_file(), f"{doc} names {path}, which does not exist"


@pytest.mark.parametrize("module", ["server_fastapi", "server_flask"])
def test_the_example_servers_build_with_the_documented_policy(module):
    probe = (
        f"import sys; sys.path.insert(0, 'examples'); import {module} as m; "
        "app = m.build(); print(type(app).__name__)"
    )
    done = _py("-c", probe, env={"VCGATE_POLICY": "examples/policy.yaml"})
    assert done.returncode == 0, done.stderr[-2000:]


# --- 4. vcgate serve without the server extra ----------------------------------------------------


def test_serve_without_the_server_extra_names_the_extra():
    # waitress stands for the whole extra: a None entry in sys.modules makes its import fail
    # exactly as it does when the package is not installed.
    code = "import sys; sys.modules['waitress'] = None; from vcgate.cli import main; main()"
    done = _py("-c", code, "serve", "--policy", "examples/policy.yaml")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: extra_missing: vcgate serve needs the server extra")
    assert "pip install 'vcgate[server]'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("doc", ["docs/quickstart.md", "docs/plugins/nginx.md"])
def test_docs_that_run_vcgate_serve_name_the_extra(doc):
    assert "vcgate[server]" in (REPO / doc).read_text()


def test_make_install_is_honest_about_anvil():
    makefile = (REPO / "Makefile").read_text()
    assert "\nchain-tools:\n\tnpm ci --prefix $(CHAIN_TOOLS)" in makefile
    assert "make chain-tools" in (REPO / "docs" / "cli.md").read_text()


# --- 5. status-list publish makes the folders of --out ----------------------------------------------


def test_status_list_publish_creates_the_folder(tmp_path, eth_key):
    state = tmp_path / "status-1.json"
    made = run("status-list", "create", "--url", "https://issuer.example/status/1", "--out", state)
    assert made.exit_code == 0, made.stderr
    out = tmp_path / "www" / "status" / "1"
    done = run("status-list", "publish", "--status-list", state, "--key", eth_key, "--out", out)
    assert done.exit_code == 0, done.stderr
    assert out.read_text().count(".") == 2  # one compact JWS


# --- 6. examples/agent.py: one clear line, no traceback ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def agent_files(tmp_path_factory, eth_key) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("agent")
    did = run("key", "show", "--json", eth_key).stdout
    cred = run("issue", "--key", eth_key, "--subject", json.loads(did)["did"], "--valid-for", "1h")
    assert cred.exit_code == 0, cred.stderr
    (work / "agent.vc.jwt").write_text(cred.stdout)
    return eth_key, work / "agent.vc.jwt"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param("server-down", "error: cannot reach http://127.0.0.1:", id="server-down"),
        pytest.param("no-credential-file", "error: credential", id="missing-credential-file"),
    ],
)
def test_agent_example_fails_with_one_line(case, expected, agent_files):
    key, cred = agent_files
    credential = str(cred) if case == "server-down" else str(cred.parent / "missing.jwt")
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    done = _py("examples/agent.py", "--url", url, "--key", str(key), "--credential", credential, "hi")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith(expected), done.stderr


# --- 7. the smaller ones -----------------------------------------------------------------------------


def test_key_show_prints_the_ethereum_address(eth_key):
    shown = run("key", "show", eth_key)
    assert shown.exit_code == 0, shown.stderr
    assert f"ethereum address  {ETH_ADDRESS}" in " ".join(shown.stdout.split("\n")) or ETH_ADDRESS in shown.stdout
    assert json.loads(run("key", "show", "--json", eth_key).stdout)["ethereum_address"] == ETH_ADDRESS


def test_verify_says_issuer_trust_was_not_checked(agent_files):
    token = agent_files[1].read_text()
    text = run("verify", "-", input=token)
    assert text.exit_code == 0, text.stderr
    assert "issuer trust: not checked" in text.stdout
    assert json.loads(run("verify", "--json", "-", input=token).stdout)["issuer_trust"] == "not checked"


@pytest.mark.parametrize("stdin", [pytest.param("", id="empty"), pytest.param("  \n", id="blank")])
def test_verify_with_nothing_on_stdin_is_a_usage_error(stdin):
    done = run("verify", "-", input=stdin)
    assert done.exit_code == 2, (done.exit_code, done.stderr)
    assert "no token in stdin" in done.stderr


def test_verify_from_dev_null_exits_2():
    with open(os.devnull) as null:
        done = subprocess.run(
            [sys.executable, "-m", "vcgate", "verify"], stdin=null, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
    assert done.returncode == 2, done.stderr


def test_policy_check_json(tmp_path):
    good = run("policy", "check", "--json", REPO / "examples" / "policy.yaml")
    assert good.exit_code == 0
    summary = json.loads(good.stdout)
    assert summary["valid"] is True and summary["audience"] == "https://models.example.com"
    assert [r["name"] for r in summary["rules"]][:3] == ["health", "no-admin", "list-models"]
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("version: 1\naudience: https://a.example\ntrusted_issuers: []\nrules: [{name: x}]\n")
    bad = run("policy", "check", "--json", bad_file)
    assert bad.exit_code == 1
    refusal = json.loads(bad.stdout)
    assert refusal["valid"] is False and refusal["error"] == "policy_invalid"
    assert all(p["line"] for p in refusal["problems"])
