"""vcgate conformance jose (the vc-jose-cose suite's CLI) and the docs/conformance.md example."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from vcgate.cli import cli
from vcgate.conformance import jose_issue, jose_verify
from vcgate.credentials.jws import parse_jws
from vcgate.keys import ALGORITHMS, PrivateKey, b64url_encode

ROOT = Path(__file__).resolve().parents[1]
V2 = "https://www.w3.org/ns/credentials/v2"
ISSUER = "https://example.issuer/vc-jose-cose"
CREDENTIAL = {
    "@context": [V2, "https://www.w3.org/ns/credentials/examples/v2"],
    "id": "http://university.example/credentials/1872",
    "type": ["VerifiableCredential", "ExampleAlumniCredential"],
    "issuer": ISSUER,
    "validFrom": "2010-01-01T19:23:24Z",
    "credentialSubject": {"id": "did:example:123", "alumniOf": "Example University"},
}


def _method(alg: str) -> dict[str, Any]:
    key = PrivateKey.generate(alg)
    public = key.public_key.jwk()
    secret = dict(public)
    if alg == "EdDSA":
        secret["d"] = b64url_encode(key.private_bytes_raw())
    else:
        size = len(key.private_bytes_raw())
        secret["d"] = b64url_encode(key.crypto_key.private_numbers().private_value.to_bytes(size, "big"))  # type: ignore[union-attr]
    return {"id": f"{ISSUER}#key-1", "type": "JsonWebKey", "controller": ISSUER, "publicKeyJwk": public,
            "secretKeyJwk": secret}


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "EdDSA"])
def test_issue_then_verify(alg: str) -> None:
    method = _method(alg)
    issued = jose_issue(CREDENTIAL, method, feature="credential_jose")
    assert issued.result == "success", issued.data
    jws = parse_jws(issued.data, algorithms=ALGORITHMS)
    assert (jws.alg, jws.typ, jws.kid) == (alg, "vc+jwt", f"{ISSUER}#key-1")
    assert jose_verify(issued.data, method, feature="credential_jose").result == "success"
    presentation = {"@context": [V2], "type": "VerifiablePresentation", "holder": ISSUER,
                    "verifiableCredential": [{"@context": V2, "type": "EnvelopedVerifiableCredential",
                                              "id": "data:application/vc+jwt," + issued.data}]}
    vp = jose_issue(presentation, method, feature="presentation_jose")
    assert vp.result == "success"
    assert jose_verify(vp.data, method, feature="presentation_jose").result == "success"


def test_ed25519_alg_name_setting() -> None:
    method = _method("EdDSA")
    issued = jose_issue(CREDENTIAL, method, feature="credential_jose", alg_name="Ed25519")
    assert parse_jws(issued.data, algorithms=ALGORITHMS).alg == "Ed25519"
    assert jose_verify(issued.data, method, feature="credential_jose").result == "success"


def _tamper(token: str) -> str:
    head, payload, sig = token.split(".")
    return ".".join((head, payload, ("A" if sig[0] != "A" else "B") + sig[1:]))


def test_refusals() -> None:
    method = _method("ES256")
    token = jose_issue(CREDENTIAL, method, feature="credential_jose").data
    cases = {
        "unsecured": (json.dumps(CREDENTIAL), method, "credential_jose"),
        "bad-signature": (_tamper(token), method, "credential_jose"),
        "other-key": (token, _method("ES256"), "credential_jose"),
        "alg-does-not-fit-key": (token, _method("EdDSA"), "credential_jose"),
        "credential-as-presentation": (token, method, "presentation_jose"),
        "cose-not-claimed": (token, method, "credential_cose"),
    }
    for name, (text, key, feature) in cases.items():
        assert jose_verify(text, key, feature=feature).result == "failure", name
    bad = dict(CREDENTIAL, credentialSubject={})
    assert jose_issue(bad, method, feature="credential_jose").result == "failure"


def test_cli_writes_the_result_file(tmp_path: Path) -> None:
    method = _method("ES384")
    (tmp_path / "vm.json").write_text(json.dumps(method))
    (tmp_path / "vc.json").write_text(json.dumps(CREDENTIAL))
    runner = CliRunner()
    out = tmp_path / "out.json"
    args = ["conformance", "jose", "issue", "--input", str(tmp_path / "vc.json"), "--key", str(tmp_path / "vm.json"),
            "--feature", "credential_jose", "--output", str(out)]
    assert runner.invoke(cli, args).exit_code == 0
    result = json.loads(out.read_text())
    assert result["result"] == "success"
    (tmp_path / "vc.jwt").write_text(result["data"])
    args = ["conformance", "jose", "verify", "--input", str(tmp_path / "vc.jwt"), "--key", str(tmp_path / "vm.json"),
            "--feature", "credential_jose", "--output", str(out)]
    assert runner.invoke(cli, args).exit_code == 0
    assert json.loads(out.read_text())["result"] == "success"


def test_docs_example_runs() -> None:
    text = (ROOT / "docs" / "conformance.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "docs/conformance.md has a Python example"
    for block in blocks:
        exec(compile(block, "docs/conformance.md", "exec"), {})
