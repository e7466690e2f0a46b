"""``vcgate issue --format sd-jwt``, ``present --disclose/--dcql``, ``verify``, Token Status Lists.

In-process with click's ``CliRunner``; the issuer and holder keys are made once (scrypt).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import AUD, NONCE, assert_refused, assert_usage, did_of, run
from vcgate.credentials.sdjwt import parse_sd_jwt
from vcgate.keys import b64url_decode

CLAIMS = '{"models": ["gpt-4o"], "org": "acme", "email": "ada@acme.example"}'


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("sdjwt-keys")
    out: dict[str, object] = {"dir": d}
    for name, alg in (("issuer", "EdDSA"), ("holder", "ES256")):
        path = d / f"{name}.key"
        result = run(["key", "new", "--alg", alg, "--out", str(path)])
        assert result.exit_code == 0, result.stderr
        out[name] = (path, did_of(result))
    return out


def issue(keys, *extra: str) -> str:
    result = run(["issue", "--format", "sd-jwt", "--key", str(keys["issuer"][0]), "--subject", keys["holder"][1],
                  "--type", "ModelAccessCredential", "--claims", CLAIMS, *extra])
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def test_issue_present_verify_with_only_the_disclosed_claim(keys, tmp_path):
    cred = issue(keys)
    assert len(parse_sd_jwt(cred).disclosures) == 3
    verified = run(["verify", "--json", "--resolver", "local", cred])
    body = json.loads(verified.stdout)
    assert body["kind"] == "credential" and body["format"] == "dc+sd-jwt" and body["types"] == ["ModelAccessCredential"]
    assert body["subject"] == keys["holder"][1] and set(body["claims"]) == {"models", "org", "email"}

    (tmp_path / "cred.sd-jwt").write_text(cred + "\n")
    pres = run(["present", "--key", str(keys["holder"][0]), "--aud", AUD, "--nonce", NONCE, "--disclose", "models",
                str(tmp_path / "cred.sd-jwt")])
    assert pres.exit_code == 0, pres.stderr
    out = json.loads(run(["verify", "--json", "--resolver", "local", "--aud", AUD, "--nonce", NONCE, "-"],
                         input=pres.stdout).stdout)
    assert out["kind"] == "presentation" and out["holder"] == keys["holder"][1]
    assert out["credentials"][0]["claims"] == {"models": ["gpt-4o"]}

    wrong = run(["verify", "--resolver", "local", "--aud", AUD, "--nonce", "other", "-"], input=pres.stdout)
    assert_refused(wrong, "nonce_mismatch")


def test_present_with_a_dcql_query(keys, tmp_path):
    query = json.dumps({"credentials": [{"id": "q", "format": "dc+sd-jwt", "meta": {"vct_values": ["ModelAccessCredential"]},
                                         "claims": [{"path": ["org"]}]}]})
    pres = run(["present", "--key", str(keys["holder"][0]), "--aud", AUD, "--nonce", NONCE, "--dcql", query, issue(keys)])
    assert pres.exit_code == 0, pres.stderr
    out = json.loads(run(["verify", "--json", "--resolver", "local", "--aud", AUD, "--nonce", NONCE, "-"],
                         input=pres.stdout).stdout)
    assert out["credentials"][0]["claims"] == {"org": "acme"}
    none = json.dumps({"credentials": [{"id": "q", "format": "dc+sd-jwt", "claims": [{"path": ["phone"]}]}]})
    assert_usage(run(["present", "--key", str(keys["holder"][0]), "--aud", AUD, "--nonce", NONCE, "--dcql", none,
                      issue(keys)]), "does not have")


def test_disclosable_subset_and_refusals(keys):
    cred = issue(keys, "--disclosable", "email")
    payload = json.loads(b64url_decode(cred.split(".")[1]))
    assert payload["org"] == "acme" and "email" not in payload and len(parse_sd_jwt(cred).disclosures) == 1
    assert_usage(run(["issue", "--format", "sd-jwt", "--key", str(keys["issuer"][0]), "--subject", keys["holder"][1],
                      "--type", "A", "--type", "B"]), "exactly one --type")
    assert_usage(run(["issue", "--key", str(keys["issuer"][0]), "--subject", keys["holder"][1], "--disclosable", "x"]),
                 "--format sd-jwt")
    assert_usage(run(["issue", "--format", "sd-jwt", "--key", str(keys["issuer"][0]), "--subject", keys["holder"][1],
                      "--type", "A", "--disclosable", "vct"]), "vct")


def test_token_status_list_create_issue_publish_revoke(keys, tmp_path):
    state, published = tmp_path / "tsl.json", tmp_path / "tsl.jwt"
    url = "https://issuer.example/statuslists/1"
    created = run(["status-list", "create", "--format", "token", "--url", url, "--out", str(state)])
    assert created.exit_code == 0, created.stderr
    cred = issue(keys, "--status", "bitstring", "--status-list", str(state))
    status = json.loads(b64url_decode(cred.split(".")[1]))["status"]["status_list"]
    assert status["uri"] == url and isinstance(status["idx"], int)
    assert run(["status-list", "publish", "--status-list", str(state), "--key", str(keys["issuer"][0]),
                "--out", str(published)]).exit_code == 0
    header = json.loads(b64url_decode(published.read_text().split(".")[0]))
    assert header["typ"] == "statuslist+jwt"
    (tmp_path / "cred").write_text(cred)
    revoked = run(["revoke", "--status-list", str(state), "--key", str(keys["issuer"][0]), "--publish", str(published),
                   str(tmp_path / "cred")])
    assert revoked.exit_code == 0, revoked.stderr
    from vcgate.status.tokenlist import decode_token_list, token_status

    body = json.loads(b64url_decode(published.read_text().split(".")[1]))
    assert token_status(decode_token_list(body["status_list"]["lst"], max_bytes=1 << 20), status["idx"], 1) == 1
    shown = json.loads(run(["status-list", "show", "--json", str(state)]).stdout)
    assert shown["format"] == "token" and shown["set"] == 1
    # A token state cannot serve a JWT credential.
    assert_usage(run(["issue", "--key", str(keys["issuer"][0]), "--subject", keys["holder"][1],
                      "--status", "bitstring", "--status-list", str(state)]), "SD-JWT")


def test_bitstring_status_list_for_an_sd_jwt_vc(keys, tmp_path):
    state, published = tmp_path / "b.json", tmp_path / "b.jwt"
    url = "https://issuer.example/b/1"
    assert run(["status-list", "create", "--url", url, "--out", str(state)]).exit_code == 0
    cred = issue(keys, "--status", "bitstring", "--status-list", str(state))
    entry = json.loads(b64url_decode(cred.split(".")[1]))["status"]["bitstring_status_list"]
    assert entry["type"] == "BitstringStatusListEntry" and entry["statusListCredential"] == url
    assert entry["statusPurpose"] == "revocation"
    (tmp_path / "cred").write_text(cred)
    revoked = run(["revoke", "--status-list", str(state), "--key", str(keys["issuer"][0]), "--publish", str(published),
                   str(tmp_path / "cred")])
    assert revoked.exit_code == 0, revoked.stderr
    from vcgate.status.bitstring import decode_encoded_list, get_status

    subject = json.loads(b64url_decode(published.read_text().split(".")[1]))["credentialSubject"]
    bits = decode_encoded_list(subject["encodedList"], max_bytes=1 << 20)
    assert get_status(bits, int(entry["statusListIndex"])) == 1


def test_help_names_the_new_options():
    assert "--disclosable" in run(["issue", "--help"]).stdout
    assert "--dcql" in run(["present", "--help"]).stdout
    assert "token" in run(["status-list", "create", "--help"]).stdout


def test_delegate_from_an_sd_jwt_root(keys, tmp_path):
    """``vcgate delegate`` signs a link under an SD-JWT VC (bound to its issuer-signed JWT)."""
    from vcgate.credentials.delegation import digest_sri

    root = issue(keys)
    (tmp_path / "root.sd-jwt").write_text(root + "\n")
    sub = run(["key", "new", "--out", str(tmp_path / "sub.key")])
    out = run(["delegate", "--key", str(keys["holder"][0]), "--credential", str(tmp_path / "root.sd-jwt"),
               "--subject", did_of(sub), "--claims", '{"models": ["gpt-4o"]}', "--chain"])
    assert out.exit_code == 0, out.stderr
    chain = out.stdout.split()
    assert chain[0] == root and len(chain) == 2
    link = json.loads(b64url_decode(chain[1].split(".")[1]))
    assert link["delegation"]["parent"]["digestSRI"] == digest_sri(root.split("~", 1)[0])
    widened = run(["delegate", "--key", str(keys["holder"][0]), "--credential", str(tmp_path / "root.sd-jwt"),
                   "--subject", did_of(sub), "--claims", '{"models": ["o1"]}'])
    assert_refused(widened, "claim_not_disclosed")  # o1 may be a withheld element, as the gate would see it
