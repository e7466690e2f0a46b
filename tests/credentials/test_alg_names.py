"""One JOSE algorithm allow-list for every entry point, and RFC 9864's ``Ed25519`` as issued name.

The table: every algorithm vcgate verifies (``vcgate.keys.ALGORITHMS``: ``EdDSA`` and its
fully-specified name ``Ed25519``, ES256, ES256K, ES384, ES512) through every place a credential
is verified -- ``Gate()`` built with its own verifier, the ``vcgate serve`` assembly
(``GateConfig.build`` + the auth service's HTTP app), the VC-API's ``/credentials/verify`` and
``vcgate verify``. Then the issuing side: ``--alg-name`` / ``VCGATE_JOSE_ALG_NAME`` on
``vcgate issue``, the VC-API's ``vc-jose`` profile and the vc-jose-cose CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.middleware.helpers import STATUS_TYPE, FakeStatus, policy_text
from tests.support import NOW, Party, make_party
from vcgate.cli import cli
from vcgate.credentials import create_presentation, issue_credential
from vcgate.credentials.jws import parse_jws, sign_jws
from vcgate.errors import AlgorithmNotAllowedError
from vcgate.gate import Gate, RequestView
from vcgate.keys import ALGORITHMS, PrivateKey, b64url_decode, write_key_file
from vcgate.policy import Policy
from vcgate.status import StatusChecker

AUD = "https://gw.example"
CHAT = "/v1/chat/completions"
ENV = {"VCGATE_PASSPHRASE": None, "VCGATE_DEBUG": None, "VCGATE_JOSE_ALG_NAME": None}

# (key algorithm, alg name written in the header)
ALGS = [
    pytest.param("EdDSA", "EdDSA", id="EdDSA"),
    pytest.param("EdDSA", "Ed25519", id="Ed25519"),
    pytest.param("ES256", "ES256", id="ES256"),
    pytest.param("ES256K", "ES256K", id="ES256K"),
    pytest.param("ES384", "ES384", id="ES384"),
    pytest.param("ES512", "ES512", id="ES512"),
]


def test_the_table_covers_the_allow_list() -> None:
    assert sorted(p.values[1] for p in ALGS) == sorted(ALGORITHMS)


def _credential(issuer: Party, holder: Party, alg_name: str) -> str:
    token = issue_credential(
        issuer.key, issuer=issuer.did, kid=issuer.kid, subject=holder.did, types=["ModelAccessCredential"],
        claims={"models": ["gpt-4o"]}, valid_from=NOW - 3600, status={"type": STATUS_TYPE, "id": "test:1"},
        alg_name=_setting(alg_name),
    )
    assert parse_jws(token, algorithms=ALGORITHMS).alg == alg_name
    return token


def _setting(alg_name: str) -> str | None:
    """The --alg-name setting that makes vcgate write ``alg_name`` (only Ed25519 keys have two)."""
    return alg_name if alg_name in ("EdDSA", "Ed25519") else None


def _parties(key_alg: str) -> tuple[Party, Party]:
    return make_party(key_alg), make_party(key_alg)


def _presentation(holder: Party, credential: str, nonce: str, alg_name: str) -> str:
    vp = create_presentation(holder.key, holder=holder.did, kid=holder.kid, credentials=[credential], audience=AUD,
                             nonce=nonce, issued_at=NOW)
    if alg_name == "Ed25519":  # the holder signs with the same name
        jws = parse_jws(vp, algorithms=ALGORITHMS)
        vp = sign_jws(holder.key, jws.payload, typ=jws.typ, kid=jws.kid, alg_name="Ed25519")
    return vp


def _policy(issuer: Party) -> Policy:
    return Policy.from_yaml(policy_text(AUD, issuer.did))


def _view(headers=()) -> RequestView:
    return RequestView(method="POST", path=CHAT, host="gw.example", scheme="https", headers=headers, model="gpt-4o",
                       body_available=True)


@pytest.mark.parametrize("key_alg, alg_name", ALGS)
def test_gate_with_its_own_verifier(key_alg: str, alg_name: str) -> None:
    issuer, holder = _parties(key_alg)
    # No verifier passed: Gate() builds its own from its `algorithms` (the default allow-list).
    gate = Gate(policy=_policy(issuer), status=StatusChecker([FakeStatus()]), clock=lambda: NOW,
                gateway_key=PrivateKey.generate("EdDSA"))
    assert set(gate.algorithms) == set(ALGORITHMS)
    nonce = gate.check(_view()).body["nonce"]
    vp = _presentation(holder, _credential(issuer, holder, alg_name), nonce, alg_name)
    d = gate.check(_view([("Authorization", f"VP {vp}")]))
    assert d.allow, d.body


@pytest.mark.parametrize("key_alg, alg_name", ALGS)
def test_serve_assembly_and_auth_service(tmp_path: Path, key_alg: str, alg_name: str) -> None:
    pytest.importorskip("flask", reason="pip install -e '.[dev]'")
    from vcgate.assembly import GateConfig
    from vcgate.server import AuthService, create_app

    issuer, holder = _parties(key_alg)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(AUD, issuer.did))
    with GateConfig(policy=str(policy)).build(clock=lambda: NOW, status=StatusChecker([FakeStatus()]),
                                              gateway_key=PrivateKey.generate("EdDSA")) as assembled:
        client = create_app(AuthService(assembled.gate)).test_client()
        headers = {"X-Original-Method": "POST", "X-Original-URI": CHAT, "Host": "gw.example",
                   "X-Forwarded-Proto": "https"}
        nonce = client.get("/nginx/auth", headers=headers).get_json()["nonce"]
        vp = _presentation(holder, _credential(issuer, holder, alg_name), nonce, alg_name)
        # A rule that needs the model cannot be decided from NGINX headers: the Envoy dialect carries the body.
        r = client.post("/envoy" + CHAT, data=json.dumps({"model": "gpt-4o"}),
                        headers={"Authorization": f"VP {vp}", "Host": "gw.example", "X-Forwarded-Proto": "https",
                                 "Content-Type": "application/json"})
        assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize("key_alg, alg_name", ALGS)
def test_vc_api_verify(key_alg: str, alg_name: str) -> None:
    pytest.importorskip("flask", reason="pip install -e '.[dev]'")
    from vcgate.server.vcapi import VCAPIService

    issuer, holder = _parties(key_alg)
    service = VCAPIService(issuer_key=PrivateKey.generate("EdDSA"), clock=lambda: NOW)
    envelope = {"@context": ["https://www.w3.org/ns/credentials/v2"], "type": "EnvelopedVerifiableCredential",
                "id": "data:application/vc+jwt," + _credential(issuer, holder, alg_name)}
    outcome = service.verify_credential({"verifiableCredential": envelope}, base_url="https://issuer.example")
    assert (outcome.status, outcome.body.get("verified")) == (200, True), outcome.body


@pytest.mark.parametrize("key_alg, alg_name", ALGS)
def test_cli_verify(tmp_path: Path, key_alg: str, alg_name: str) -> None:
    issuer, holder = _parties(key_alg)
    token = issue_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, subject=holder.did,
                             valid_from=NOW - 3600, alg_name=_setting(alg_name))
    path = tmp_path / "cred.jwt"
    path.write_text(token)
    r = CliRunner().invoke(cli, ["verify", "--json", "--resolver", "local", str(path)], env=ENV)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["valid"] is True


def test_an_algorithm_outside_the_list_is_refused_everywhere() -> None:
    issuer, holder = _parties("EdDSA")
    token = _credential(issuer, holder, "EdDSA")
    h, p, s = token.split(".")
    header = json.loads(b64url_decode(h))
    header["alg"] = "HS256"
    from tests.support import b64json

    forged = f"{b64json(header)}.{p}.{s}"
    with pytest.raises(AlgorithmNotAllowedError):
        parse_jws(forged, algorithms=Gate(policy=_policy(issuer), gateway_key=PrivateKey.generate("EdDSA")).algorithms)


# --- issuing with RFC 9864's name --------------------------------------------------------------


def _key_file(tmp_path: Path, alg: str = "EdDSA") -> tuple[Path, PrivateKey]:
    key = PrivateKey.generate(alg)
    path = tmp_path / f"issuer-{alg}.key"
    write_key_file(path, key, passphrase=None)
    return path, key


def _issue(tmp_path: Path, *args: str, env: dict | None = None) -> object:
    key_file, _ = _key_file(tmp_path)
    holder = make_party()
    return CliRunner().invoke(cli, ["issue", "--key", str(key_file), "--subject", holder.did, *args],
                              env={**ENV, **(env or {})})


@pytest.mark.parametrize(
    "args, env, written",
    [
        pytest.param((), {}, "EdDSA", id="default-EdDSA"),
        pytest.param(("--alg-name", "Ed25519"), {}, "Ed25519", id="option"),
        pytest.param((), {"VCGATE_JOSE_ALG_NAME": "Ed25519"}, "Ed25519", id="env"),
        pytest.param(("--alg-name", "EdDSA"), {"VCGATE_JOSE_ALG_NAME": "Ed25519"}, "EdDSA", id="option-wins"),
        pytest.param(("--format", "vc-jwt11", "--alg-name", "Ed25519"), {}, "Ed25519", id="vc-jwt11"),
        pytest.param(("--format", "sd-jwt", "--type", "T", "--alg-name", "Ed25519"), {}, "Ed25519", id="sd-jwt"),
    ],
)
def test_vcgate_issue_alg_name(tmp_path: Path, args: tuple, env: dict, written: str) -> None:
    r = _issue(tmp_path, "--resolver", "local", *args, env=env)
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert parse_jws(token.split("~")[0], algorithms=ALGORITHMS).alg == written
    v = CliRunner().invoke(cli, ["verify", "--json", "--resolver", "local", "-"], input=token, env=ENV)
    assert v.exit_code == 0, v.output


@pytest.mark.parametrize(
    "args, env",
    [
        pytest.param(("--alg-name", "ed25519"), {}, id="option-wrong-case"),
        pytest.param((), {"VCGATE_JOSE_ALG_NAME": "none"}, id="env-none"),
        pytest.param((), {"VCGATE_JOSE_ALG_NAME": "HS256"}, id="env-hmac"),
    ],
)
def test_bad_alg_name_is_a_usage_error_naming_the_variable(tmp_path: Path, args: tuple, env: dict) -> None:
    r = _issue(tmp_path, "--resolver", "local", *args, env=env)
    assert r.exit_code == 2 and "VCGATE_JOSE_ALG_NAME" in r.stderr, r.output
    assert "Traceback" not in r.output


def test_ec_keys_keep_their_names(tmp_path: Path) -> None:
    key_file, _ = _key_file(tmp_path, "ES256")
    r = CliRunner().invoke(cli, ["issue", "--key", str(key_file), "--subject", make_party().did, "--resolver",
                                 "local", "--alg-name", "Ed25519"], env=ENV)
    assert r.exit_code == 0, r.output
    assert parse_jws(r.stdout.strip(), algorithms=ALGORITHMS).alg == "ES256"


@pytest.mark.parametrize("alg_name", ["EdDSA", "Ed25519"])
def test_vc_api_vc_jose_profile_alg_name(alg_name: str) -> None:
    pytest.importorskip("flask", reason="pip install -e '.[dev]'")
    from vcgate.server.vcapi import VCAPIService

    service = VCAPIService(issuer_key=PrivateKey.generate("EdDSA"), clock=lambda: NOW, alg_name=alg_name)
    request = {"credential": {"@context": ["https://www.w3.org/ns/credentials/v2"], "type": ["VerifiableCredential"],
                              "issuer": service.issuer, "credentialSubject": {"id": "did:example:agent"}}}
    vc = service.issue(request, profile="vc-jose", base_url="https://issuer.example").body["verifiableCredential"]
    token = vc["id"].split(",", 1)[1]
    assert parse_jws(token, algorithms=ALGORITHMS).alg == alg_name
    outcome = service.verify_credential({"verifiableCredential": vc}, base_url="https://issuer.example")
    assert outcome.body["verified"] is True


def test_vc_api_refuses_a_bad_alg_name_naming_the_variable() -> None:
    pytest.importorskip("flask", reason="pip install -e '.[dev]'")
    from vcgate.server.vcapi import VCAPIService

    with pytest.raises(ValueError, match="VCGATE_JOSE_ALG_NAME"):
        VCAPIService(issuer_key=PrivateKey.generate("EdDSA"), alg_name="EdDSA25519")
