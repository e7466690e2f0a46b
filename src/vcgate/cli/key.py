"""``vcgate key``: create, import and inspect key files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..did import Resolver
from ..errors import KeyFileError, MalformedError, PassphraseError, UnsupportedKeyError
from ..keys import PrivateKey, PublicKey, read_key_header
from .base import (
    EXISTING_FILE,
    PASSPHRASE_ENV,
    SIGNING_ALGORITHMS,
    check_out_path,
    cli,
    echo_json,
    key_file_did,
    parse_json_object,
    print_fields,
    read_source,
    read_stdin,
    save_key,
    signing_kid,
    stdin_is_interactive,
    warn,
)

@cli.group()
def key() -> None:
    """Create, import and inspect key files.

    Key files are JSON, mode 0600, encrypted with a passphrase (scrypt + AES-256-GCM). The
    passphrase comes from $VCGATE_PASSPHRASE or, on a terminal, from a hidden prompt.
    The public part (alg, public JWK, DID) is readable without it.

    \b
    Examples:
      vcgate key new --alg ES256 --out issuer.key
      vcgate key show issuer.key
    """


_did_method_option = click.option(
    "--did-method",
    type=click.Choice(["key", "jwk"]),
    default="key",
    help="DID method of the key's DID, recorded in the key file.",
)
_unencrypted_option = click.option(
    "--unencrypted", is_flag=True, help="Write the private key in the clear (tests only; no passphrase asked)."
)
_force_option = click.option("--force", is_flag=True, help="Overwrite an existing key file.")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print {did, file, alg, encrypted} as JSON.")


def _echo_new_key(did: str, out: Path, alg: str, unencrypted: bool, as_json: bool) -> None:
    if as_json:
        echo_json({"did": str(did), "file": str(out), "alg": alg, "encrypted": not unencrypted})
    else:
        click.echo(did)


@key.command("new")
@click.option("--alg", type=click.Choice(SIGNING_ALGORITHMS), default="EdDSA", help="Signature algorithm (and curve).")
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Key file to write."
)
@_did_method_option
@_unencrypted_option
@_force_option
@_json_option
def key_new(alg: str, out: Path, did_method: str, unencrypted: bool, force: bool, as_json: bool) -> None:
    """Generate a key, write it to an encrypted key file, print its DID.

    EdDSA is Ed25519, ES256 is P-256, ES256K is secp256k1. Only the DID goes to stdout;
    the key never does.

    \b
    Examples:
      vcgate key new --out issuer.key
      VCGATE_PASSPHRASE=... vcgate key new --alg ES256K --out agent.key
      DID=$(vcgate key new --alg ES256 --did-method jwk --out holder.key)
    """
    check_out_path(out, force)
    did = save_key(PrivateKey.generate(alg), out, did_method=did_method, unencrypted=unencrypted, force=force)
    _echo_new_key(did, out, alg, unencrypted, as_json)


def _key_from_hex(text: str, alg: str) -> PrivateKey:
    if alg == "ES256K":
        return PrivateKey.from_secp256k1_hex(text)
    value = text.strip().removeprefix("0x").removeprefix("0X")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise MalformedError("the key is not valid hex") from exc
    if len(raw) != 32:
        raise MalformedError("a private key is 32 bytes (64 hex digits)")
    return PrivateKey.from_raw_private(alg, raw)


def _read_hex(value: str) -> str:
    if value != "-":
        warn("a key given on the command line can end up in shell history; prefer --hex - (stdin)")
        return value
    if stdin_is_interactive():
        return click.prompt("Private key (hex)", hide_input=True, err=True)
    data = read_stdin("hex key")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise MalformedError("the key is not valid hex") from None


def _pem_password(env_name: str | None) -> bytes | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise PassphraseError(f"--pem-password-env names {env_name}, which is not set")
    return value.encode("utf-8")


@key.command("import", short_help="Import a hex, JWK or PEM private key; print its DID.")
@click.option("--hex", "hex_", metavar="HEX|-", help="Raw 32-byte private key in hex ('-': read from stdin).")
@click.option("--jwk", "jwk_file", metavar="FILE|-", help="Private JWK file ('-': stdin).")
@click.option("--pem", "pem_file", metavar="FILE|-", help="PEM private key file, PKCS#8 or SEC1 ('-': stdin).")
@click.option("--pem-password-env", metavar="VAR", help="Environment variable holding the PEM's password.")
@click.option(
    "--alg",
    type=click.Choice(SIGNING_ALGORITHMS),
    default=None,
    help="Algorithm of a --hex key [default: ES256K]; for --jwk/--pem it must match the key.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Key file to write.")
@_did_method_option
@_unencrypted_option
@_force_option
@_json_option
def key_import(
    hex_: str | None,
    jwk_file: str | None,
    pem_file: str | None,
    pem_password_env: str | None,
    alg: str | None,
    out: Path,
    did_method: str,
    unencrypted: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Import a private key (hex, JWK or PEM) into a key file; print its DID.

    Give exactly one of --hex, --jwk, --pem. --hex - reads the key from stdin, so it stays
    out of shell history (the passphrase then comes from $VCGATE_PASSPHRASE).

    \b
    Examples:
      printf %s "$ETH_KEY" | VCGATE_PASSPHRASE=... vcgate key import --hex - --out eth.key
      vcgate key import --jwk private.jwk --out issuer.key
      PEM_PW=... vcgate key import --pem key.pem --pem-password-env PEM_PW --out issuer.key
    """
    sources = [name for name, v in (("--hex", hex_), ("--jwk", jwk_file), ("--pem", pem_file)) if v is not None]
    if len(sources) != 1:
        raise click.UsageError("give exactly one of --hex, --jwk, --pem")
    if pem_password_env is not None and pem_file is None:
        raise click.UsageError("--pem-password-env goes with --pem")
    from_stdin = "-" in (hex_, jwk_file, pem_file)
    if from_stdin and not unencrypted and PASSPHRASE_ENV not in os.environ and not stdin_is_interactive():
        # stdin carries the key, so it cannot also answer the passphrase prompt.
        raise PassphraseError(f"the key comes from stdin: set {PASSPHRASE_ENV} for the passphrase")
    check_out_path(out, force)
    if hex_ is not None:
        key_obj = _key_from_hex(_read_hex(hex_), alg or "ES256K")
    elif jwk_file is not None:
        jwk = parse_json_object(read_source(jwk_file, "JWK", "--jwk"), "JWK")
        key_obj = PrivateKey.from_jwk(jwk)
    else:
        assert pem_file is not None
        data = read_source(pem_file, "PEM", "--pem")
        try:
            key_obj = PrivateKey.from_pem(data, _pem_password(pem_password_env))
        except PassphraseError as exc:
            raise PassphraseError(f"{exc.message} (--pem-password-env VAR)") from exc
    if alg is not None and key_obj.alg != alg:
        raise UnsupportedKeyError(f"the key is {key_obj.alg}, not {alg}")
    did = save_key(key_obj, out, did_method=did_method, unencrypted=unencrypted, force=force)
    _echo_new_key(did, out, key_obj.alg, unencrypted, as_json)


