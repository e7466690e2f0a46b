"""The issuer's revocation story through the CLI, against a real anvil started by `vcgate chain dev`.

chain dev -> registry deploy -> issue --status onchain -> verify --rpc (valid) -> revoke ->
verify (revoked) -> status (exit 1) -> unrevoke -> valid again; whole-list revocation; a
stranger's revoke refused by the contract.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import require_real

pytestmark = pytest.mark.integration

PASS = "integration-test-passphrase"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dev_chain(tmp_path_factory):
    try:
        from vcgate.chain import find_anvil
    except ModuleNotFoundError:
        require_real("the chain extra", "pip install -e '.[chain]' (make test installs it)")
    if find_anvil() is None:
        require_real("anvil", "npm ci --prefix tools/chain (make test installs it)")
    work = tmp_path_factory.mktemp("chain")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcgate", "chain", "dev", "--port", str(port),
         "--state", str(work / "state.json"), "--key-out", str(work / "dev.key")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith("dev key file:"):
            break
    else:  # pragma: no cover - diagnostics
        proc.kill()
    if not any(line.startswith("rpc: ") for line in lines):
        proc.kill()
        pytest.fail(f"vcgate chain dev did not start: {lines} {proc.stderr.read()[-500:]}")
    rpc = next(line[5:] for line in lines if line.startswith("rpc: "))
    yield {"rpc": rpc, "dev_key": work / "dev.key", "dir": work}
    proc.terminate()
    proc.wait(timeout=20)
    assert (work / "state.json").exists(), "chain dev saves its state on exit"


def run(runner: CliRunner, *args: str, env: dict[str, str] | None = None):
    from vcgate.cli import cli

    return runner.invoke(cli, list(args), env={"VCGATE_PASSPHRASE": PASS, **(env or {})}, catch_exceptions=False)


@pytest.fixture(scope="module")
def setup(dev_chain, tmp_path_factory):
    runner = CliRunner()
    work = tmp_path_factory.mktemp("cli")
    env = {"VCGATE_RPC_URL": dev_chain["rpc"], "VCGATE_ETH_KEY": str(dev_chain["dev_key"])}
    deployed = run(runner, "registry", "deploy", env=env)
    assert deployed.exit_code == 0, deployed.output
    registry = deployed.stdout.strip().splitlines()[-1]
    assert registry.startswith("0x") and len(registry) == 42
    env["VCGATE_REGISTRY"] = registry
    # The issuer signs with Ed25519; its Ethereum namespace is the (funded) dev account's key.
    issuer = run(runner, "key", "new", "--alg", "EdDSA", "--out", str(work / "issuer.key"))
    agent = run(runner, "key", "new", "--alg", "ES256", "--out", str(work / "agent.key"))
    assert issuer.exit_code == 0 and agent.exit_code == 0
    return {"runner": runner, "env": env, "work": work, "registry": registry, "agent": agent.stdout.strip()}


def issue(setup, *extra: str) -> Path:
    out = run(
        setup["runner"], "issue", "--key", str(setup["work"] / "issuer.key"), "--subject", setup["agent"],
        "--type", "ModelAccessCredential", "--claims", '{"models": ["llama-3"]}', "--valid-for", "1d",
        "--status", "onchain", *extra, env=setup["env"],
    )
    assert out.exit_code == 0, out.output
    path = setup["work"] / f"cred-{time.monotonic_ns()}.jwt"
    path.write_text(out.stdout.strip())
    return path


def test_issue_embeds_the_registry_entry(setup):
    cred = issue(setup)
    from vcgate.credentials.jws import parse_jws

    entry = parse_jws(cred.read_text(), algorithms=["EdDSA"]).payload["credentialStatus"]
    assert entry["type"] == "EthrRevocationRegistry2022"
    assert entry["registry"] == setup["registry"] and entry["chainId"] == 31337
    assert entry["namespace"] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # the dev account
    assert len(entry["revocationKey"]) == 66
    assert issue(setup).read_text() != cred.read_text()


def test_revoke_unrevoke_round_trip(setup):
    runner, env = setup["runner"], setup["env"]
    cred = str(issue(setup))
    ok = run(runner, "verify", "--json", cred, env=env)
    assert ok.exit_code == 0 and json.loads(ok.stdout)["valid"] is True

    revoked = run(runner, "revoke", cred, env=env)
    assert revoked.exit_code == 0 and revoked.stdout.startswith("revoked key"), revoked.output

    refused = run(runner, "verify", "--json", cred, env=env)
    assert refused.exit_code == 1 and json.loads(refused.stdout)["error"] == "revoked"
    state = run(runner, "status", cred, env=env)
    assert state.exit_code == 1 and "error: revoked" in state.stderr
    assert state.stdout.startswith("revoked at block")

    assert run(runner, "unrevoke", cred, env=env).exit_code == 0
    again = run(runner, "verify", "--json", cred, env=env)
    assert again.exit_code == 0, again.output
    status_json = run(runner, "status", "--json", cred, env=env)
    assert status_json.exit_code == 0 and json.loads(status_json.stdout)["state"] == "active"


def test_credentials_revoke_by_id_on_chain(setup, tmp_path):
    """The issuer's record drives the same on-chain revocation: `credentials revoke ID`."""
    runner, env = setup["runner"], setup["env"]
    record = str(tmp_path / "issued.sqlite3")
    cred = str(issue(setup, "--record", record))
    from vcgate.credentials.jws import parse_jws

    cid = parse_jws(Path(cred).read_text(), algorithms=["EdDSA"]).payload["id"]
    out = run(runner, "credentials", "revoke", "--json", "--record", record, cid, env=env)
    assert out.exit_code == 0, out.output
    change = json.loads(out.stdout)["changes"][0]
    assert change["registry"] == setup["registry"] and change["block"] > 0
    refused = run(runner, "verify", "--json", cred, env=env)
    assert refused.exit_code == 1 and json.loads(refused.stdout)["error"] == "revoked"
    shown = run(runner, "credentials", "show", "--json", "--record", record, cid, env=env)
    assert json.loads(shown.stdout)["state"] == "revoked"


