"""`vcgate init` (issue 14): the files it writes, and its three printed commands run as printed
give a protected FastAPI app that the OpenAI SDK agent calls."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from vcgate.cli import cli
from vcgate.keys import read_key_file, read_key_header

REPO = Path(__file__).resolve().parents[1]
PW = "init passphrase"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(*args: object, env=None):
    return CliRunner().invoke(cli, ["init", *map(str, args)], env=env or {"VCGATE_PASSPHRASE": PW},
                              catch_exceptions=False)


def test_the_three_printed_commands_run_a_protected_app(tmp_path):
    port = _free_port()
    made = _init(tmp_path / "app", "--port", port)
    assert made.exit_code == 0, made.stderr
    commands = [line.strip() for line in made.stdout.splitlines() if line.startswith("  ")]
    assert commands == [f"cd {tmp_path / 'app'}", f"uvicorn app:app --port {port} &", 'python agent.py "Say hello"']
    # Exactly those commands, in one shell; the agent waits for nothing but the app's port.
    wait = f"curl -sf --retry 60 --retry-delay 1 --retry-connrefused http://127.0.0.1:{port}/healthz > /dev/null"
    script = "\n".join([commands[0], commands[1], wait, commands[2]])
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCGATE_")}
    env.update(VCGATE_PASSPHRASE=PW, PYTHONPATH=str(REPO / "src"),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]), NO_PROXY="127.0.0.1")
    log = tmp_path / "run.log"
    with open(log, "wb") as sink:  # a file, not a pipe: the background app keeps its end open
        proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=120)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the app the second command left running
            proc.wait()
    out = log.read_text()
    assert proc.returncode == 0, out
    agent_did = json.loads(CliRunner().invoke(cli, ["key", "show", "--json", str(tmp_path / "app" / "agent.key")]).stdout)["did"]
    assert f"hello {agent_did}, you said: Say hello" in out, out  # the grant header reached the app


def test_the_files(tmp_path):
    made = _init(tmp_path, "--json")
    assert made.exit_code == 0, made.stderr
    summary = json.loads(made.stdout)
    policy = yaml.safe_load((tmp_path / "policy.yaml").read_text())
    assert policy["audience"] == summary["audience"] == "http://127.0.0.1:8000"
    assert policy["trusted_issuers"][0]["did"] == summary["dids"]["issuer"]
    for name in ("issuer", "gateway", "agent"):
        assert read_key_header(tmp_path / f"{name}.key")["encryption"] is not None  # never written in clear
        read_key_file(tmp_path / f"{name}.key", passphrase=PW)  # one passphrase for the three
    checked = CliRunner().invoke(cli, ["policy", "explain", "--policy", str(tmp_path / "policy.yaml"),
                                       "--credential", str(tmp_path / "agent.vc.jwt"), "--method", "POST",
                                       "--path", "/v1/chat/completions", "--model", "llama-3-70b"],
                                 env={"VCGATE_PASSPHRASE": PW})
    assert checked.exit_code == 0 and "decision: allow" in checked.stdout, checked.stdout
    assert "envoy.filters.http.ext_authz" in (tmp_path / "envoy.yaml").read_text()
    yaml.safe_load((tmp_path / "envoy.yaml").read_text())
    assert "auth_request /_vcgate_auth;" in (tmp_path / "nginx.conf").read_text()


@pytest.mark.parametrize(
    ("env", "code", "fragment"),
    [
        pytest.param({"VCGATE_PASSPHRASE": PW}, 2, "already has", id="files-exist"),
        pytest.param({"VCGATE_PASSPHRASE": None}, 1, "VCGATE_PASSPHRASE", id="no-passphrase"),
    ],
)
def test_refusals(tmp_path, env, code, fragment):
    if fragment == "already has":
        (tmp_path / "policy.yaml").write_text("mine\n")
    result = _init(tmp_path, env=env)
    assert result.exit_code == code, result.output
    assert fragment in result.stderr
    if fragment == "already has":
        assert (tmp_path / "policy.yaml").read_text() == "mine\n"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_documented_shell_completion(shell):
    assert f"{shell}_source" in (REPO / "docs" / "cli.md").read_text()
    done = subprocess.run([sys.executable, "-c", "from vcgate.cli import main; main()"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src"), "_VCGATE_COMPLETE": f"{shell}_source"},
                          timeout=60)
    assert done.returncode == 0 and "_VCGATE_COMPLETE" in done.stdout, done.stderr