@key.command("show")
@click.argument("file", type=EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def key_show(file: Path, as_json: bool) -> None:
    """Print a key file's public part (no passphrase needed).

    Shows alg, DID, kid, public JWK and RFC 7638 thumbprint; never private material.

    \b
    Examples:
      vcgate key show issuer.key
      vcgate key show --json issuer.key | jq -r .did
    """
    header = read_key_header(file)
    public = PublicKey.from_jwk(header["public_jwk"])
    if public.alg != header["alg"]:
        raise KeyFileError(f"{file}: alg does not match the public key")
    did = key_file_did(header, public, file)
    kid = signing_kid(did, public, "assertionMethod", Resolver.local()) if did.method in ("key", "jwk") else None
    enc = header.get("encryption")
    summary = {
        "file": str(file),
        "alg": public.alg,
        "did": str(did),
        "kid": kid,
        "public_jwk": public.jwk(),
        "thumbprint": public.thumbprint(),
        "encrypted": enc is not None,
    }
    if public.alg == "ES256K":  # the same key is an Ethereum account (registry namespace, gas)
        summary["ethereum_address"] = _eth_address(public)
    if as_json:
        echo_json(summary)
        return
    print_fields(
        [
            ("file", summary["file"]),
            ("alg", f"{public.alg} ({public.curve})"),
            ("did", summary["did"]),
            ("kid", kid),
            ("thumbprint", summary["thumbprint"]),
            ("encrypted", f"yes ({enc.get('kdf')}, {enc.get('cipher')})" if isinstance(enc, dict) else "NO"),
            ("public jwk", json.dumps(summary["public_jwk"], separators=(",", ":"))),
            *([("ethereum address", summary["ethereum_address"])] if "ethereum_address" in summary else []),
        ]
    )


def _eth_address(public: PublicKey) -> str | None:
    try:
        from ..chain import eth_address  # keccak and EIP-55 come with the chain extra
    except ImportError:
        warn("the Ethereum address needs the chain extra: pip install 'vcgate[chain]'")
        return None
    return str(eth_address(public))