def test_chain_dev_json_line(tmp_path):
    """`chain dev --json` prints one JSON line once the chain answers, then runs until stopped."""
    from vcgate.chain import find_anvil

    if find_anvil() is None:
        require_real("anvil", "npm ci --prefix tools/chain (make test installs it)")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcgate", "chain", "dev", "--json", "--port", str(port), "--state",
         str(tmp_path / "state.json"), "--key-out", str(tmp_path / "dev.key")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert json.loads(line) == {"rpc": f"http://127.0.0.1:{port}", "chainId": 31337,
                                    "account": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
                                    "keyFile": str(tmp_path / "dev.key"), "state": str(tmp_path / "state.json")}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_verify_without_rpc_warns_that_status_was_not_checked(setup):
    cred = str(issue(setup))
    out = run(setup["runner"], "verify", cred, env={"VCGATE_RPC_URL": ""})
    assert out.exit_code == 0
    assert "EthrRevocationRegistry2022 was not checked" in out.stderr


def test_whole_list_revocation(setup):
    runner, env = setup["runner"], setup["env"]
    cred = str(issue(setup, "--revocation-list", "batch-7"))
    other = str(issue(setup, "--revocation-list", "batch-8"))
    assert run(runner, "revoke", "--list", "batch-7", env=env).exit_code == 0
    listed = run(runner, "status", "--json", cred, env=env)
    assert listed.exit_code == 1 and json.loads(listed.stdout)["listRevoked"] is True
    assert run(runner, "verify", "--json", other, env=env).exit_code == 0
    assert run(runner, "unrevoke", "--list", "batch-7", env=env).exit_code == 0
    assert run(runner, "verify", cred, env=env).exit_code == 0


def test_a_stranger_cannot_revoke(setup):
    runner, env = setup["runner"], setup["env"]
    cred = str(issue(setup))
    stranger = setup["work"] / "stranger.key"
    assert run(runner, "key", "new", "--alg", "ES256K", "--out", str(stranger)).exit_code == 0
    out = run(runner, "revoke", "--eth-key", str(stranger), cred, env=env)
    assert out.exit_code == 1
    # Simulated before sending: the contract's own refusal, and nothing paid.
    assert "error: registry_not_authorized" in out.stderr or "error: transaction_failed" in out.stderr, out.stderr
    assert run(runner, "verify", cred, env=env).exit_code == 0


def test_usage_errors_are_clear(setup):
    runner, env = setup["runner"], setup["env"]
    no_registry = run(runner, "issue", "--key", str(setup["work"] / "issuer.key"), "--subject", setup["agent"],
                      "--status", "onchain", env={**env, "VCGATE_REGISTRY": ""})
    assert no_registry.exit_code == 2 and "--registry" in no_registry.stderr
    ed_no_eth = run(runner, "issue", "--key", str(setup["work"] / "issuer.key"), "--subject", setup["agent"],
                    "--status", "onchain", env={**env, "VCGATE_ETH_KEY": ""})
    assert ed_no_eth.exit_code == 2 and "--eth-key" in ed_no_eth.stderr
    embedded = run(runner, "registry", "deploy", "--rpc", "embedded", env=env)
    assert embedded.exit_code == 2 and "vcgate chain dev" in embedded.stderr
    bad_list = run(runner, "revoke", "--list", "0x1234", env=env)
    assert bad_list.exit_code == 2
    both = run(runner, "revoke", env=env)
    assert both.exit_code == 2 and "CREDENTIAL" in both.stderr


