"""The ``vcgate`` command line: output, exit codes, key-file safety.

Most tests drive ``cli`` in-process with click's ``CliRunner``; a few run the installed
console script in a subprocess to prove the entry point and ``main()`` behave the same.
Every encrypted key operation costs one scrypt (about 0.1 s), so keys and credentials used
by many tests are made once per module.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

import vcgate.cli.base as cli_module  # the shared helpers (stdin_is_interactive) and the root group
from vcgate import __version__
from vcgate.cli import cli, main
from vcgate.cli.base import parse_duration, parse_timestamp
from vcgate.did import did_jwk_from_public_key, did_key_from_public_key
from vcgate.keys import PrivateKey, PublicKey, b64url_decode, b64url_encode, read_key_file, read_key_header

PW = "correct horse battery staple"
ENV: dict[str, str | None] = {"VCGATE_PASSPHRASE": PW, "VCGATE_DEBUG": None}
NO_PW: dict[str, str | None] = {"VCGATE_PASSPHRASE": None, "VCGATE_DEBUG": None}

# A well-known secp256k1 test key (Ethereum address 0x2c7536E3605D9C16a7a3D7b1898e529396a65c23).
ETH_HEX = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"

AUD = "https://models.example.com"
NONCE = "n-42"

VCGATE_BIN = Path(sys.executable).with_name("vcgate")


def run(args: Sequence[str], *, input: str | bytes | None = None, env: Mapping[str, str | None] = ENV) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=dict(env), catch_exceptions=False)


def did_of(result: Result) -> str:
    """The DID a key command printed: stdout is that one line and nothing else."""
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return lines[0]


def assert_refused(result: Result, code: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert f"error: {code}: " in result.stderr, result.stderr
    assert "Traceback" not in result.output


def assert_usage(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def secrets_of(key: PrivateKey) -> list[str]:
    """Every spelling of the private key that must never be printed."""
    raw = key.private_bytes_raw()
    return [raw.hex(), raw.hex().upper(), b64url_encode(raw)]


def tamper(token: str, **changes: object) -> str:
    """Change claims in the subject of a vc-jose credential, keeping the old signature."""
    h, p, s = token.split(".")
    payload = json.loads(b64url_decode(p))
    payload["credentialSubject"].update(changes)
    return ".".join([h, b64url_encode(json.dumps(payload).encode()), s])


# --- shared keys and credentials --------------------------------------------------------------


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def issuer(keydir: Path) -> tuple[Path, str]:
    path = keydir / "issuer.key"
    result = run(["key", "new", "--alg", "EdDSA", "--out", str(path)])
    assert result.exit_code == 0, result.stderr
    return path, did_of(result)


@pytest.fixture(scope="module")
def holder(keydir: Path) -> tuple[Path, str]:
    path = keydir / "holder.key"
    result = run(["key", "new", "--alg", "ES256", "--did-method", "jwk", "--out", str(path)])
    assert result.exit_code == 0, result.stderr
    return path, did_of(result)


@pytest.fixture(scope="module")
def plain_key(keydir: Path) -> tuple[Path, str]:
    """An unencrypted key for tests that only need some signer (no scrypt)."""
    path = keydir / "plain.key"
    result = run(["key", "new", "--alg", "ES256K", "--unencrypted", "--out", str(path)], env=NO_PW)
    assert result.exit_code == 0, result.stderr
    return path, did_of(result)


@pytest.fixture(scope="module")
def credentials(issuer: tuple[Path, str], holder: tuple[Path, str]) -> dict[str, str]:
    """One credential for the holder in each format."""
    out = {}
    for fmt in ("vc-jose", "vc-jwt11"):
        result = run(
            [
                "issue", "--key", str(issuer[0]), "--subject", holder[1],
                "--type", "ModelAccessCredential", "--claims", '{"models": ["llama-3-70b"], "tier": "gold"}',
                "--valid-for", "30d", "--format", fmt,
            ]
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        out[fmt] = result.stdout.strip()
    return out


# --- help and version --------------------------------------------------------------------------

COMMANDS = [
    pytest.param([], ["key", "did", "issue", "verify", "present", "--version"], id="vcgate"),
    pytest.param(["key"], ["new", "import", "show"], id="key"),
    pytest.param(["key", "new"], ["--alg", "--out", "--unencrypted", "--force", "--did-method"], id="key-new"),
    pytest.param(
        ["key", "import"], ["--hex", "--jwk", "--pem", "--pem-password-env", "--alg", "--out"], id="key-import"
    ),
    pytest.param(["key", "show"], ["FILE", "--json"], id="key-show"),
    pytest.param(["did"], ["resolve"], id="did"),
    pytest.param(["did", "resolve"], ["DID", "--compact", "--resolver"], id="did-resolve"),
    pytest.param(
        ["issue"],
        ["--key", "--subject", "--type", "--claims", "--valid-for", "--valid-from", "--format", "--id", "--issuer"],
        id="issue",
    ),
    pytest.param(
        ["verify"], ["[FILE|-]", "--aud", "--nonce", "--json", "--no-holder-binding", "--resolver"], id="verify"
    ),
    pytest.param(["present"], ["--key", "--aud", "--nonce", "--format", "--lifetime", "CREDENTIAL"], id="present"),
    pytest.param(["serve"], ["--policy", "--grpc-port", "--key-file", "--redis", "--rpc", "/nginx/auth",
                             "/traefik/auth", "/envoy/", "/metrics", "/readyz"], id="serve"),
]


@pytest.mark.parametrize(("command", "mentions"), COMMANDS)
def test_help_of_every_command(command: list[str], mentions: list[str]) -> None:
    result = run([*command, "--help"])
    assert result.exit_code == 0, result.stderr
    assert "Examples:" in result.stdout
    for word in mentions:
        assert word in result.stdout, word


def test_version() -> None:
    result = run(["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"vcgate {__version__}"


# --- key new -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "prefix"),
    [
        pytest.param("EdDSA", "did:key:z6Mk", id="EdDSA"),
        pytest.param("ES256", "did:key:zDn", id="ES256"),
        pytest.param("ES256K", "did:key:zQ3s", id="ES256K"),
        pytest.param("ES384", "did:key:z82L", id="ES384"),
        pytest.param("ES512", "did:key:z2J9", id="ES512"),
    ],
)
def test_key_new_writes_an_encrypted_0600_file_and_prints_only_the_did(
    tmp_path: Path, alg: str, prefix: str
) -> None:
    path = tmp_path / "k.key"
    result = run(["key", "new", "--alg", alg, "--out", str(path)])
    assert result.exit_code == 0, result.stderr
    did = did_of(result)
    assert did.startswith(prefix)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    header = read_key_header(path)
    assert header["encryption"]["kdf"] == "scrypt" and "pkcs8" not in header
    assert header["did"] == did
    key = read_key_file(path, passphrase=PW)
    assert key.alg == alg
    assert did_key_from_public_key(key.public_key) == did
    for secret in [*secrets_of(key), PW]:
        assert secret not in result.output


def test_key_new_did_jwk_and_show_without_passphrase(holder: tuple[Path, str]) -> None:
    path, did = holder
    assert did.startswith("did:jwk:")
    result = run(["key", "show", "--json", str(path)], env=NO_PW)
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["did"] == did and shown["kid"] == did + "#0"
    assert shown["alg"] == "ES256" and shown["encrypted"] is True
    assert "d" not in shown["public_jwk"]
    assert did_jwk_from_public_key(PublicKey.from_jwk(shown["public_jwk"])) == did

    text = run(["key", "show", str(path)], env=NO_PW)
    assert text.exit_code == 0
    assert did in text.stdout and "thumbprint:" in text.stdout and "yes (scrypt" in text.stdout


def test_key_new_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_text("precious")
    refused = run(["key", "new", "--unencrypted", "--out", str(path)], env=NO_PW)
    assert_refused(refused, "key_file_invalid")
    assert "--force" in refused.stderr and path.read_text() == "precious"

    forced = run(["key", "new", "--unencrypted", "--force", "--out", str(path)], env=NO_PW)
    assert forced.exit_code == 0
    assert "NOT encrypted" in forced.stderr
    assert read_key_header(path)["encryption"] is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_key_new_without_passphrase_or_terminal_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    result = run(["key", "new", "--out", str(path)], env=NO_PW)
    assert_refused(result, "passphrase_invalid")
    assert "VCGATE_PASSPHRASE" in result.stderr and "terminal" in result.stderr
    assert not path.exists()


def test_key_new_prompts_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "stdin_is_interactive", lambda: True)
    path = tmp_path / "k.key"
    result = run(["key", "new", "--out", str(path)], input="s3cret-pass\ns3cret-pass\n", env=NO_PW)
    assert result.exit_code == 0, result.stderr
    # The runner echoes prompts to stdout; the DID is the last line, the passphrase nowhere.
    did = result.stdout.splitlines()[-1]
    assert did.startswith("did:key:z6Mk")
    assert "s3cret-pass" not in result.output
    assert did_key_from_public_key(read_key_file(path, passphrase="s3cret-pass").public_key) == did


def test_key_new_bad_out_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run(["key", "new", "--out", str(tmp_path / "missing" / "k.key")])
    assert_usage(result, "does not exist")


def test_wrong_passphrase(issuer: tuple[Path, str], holder: tuple[Path, str]) -> None:
    result = run(
        ["issue", "--key", str(issuer[0]), "--subject", holder[1]], env={**ENV, "VCGATE_PASSPHRASE": "wrong"}
    )
    assert_refused(result, "passphrase_invalid")
    assert result.stdout == ""


def test_edited_did_in_key_file_is_refused(
    plain_key: tuple[Path, str], tmp_path: Path, holder: tuple[Path, str]
) -> None:
    # The clear header is not covered by the passphrase: the DID in it is checked against the key.
    path = tmp_path / "edited.key"
    header = json.loads(plain_key[0].read_text())
    header["did"] = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    path.write_text(json.dumps(header))
    assert_refused(run(["issue", "--key", str(path), "--subject", holder[1]], env=NO_PW), "key_file_invalid")
    assert_refused(run(["key", "show", str(path)], env=NO_PW), "key_file_invalid")


# --- key import ----------------------------------------------------------------------------------


def test_key_import_hex_from_stdin(tmp_path: Path) -> None:
    path = tmp_path / "eth.key"
    result = run(["key", "import", "--hex", "-", "--out", str(path)], input=ETH_HEX + "\n")
    assert result.exit_code == 0, result.stderr
    did = did_of(result)
    assert did.startswith("did:key:zQ3s")
    expected = PrivateKey.from_secp256k1_hex(ETH_HEX)
    assert did == did_key_from_public_key(expected.public_key)
    assert read_key_file(path, passphrase=PW).private_bytes_raw() == expected.private_bytes_raw()
    assert ETH_HEX[2:] not in result.output and "warning" not in result.stderr


def test_key_import_hex_on_the_command_line_warns(tmp_path: Path) -> None:
    result = run(["key", "import", "--hex", ETH_HEX, "--unencrypted", "--out", str(tmp_path / "k")], env=NO_PW)
    assert result.exit_code == 0
    assert "shell history" in result.stderr
    assert did_of(result).startswith("did:key:zQ3s")


def test_key_import_hex_from_stdin_needs_the_passphrase_variable(tmp_path: Path) -> None:
    result = run(["key", "import", "--hex", "-", "--out", str(tmp_path / "k")], input=ETH_HEX, env=NO_PW)
    assert_refused(result, "passphrase_invalid")
    assert "VCGATE_PASSPHRASE" in result.stderr


@pytest.mark.parametrize(
    ("args", "input", "code"),
    [
        pytest.param(["--hex", "-"], "zz", "malformed", id="not-hex"),
        pytest.param(["--hex", "-"], "abcd", "malformed", id="short-hex"),
        pytest.param(["--hex", "-", "--alg", "EdDSA"], "00" * 31, "malformed", id="short-seed"),
    ],
)
def test_key_import_bad_hex(tmp_path: Path, args: list[str], input: str, code: str) -> None:
    result = run(["key", "import", *args, "--unencrypted", "--out", str(tmp_path / "k")], input=input, env=NO_PW)
    assert_refused(result, code)


def test_key_import_jwk_and_alg_check(tmp_path: Path) -> None:
    key = PrivateKey.generate("ES256")
    jwk = json.loads(ECAlgorithm.to_jwk(key.crypto_key))
    jwk_file = tmp_path / "k.jwk"
    jwk_file.write_text(json.dumps(jwk))
    ok = run(["key", "import", "--jwk", str(jwk_file), "--unencrypted", "--out", str(tmp_path / "a")], env=NO_PW)
    assert ok.exit_code == 0, ok.stderr
    assert did_of(ok) == did_key_from_public_key(key.public_key)
    assert jwk["d"] not in ok.output

    wrong = run(
        ["key", "import", "--jwk", str(jwk_file), "--alg", "ES256K", "--unencrypted", "--out", str(tmp_path / "b")],
        env=NO_PW,
    )
    assert_refused(wrong, "key_unsupported")
    assert not (tmp_path / "b").exists()


def test_key_import_encrypted_pem(tmp_path: Path) -> None:
    crypto_key = ec.generate_private_key(ec.SECP256K1())
    pem = tmp_path / "k.pem"
    pem.write_bytes(
        crypto_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pem-pw"),
        )
    )
    no_pw = run(["key", "import", "--pem", str(pem), "--out", str(tmp_path / "a")])
    assert_refused(no_pw, "passphrase_invalid")
    assert "--pem-password-env" in no_pw.stderr

    unset = run(["key", "import", "--pem", str(pem), "--pem-password-env", "NOPE_UNSET", "--out", str(tmp_path / "a")])
    assert_refused(unset, "passphrase_invalid")

    ok = run(
        ["key", "import", "--pem", str(pem), "--pem-password-env", "PEM_PW", "--out", str(tmp_path / "a")],
        env={**ENV, "PEM_PW": "pem-pw"},
    )
    assert ok.exit_code == 0, ok.stderr
    assert did_of(ok) == did_key_from_public_key(PrivateKey("ES256K", crypto_key).public_key)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-source"),
        pytest.param(["--hex", "00", "--jwk", "x"], id="two-sources"),
        pytest.param(["--hex", "00", "--pem-password-env", "X"], id="pem-password-without-pem"),
    ],
)
def test_key_import_usage_errors(tmp_path: Path, args: list[str]) -> None:
    assert_usage(run(["key", "import", *args, "--out", str(tmp_path / "k")]))


# --- did resolve ----------------------------------------------------------------------------------


def test_did_resolve(issuer: tuple[Path, str]) -> None:
    did = issuer[1]
    result = run(["did", "resolve", did])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["id"] == did
    assert doc["assertionMethod"] == [f"{did}#{did.split(':')[2]}"]
    compact = run(["did", "resolve", "--compact", "--resolver", "local", did])
    assert compact.stdout.count("\n") == 1 and json.loads(compact.stdout) == doc


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(["did:foo"], "did_invalid", id="invalid"),
        pytest.param(["did:key:zNotAKey"], "did_invalid", id="bad-did-key"),
        pytest.param(["--resolver", "local", "did:web:example.com"], "did_method_not_supported", id="local-no-web"),
        # Refused before any name lookup: no network needed.
        pytest.param(["did:web:example.com%3A6379"], "did_address_forbidden", id="web-port-not-allowed"),
        pytest.param(["--did-web-ports", "8443", "did:web:example.com%3A22"], "did_address_forbidden",
                     id="web-port-not-the-configured-one"),
    ],
)
def test_did_resolve_refusals(args: list[str], code: str) -> None:
    assert_refused(run(["did", "resolve", *args]), code)


# --- issue and verify ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["vc-jose", "vc-jwt11"])
def test_issue_verify_roundtrip(
    credentials: dict[str, str], issuer: tuple[Path, str], holder: tuple[Path, str], tmp_path: Path, fmt: str
) -> None:
    token = credentials[fmt]
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header["kid"] == f"{issuer[1]}#{issuer[1].split(':')[2]}"
    assert header["typ"] == ("vc+jwt" if fmt == "vc-jose" else "JWT")
    cred_file = tmp_path / "cred.jwt"
    cred_file.write_text(token + "\n")

    result = run(["verify", str(cred_file)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"valid credential ({fmt})")
    for text in (issuer[1], holder[1], "ModelAccessCredential", "valid until:"):
        assert text in result.stdout

    as_json = run(["verify", "--json", "-"], input=f"  {token}\n\n")
    assert as_json.exit_code == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["valid"] is True and body["kind"] == "credential" and body["format"] == fmt
    assert body["issuer"] == issuer[1] and body["subject"] == holder[1]
    assert body["types"] == ["VerifiableCredential", "ModelAccessCredential"]
    assert body["claims"] == {"models": ["llama-3-70b"], "tier": "gold"}


@pytest.mark.parametrize("alg", ["ES384", "ES512"])
def test_p384_and_p521_issuer_keys_issue_what_verify_accepts(alg: str, holder: tuple[Path, str], tmp_path: Path) -> None:
    # The verifiers accepted ES384/ES512 while `key new` and the key-file reader refused them.
    key = tmp_path / f"{alg}.key"
    issuer = did_of(run(["key", "new", "--alg", alg, "--out", str(key)]))
    issued = run(["issue", "--key", str(key), "--subject", holder[1], "--type", "ModelAccessCredential",
                  "--claims", '{"models": ["m"]}', "--record", "off"])
    assert issued.exit_code == 0, issued.stderr
    assert json.loads(b64url_decode(issued.stdout.split(".")[0]))["alg"] == alg
    verified = run(["verify", "--json", "-"], input=issued.stdout)
    assert verified.exit_code == 0, verified.stderr
    assert json.loads(verified.stdout)["issuer"] == issuer


def test_issue_options(plain_key: tuple[Path, str], holder: tuple[Path, str], tmp_path: Path) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text('{"team": "research"}')
    result = run(
        [
            "issue", "--key", str(plain_key[0]), "--subject", holder[1], "--claims", f"@{claims}",
            "--id", "urn:example:cred-1", "--type", "A", "--type", "B",
            "--valid-from", "2030-01-01T00:00:00Z", "--valid-for", "1h30m",
        ],
        env=NO_PW,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    payload = json.loads(b64url_decode(result.stdout.strip().split(".")[1]))
    assert payload["id"] == "urn:example:cred-1"
    assert payload["type"] == ["VerifiableCredential", "A", "B"]
    assert payload["validFrom"] == "2030-01-01T00:00:00Z" and payload["validUntil"] == "2030-01-01T01:30:00Z"
    assert payload["credentialSubject"] == {"id": holder[1], "team": "research"}
    assert payload["issuer"] == plain_key[1]
    # Valid from 2030: not yet.
    assert_refused(run(["verify", "-"], input=result.stdout), "not_yet_valid")


def test_issue_claims_from_stdin(plain_key: tuple[Path, str], holder: tuple[Path, str]) -> None:
    result = run(
        ["issue", "--key", str(plain_key[0]), "--subject", holder[1], "--claims", "@-"], input='{"x": 1}', env=NO_PW
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(b64url_decode(result.stdout.split(".")[1]))["credentialSubject"]["x"] == 1


def test_issue_for_a_foreign_issuer_is_refused(plain_key: tuple[Path, str], issuer: tuple[Path, str]) -> None:
    result = run(["issue", "--key", str(plain_key[0]), "--subject", issuer[1], "--issuer", issuer[1]], env=NO_PW)
    assert_refused(result, "untrusted_key")
    assert result.stdout == ""


def test_tampered_credential(credentials: dict[str, str]) -> None:
    forged = tamper(credentials["vc-jose"], tier="platinum")
    assert_refused(run(["verify", "-"], input=forged), "signature_invalid")
    as_json = run(["verify", "--json", "-"], input=forged)
    assert as_json.exit_code == 1 and as_json.stderr == ""
    assert json.loads(as_json.stdout) == {
        "valid": False,
        "error": "signature_invalid",
        "message": "the signature does not verify",
        "hint": "the token was altered or signed with another key: get a fresh copy from its issuer",
    }


def test_expired_credential(plain_key: tuple[Path, str], holder: tuple[Path, str]) -> None:
    from vcgate.credentials import issue_credential

    # `vcgate issue` refuses to issue an expired credential (below), so the library makes one.
    did = plain_key[1]
    token = issue_credential(
        read_key_file(plain_key[0], passphrase=None), issuer=did, kid=f"{did}#{did.split(':')[2]}",
        subject=holder[1], valid_from=1_577_836_800, valid_until=1_577_840_400, format="vc-jwt11",
    )
    result = run(["verify", "-"], input=token)
    assert_refused(result, "expired")
    assert "expired at 2020-01-01T01:00:00Z" in result.stderr  # ISO 8601, not Unix seconds
    assert json.loads(run(["verify", "--json", "-"], input=token).stdout)["error"] == "expired"


def test_issue_refuses_a_credential_expired_at_issue(plain_key: tuple[Path, str], holder: tuple[Path, str]) -> None:
    args = ["issue", "--key", str(plain_key[0]), "--subject", holder[1], "--valid-from", "2020-01-01T00:00:00Z"]
    result = run([*args, "--valid-for", "1h"], env=NO_PW)
    assert_usage(result, "--valid-for", "ends at 2020-01-01T01:00:00Z, in the past")
    assert result.stdout == ""
    assert run([*args, "--valid-for", "36500d"], env=NO_PW).exit_code == 0  # started in the past, valid now


@pytest.mark.parametrize(
    ("claims", "fragment"),
    [
        pytest.param("{bad", "not valid JSON", id="not-json"),
        pytest.param("[1, 2]", "must be a JSON object", id="list"),
        pytest.param('"text"', "must be a JSON object", id="string"),
        pytest.param('{"a": 1, "a": 2}', "duplicate", id="duplicate-member"),
        pytest.param('{"id": "did:key:z6Mkother"}', "must not set 'id'", id="sets-id"),
        pytest.param("@", "give a file", id="empty-at"),
        pytest.param("@/nonexistent/claims.json", "no such file", id="missing-file"),
    ],
)
def test_bad_claims_are_usage_errors(
    plain_key: tuple[Path, str], holder: tuple[Path, str], claims: str, fragment: str
) -> None:
    result = run(["issue", "--key", str(plain_key[0]), "--subject", holder[1], "--claims", claims], env=NO_PW)
    assert_usage(result, "--claims", fragment)
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param(["--subject", "not-a-did"], "not a valid DID", id="subject"),
        pytest.param(["--subject", "did:key:z6Mkx", "--valid-for", "30"], "not a duration", id="bare-number"),
        pytest.param(["--subject", "did:key:z6Mkx", "--valid-for", "1y"], "not a duration", id="unknown-unit"),
        pytest.param(["--subject", "did:key:z6Mkx", "--valid-from", "yesterday"], "ISO 8601", id="valid-from"),
        pytest.param(["--subject", "did:key:z6Mkx", "--format", "ldp"], "vc-jose", id="format"),
        pytest.param(["--subject", "did:key:z6Mkx", "--id", "not a uri"], "not a URI", id="id"),
        pytest.param(
            ["--subject", "did:key:z6Mkx", "--valid-from", "9999-12-31T00:00:00Z", "--valid-for", "2d"],
            "9999",
            id="past-9999",
        ),
    ],
)
def test_issue_usage_errors(plain_key: tuple[Path, str], args: list[str], fragment: str) -> None:
    assert_usage(run(["issue", "--key", str(plain_key[0]), *args], env=NO_PW), fragment)


def test_missing_files_are_clear_usage_errors(tmp_path: Path, holder: tuple[Path, str]) -> None:
    missing = str(tmp_path / "nope.jwt")
    assert_usage(run(["verify", missing]), "no such file")
    assert_usage(run(["issue", "--key", missing, "--subject", holder[1]]), "does not exist")
    assert_usage(run(["key", "show", missing]), "does not exist")
    assert_usage(run(["present", "--key", missing, "--aud", AUD, "--nonce", NONCE, "x.jwt"]), "does not exist")


@pytest.mark.parametrize(
    ("token", "code"),
    [
        pytest.param("garbage", "malformed", id="garbage"),
        pytest.param("a.b.c d.e.f", "malformed", id="two-tokens"),
        pytest.param("eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.c2ln", "algorithm_not_allowed", id="alg-none"),
        pytest.param("eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2ln", "algorithm_not_allowed", id="hmac"),
        pytest.param("héllo.x.y", "malformed", id="not-ascii"),
    ],
)
def test_verify_refuses_bad_tokens(token: str, code: str) -> None:
    assert_refused(run(["verify", "-"], input=token), code)


def test_verify_reads_stdin_without_argument(credentials: dict[str, str]) -> None:
    assert run(["verify"], input=credentials["vc-jose"]).exit_code == 0


def test_verify_a_credential_when_a_presentation_is_expected(credentials: dict[str, str]) -> None:
    # A bare credential carries no proof of possession: with --aud/--nonce it must not pass.
    result = run(["verify", "--aud", AUD, "--nonce", NONCE, "-"], input=credentials["vc-jose"])
    assert_refused(result, "type_mismatch")


# --- present ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def presentation(holder: tuple[Path, str], credentials: dict[str, str], keydir: Path) -> str:
    cred_file = keydir / "cred.jwt"
    cred_file.write_text(credentials["vc-jose"] + "\n")
    result = run(["present", "--key", str(holder[0]), "--aud", AUD, "--nonce", NONCE, str(cred_file)])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.strip()


def test_present_verify(presentation: str, holder: tuple[Path, str], issuer: tuple[Path, str]) -> None:
    header = json.loads(b64url_decode(presentation.split(".")[0]))
    assert header["typ"] == "vp+jwt" and header["kid"] == holder[1] + "#0"
    result = run(["verify", "--aud", AUD, "--nonce", NONCE, "-"], input=presentation)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("valid presentation (vc-jose)")
    assert holder[1] in result.stdout and issuer[1] in result.stdout and NONCE in result.stdout

    body = json.loads(run(["verify", "--json", "--aud", AUD, "--nonce", NONCE, "-"], input=presentation).stdout)
    assert body["valid"] is True and body["kind"] == "presentation" and body["holder"] == holder[1]
    assert body["audience"] == [AUD] and body["nonce"] == NONCE
    assert body["checked"] == {"audience": True, "nonce": True, "holder_binding": True}
    assert [c["issuer"] for c in body["credentials"]] == [issuer[1]]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(["--aud", AUD, "--nonce", "n-other"], "nonce_mismatch", id="wrong-nonce"),
        pytest.param(["--aud", "https://other.example", "--nonce", NONCE], "audience_mismatch", id="wrong-aud"),
    ],
)
def test_present_verify_refusals(presentation: str, args: list[str], code: str) -> None:
    assert_refused(run(["verify", *args, "-"], input=presentation), code)


def test_presentation_without_aud_and_nonce_warns(presentation: str) -> None:
    result = run(["verify", "-"], input=presentation)
    assert result.exit_code == 0
    assert "audience was not checked" in result.stderr and "nonce was not checked" in result.stderr


def test_present_vc_jwt11_from_stdin_and_literal(
    holder: tuple[Path, str], credentials: dict[str, str]
) -> None:
    result = run(
        [
            "present", "--key", str(holder[0]), "--aud", AUD, "--nonce", NONCE, "--format", "vc-jwt11",
            "--lifetime", "2m", "-", credentials["vc-jose"],
        ],
        input=credentials["vc-jwt11"] + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    token = result.stdout.strip()
    payload = json.loads(b64url_decode(token.split(".")[1]))
    assert payload["exp"] - payload["iat"] == 120 and len(payload["vp"]["verifiableCredential"]) == 2
    body = json.loads(run(["verify", "--json", "--aud", AUD, "--nonce", NONCE, "-"], input=token).stdout)
    assert body["valid"] is True and body["format"] == "vc-jwt11"
    assert [c["format"] for c in body["credentials"]] == ["vc-jwt11", "vc-jose"]


def test_holder_binding(plain_key: tuple[Path, str], credentials: dict[str, str]) -> None:
    # plain_key is not the subject of the credential: presenting warns, verifying refuses.
    result = run(
        ["present", "--key", str(plain_key[0]), "--aud", AUD, "--nonce", NONCE, credentials["vc-jose"]], env=NO_PW
    )
    assert result.exit_code == 0
    assert "not the holder" in result.stderr
    token = result.stdout.strip()
    assert_refused(run(["verify", "--aud", AUD, "--nonce", NONCE, "-"], input=token), "holder_mismatch")
    unbound = run(["verify", "--no-holder-binding", "--aud", AUD, "--nonce", NONCE, "-"], input=token)
    assert unbound.exit_code == 0, unbound.stderr


def test_present_refuses_what_is_not_a_credential(plain_key: tuple[Path, str], tmp_path: Path) -> None:
    base = ["present", "--key", str(plain_key[0]), "--aud", AUD, "--nonce", NONCE]
    assert_usage(run([*base, "no-such-file"], env=NO_PW), "no such file")
    assert_usage(run([*base, "-", "-"], env=NO_PW), "once")
    assert_usage(run(base, env=NO_PW), "CREDENTIAL")
    junk = tmp_path / "junk.jwt"
    junk.write_text("not a token")
    assert_refused(run([*base, str(junk)], env=NO_PW), "malformed")


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("45s", 45, id="s"),
        pytest.param("90m", 5400, id="m"),
        pytest.param("12h", 43200, id="h"),
        pytest.param("30d", 2592000, id="d"),
        pytest.param("2w", 1209600, id="w"),
        pytest.param("1h30m", 5400, id="compound"),
        pytest.param(" 5M ", 300, id="case-and-space"),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "0d", "-1d", "1y", "d", "1.5h", "1h 30m", "999999w"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_timestamp() -> None:
    assert parse_timestamp("2026-01-01T00:00:00Z") == 1767225600
    assert parse_timestamp("2026-01-01T01:00:00+01:00") == 1767225600
    assert parse_timestamp("2026-01-01T00:00:00") == 1767225600  # no zone: UTC
    with pytest.raises(ValueError):
        parse_timestamp("1/1/2026")


# --- main() and the console script -------------------------------------------------------------


def test_main_maps_outcomes_to_exit_codes(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0

    with pytest.raises(SystemExit) as refused:
        main(["did", "resolve", "did:foo"])
    assert refused.value.code == 1
    assert capsys.readouterr().err.startswith("error: did_invalid: ")

    with pytest.raises(SystemExit) as usage:
        main(["issue", "--bogus"])
    assert usage.value.code == 2
    assert "No such option" in capsys.readouterr().err

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module.cli, "main", interrupted)
    with pytest.raises(SystemExit) as stopped:
        main(["verify"])
    assert stopped.value.code == 130
    assert "error: interrupted" in capsys.readouterr().err


def _script(
    args: list[str], *, input: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("VCGATE_PASSPHRASE", "VCGATE_DEBUG")}
    return subprocess.run(
        [str(VCGATE_BIN), *args],
        input=input,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(not VCGATE_BIN.exists(), reason="the vcgate console script is not installed in this venv")
def test_console_script_roundtrip(tmp_path: Path) -> None:
    key_file = tmp_path / "k.key"
    made = _script(["key", "new", "--out", str(key_file)], env={"VCGATE_PASSPHRASE": PW})
    assert made.returncode == 0, made.stderr
    did = made.stdout.strip()
    assert did.startswith("did:key:z6Mk")

    issued = _script(
        ["issue", "--key", str(key_file), "--subject", did, "--valid-for", "1h"], env={"VCGATE_PASSPHRASE": PW}
    )
    assert issued.returncode == 0, issued.stderr
    verified = _script(["verify", "--json", "-"], input=issued.stdout)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["issuer"] == did


@pytest.mark.skipif(not VCGATE_BIN.exists(), reason="the vcgate console script is not installed in this venv")
def test_console_script_errors_without_traceback(tmp_path: Path) -> None:
    refused = _script(["verify", "-"], input="garbage\n")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: malformed: ") and "Traceback" not in refused.stderr

    no_pass = _script(["key", "new", "--out", str(tmp_path / "k.key")], input="")
    assert no_pass.returncode == 1
    assert "error: passphrase_invalid: " in no_pass.stderr and "Traceback" not in no_pass.stderr

    usage = _script(["issue", "--claims", "{bad"])
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def _on_terminal(args: list[str], answers: Sequence[tuple[bytes, bytes]]) -> tuple[int, str, str]:
    """Run the script with stdin/stderr on a new pseudo-terminal (its controlling tty) and
    stdout on a pipe; answer each prompt that contains ``wait_for`` with ``reply``."""
    import fcntl
    import pty
    import select
    import termios
    import time

    master, slave = pty.openpty()

    def take_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {k: v for k, v in os.environ.items() if k not in ("VCGATE_PASSPHRASE", "VCGATE_DEBUG")}
    proc = subprocess.Popen(
        [str(VCGATE_BIN), *args], stdin=slave, stderr=slave, stdout=subprocess.PIPE, preexec_fn=take_terminal, env=env
    )
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    return

    try:
        for wait_for, reply in answers:
            read_until(wait_for, 20)
            assert wait_for in seen, seen
            time.sleep(0.05)  # let getpass switch echo off before the answer arrives
            os.write(master, reply)
        out, _ = proc.communicate(timeout=30)
        read_until(b"\0", 0.3)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return proc.returncode, out.decode(), seen.decode(errors="replace")


@pytest.mark.skipif(
    sys.platform != "linux" or not VCGATE_BIN.exists(), reason="needs Linux pseudo-terminals and the console script"
)
def test_console_script_prompts_on_a_real_terminal(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    code, out, terminal = _on_terminal(
        ["key", "new", "--out", str(path)], [(b"passphrase for", b"tty-pass\n"), (b"Repeat", b"tty-pass\n")]
    )
    assert code == 0, terminal
    assert out.startswith("did:key:z6Mk") and out.count("\n") == 1  # stdout: the DID only
    assert "tty-pass" not in terminal  # the prompt does not echo the passphrase
    assert did_key_from_public_key(read_key_file(path, passphrase="tty-pass").public_key) == out.strip()

    code, out, terminal = _on_terminal(["key", "new", "--out", str(tmp_path / "q.key")], [(b"passphrase for", b"\x03")])
    assert code == 130 and out == ""
    assert "error: interrupted" in terminal and "Traceback" not in terminal
    assert not (tmp_path / "q.key").exists()
