"""GateConfig (settings / VCGATE_* environment -> a running gate) and the `vcgate serve` process."""

from __future__ import annotations

import json
import signal

import pytest
import requests

from tests.integration.gateway_support import AuthService, gateway_world
from vcgate.assembly import GateConfig
from vcgate.stores import MemoryNonceStore, RedisNonceStore, RedisReplayStore

EXAMPLE_POLICY = "examples/policy.yaml"


def test_from_env_reads_every_variable(tmp_path):
    env = {
        "VCGATE_POLICY": EXAMPLE_POLICY, "VCGATE_KEY_FILE": "/k", "VCGATE_PASSPHRASE": "pw",
        "VCGATE_REDIS_URL": "redis://127.0.0.1:1/0", "VCGATE_AUDIT_LOG": "/a", "VCGATE_RPC_URL": "http://x",
        "VCGATE_REGISTRY": "0x" + "1" * 40, "VCGATE_CONFIRMATIONS": "3", "VCGATE_MIRROR_CHECKPOINT": "/c",
        "VCGATE_STATUS_LISTS": "yes", "VCGATE_DID_WEB": "1", "VCGATE_ALLOW_NETWORKS": "10.0.0.0/8, 127.0.0.0/8",
        "VCGATE_CA_BUNDLE": "/ca", "VCGATE_DID_WEB_PORTS": "8443,9443",
    }
    c = GateConfig.from_env(env)
    assert (c.policy, c.key_file, c.key_passphrase, c.redis_url, c.audit_log) == (EXAMPLE_POLICY, "/k", "pw",
                                                                                 "redis://127.0.0.1:1/0", "/a")
    assert (c.rpc_url, c.registry, c.confirmations, c.mirror_checkpoint) == ("http://x", "0x" + "1" * 40, 3, "/c")
    assert (c.status_lists, c.did_web, c.allow_networks, c.ca_bundle) == (True, True, ("10.0.0.0/8", "127.0.0.0/8"), "/ca")
    assert c.did_web_ports == (8443, 9443)
    assert "pw" not in repr(c)
    assert GateConfig.from_env(env, confirmations=0).confirmations == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({}, "VCGATE_POLICY", id="no-policy"),
        pytest.param({"VCGATE_POLICY": "p", "VCGATE_RPC_URL": "http://x"}, "both an RPC URL and a registry", id="rpc-alone"),
        pytest.param({"VCGATE_POLICY": "p", "VCGATE_CONFIRMATIONS": "many"}, "integer", id="bad-int"),
        pytest.param({"VCGATE_POLICY": "p", "VCGATE_DID_WEB_PORTS": "6379x"}, "VCGATE_DID_WEB_PORTS", id="bad-port"),
    ],
)
def test_from_env_refuses_incomplete_settings(env, message):
    with pytest.raises(ValueError, match=message):
        GateConfig.from_env(env)


def test_build_wires_stores_and_audit_and_close_releases_them(tmp_path):
    pytest.importorskip("redis")
    audit = tmp_path / "audit.jsonl"
    with pytest.warns(RuntimeWarning, match="no gateway key"):
        rt = GateConfig(policy=EXAMPLE_POLICY, redis_url="redis://127.0.0.1:1/0", audit_log=str(audit)).build()
    try:
        assert isinstance(rt.gate.nonce_store, RedisNonceStore)
        assert isinstance(rt.gate.dpop_verifier._replay, RedisReplayStore)
        assert rt.gate.audit is rt.audit and rt.audit.healthy
    finally:
        rt.close()
    assert not rt.audit.healthy
    with pytest.warns(RuntimeWarning):
        plain = GateConfig(policy=EXAMPLE_POLICY).build()
    assert isinstance(plain.gate.nonce_store, MemoryNonceStore) and plain.gate.audit is None and plain.mirror is None


def test_build_with_key_file_signs_tokens_with_it(tmp_path):
    from vcgate.keys import PrivateKey, write_key_file

    key = PrivateKey.generate("EdDSA")
    path = tmp_path / "gw.key"
    write_key_file(path, key, passphrase=None)
    with GateConfig(policy=EXAMPLE_POLICY, key_file=str(path)).build() as rt:
        assert rt.gate.token_issuer.public_key.jwk() == key.public_key.jwk()


def test_serve_process_answers_and_stops_on_sigterm(tmp_path):
    world = gateway_world(tmp_path, "http://127.0.0.1:9")
    with AuthService(world.policy, grpc=True) as svc:
        r = requests.get(svc.url + "/nginx/auth", headers={"X-Original-Method": "GET", "X-Original-URI": "/v1/models",
                                                           "Host": "127.0.0.1:9"}, timeout=5)
        assert r.status_code == 401 and r.headers["X-Vcgate-Error"] == "credential_required"
        meta = requests.get(svc.url + "/.well-known/oauth-protected-resource", timeout=5).json()
        assert meta["resource"] == "http://127.0.0.1:9"
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.proc.wait(10) == 0
    assert "listening on http://127.0.0.1:" in svc.output and "grpc 127.0.0.1:" in svc.output
    assert "vcgate serve: stopped" in svc.output
    assert "no --key-file" in svc.output


def test_serve_cli_usage_errors(tmp_path):
    from click.testing import CliRunner

    from vcgate.cli import cli

    res = CliRunner().invoke(cli, ["serve", "--policy", EXAMPLE_POLICY, "--rpc", "http://127.0.0.1:1"])
    assert res.exit_code == 2 and "--rpc and --registry go together" in res.output
    res = CliRunner().invoke(cli, ["serve", "--policy", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: [\n")
    res = CliRunner().invoke(cli, ["serve", "--policy", str(bad)])
    assert res.exit_code == 1 and "error:" in res.output and json.dumps("bad.yaml")[1:-1] in res.output


def test_every_env_var_and_serve_option_is_documented():
    from pathlib import Path

    from vcgate.cli.serve import serve
    from vcgate.assembly import ENV_VARS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugins" / "README.md").read_text()
    for var in ENV_VARS:
        assert f"| `{var}` |" in doc, var
    for param in serve.params:
        for opt in param.opts:
            if opt.startswith("--") and opt not in ("--host", "--port", "--threads", "--envoy-prefix", "--grpc-port"):
                assert f"`{opt}`" in doc, opt