def test_done_when_cli_revoke_seen_by_a_running_mirror_within_a_second(setup, dev_chain):
    """The issue's "done when": issued with an on-chain status, accepted, revoked with the CLI,
    refused by the mirror within a second, accepted again after unrevoke."""
    from vcgate.chain import connect
    from vcgate.credentials import Verifier
    from vcgate.errors import RevokedError
    from vcgate.status import StatusChecker
    from vcgate.status.mirror import RevocationMirror
    from vcgate.status.registry import OnchainStatusMethod

    runner, env = setup["runner"], setup["env"]
    cred_path = issue(setup)
    credential = Verifier().verify_credential(cred_path.read_text().strip())
    chain = connect(dev_chain["rpc"])
    with RevocationMirror(
        chain=chain, registry=setup["registry"], chain_id=chain.chain_id(), confirmations=2, poll_interval=0.25
    ) as mirror:  # entering starts the polling thread
        mirror.wait_ready(10)
        checker = StatusChecker([OnchainStatusMethod([mirror])])
        assert checker.check(credential)[0].purpose == "revocation"

        def seen(predicate, limit=1.0):
            t0 = time.monotonic()
            while time.monotonic() - t0 < limit:
                if predicate():
                    return time.monotonic() - t0
                time.sleep(0.01)
            raise AssertionError(f"not seen within {limit} s")

        def refused() -> bool:
            try:
                checker.check(credential)
            except RevokedError:
                return True
            return False

        assert run(runner, "revoke", str(cred_path), env=env).exit_code == 0
        seen(refused)
        assert run(runner, "unrevoke", str(cred_path), env=env).exit_code == 0
        seen(lambda: not refused())


def test_vcgate_serve_follows_the_chain(setup, dev_chain, tmp_path):
    """`vcgate serve --rpc --registry`: the auth service's own mirror refuses a credential the
    issuer revoked with the CLI, and /readyz and /metrics report the mirror."""
    import requests

    from tests.integration.gateway_support import AuthService
    from vcgate.credentials import create_presentation
    from vcgate.did import did_key_from_public_key
    from vcgate.keys import read_key_file

    runner, env = setup["runner"], setup["env"]
    cred = issue(setup).read_text().strip()
    issuer_did = did_key_from_public_key(read_key_file(setup["work"] / "issuer.key", passphrase=PASS).public_key)
    agent_key = read_key_file(setup["work"] / "agent.key", passphrase=PASS)
    agent = did_key_from_public_key(agent_key.public_key)
    audience = "http://127.0.0.1:9"
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\naudience: {audience}\ntrusted_issuers:\n  - did: {issuer_did}\n"
        "defaults:\n  status: required\n"
        "rules:\n  - name: models\n    match: {methods: [GET], paths: [/v1/models]}\n"
        "    require: {types: [ModelAccessCredential]}\n"
    )
    original = {"X-Original-Method": "GET", "X-Original-URI": "/v1/models", "Host": "127.0.0.1:9"}

    def call(svc: AuthService) -> requests.Response:
        challenge = requests.get(svc.url + "/nginx/auth", headers=original, timeout=5)
        assert challenge.status_code == 401, challenge.text
        vp = create_presentation(agent_key, holder=agent, kid=f"{agent}#{agent.method_specific_id}", credentials=[cred],
                                 audience=audience, nonce=challenge.json()["nonce"], issued_at=time.time())
        return requests.get(svc.url + "/nginx/auth", headers={**original, "Authorization": f"VP {vp}"}, timeout=5)

    args = ("--rpc", dev_chain["rpc"], "--registry", setup["registry"], "--confirmations", "0")
    with AuthService(policy, args=args) as svc:
        assert requests.get(svc.url + "/readyz", timeout=5).json()["checks"]["mirror"]["healthy"] is True
        allowed = call(svc)
        assert allowed.status_code == 200, allowed.headers.get("X-Vcgate-Error")
        cred_file = tmp_path / "cred.jwt"
        cred_file.write_text(cred)
        assert run(runner, "revoke", str(cred_file), env=env).exit_code == 0
        deadline = time.monotonic() + 10
        while True:
            refused = call(svc)
            if refused.status_code != 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (refused.status_code, refused.headers["X-Vcgate-Error"]) == (401, "revoked")
        metrics = svc.metrics()
        assert "vcgate_mirror_healthy{registry=" in metrics and "} 1.0" in metrics.split("vcgate_mirror_healthy{")[1]
        assert 'vcgate_decisions_total{adapter="nginx",code="revoked",outcome="deny"}' in metrics
