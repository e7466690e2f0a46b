"""The ``vcgate`` command: keys, DIDs, issuing, presenting and verifying credentials.

Exit codes (the contract scripts rely on, also in ``docs/cli.md``):

* 0 - done; for ``verify``: the token is valid.
* 1 - refused or failed: a vcgate error, printed as ``error: <code>: <message>`` on stderr
  (``<code>`` is the stable code of :mod:`vcgate.errors`, or ``io_error`` for a file that
  cannot be read or written); for ``verify --json`` the refusal is JSON on stdout instead.
* 2 - usage error: unknown option, missing argument, bad option value, missing input file.
* 130 - interrupted (Ctrl-C).

Commands are thin: they parse options, call the library, and print. The helpers below
(passphrases, key loading, durations, token input, resolvers) are shared so that later
command groups (``chain``, ``registry``, ``revoke``, ``status``, ``policy``, ``serve``,
``audit``) plug in with a ``@cli.group()`` / ``@cli.command()`` and reuse them.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click

from .. import __version__
from ..credentials import FORMAT_VC_JOSE, FORMAT_VC_JWT11, Verifier, create_presentation, issue_credential
from ..credentials.jws import JWS, parse_jws
from ..strictjson import loads_strict
from ..credentials.jwt import DEFAULT_CONTEXTS, VC_JOSE_TYPS, VP_JOSE_TYPS, read_credential, to_xsd_datetime
from ..credentials.models import VerifiedCredential, VerifiedPresentation
from ..did import DID, Resolver, did_jwk_from_public_key, did_key_from_public_key
from ..errors import (
    InvalidDIDError,
    KeyFileError,
    MalformedError,
    PassphraseError,
    TypeMismatchError,
    UnsupportedKeyError,
    UntrustedKeyError,
    VCGateError,
)
from ..keys import ALGORITHMS, PrivateKey, PublicKey, read_key_file, read_key_header, write_key_file

__all__ = ["cli", "main"]

#: Environment variable holding the key-file passphrase (non-interactive use).
PASSPHRASE_ENV = "VCGATE_PASSPHRASE"
#: Set to 1 to see a traceback for an unexpected internal error.
DEBUG_ENV = "VCGATE_DEBUG"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

FORMATS = (FORMAT_VC_JOSE, FORMAT_VC_JWT11)
#: Algorithms vcgate signs with (verification also accepts aliases such as "Ed25519").
SIGNING_ALGORITHMS = ("EdDSA", "ES256", "ES256K")
RESOLVERS = ("default", "local")

# Inputs are tokens, JSON claims and JWKs: a few KiB. Reading is capped so that a wrong
# path (a disk image, /dev/zero) fails fast instead of filling memory.
_MAX_INPUT_BYTES = 1024 * 1024
# Latest instant an XML Schema dateTime with a four-digit year can carry.
_MAX_TIMESTAMP = 253402300799
_MAX_DURATION = 100 * 366 * 86400
_JWS_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+")


# --- errors and output ----------------------------------------------------------------------


class CLIError(click.ClickException):
    """A refusal: ``error: <code>: <message>`` on stderr, exit code 1."""

    exit_code = EXIT_REFUSED

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.code}: {self.message}", err=True)


def _os_message(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _to_cli_error(exc: BaseException) -> CLIError:
    if isinstance(exc, VCGateError):
        return CLIError(exc.code, exc.message)
    if isinstance(exc, OSError):
        return CLIError("io_error", _os_message(exc))
    raise TypeError(exc)  # pragma: no cover - callers pass only the two kinds above


def warn(message: str) -> None:
    """A warning on stderr; stdout stays machine-readable."""
    click.echo(f"warning: {message}", err=True)


def info(message: str) -> None:
    click.echo(message, err=True)


def echo_json(value: Any, *, compact: bool = False) -> None:
    if compact:
        click.echo(json.dumps(value, separators=(",", ":"), sort_keys=False))
    else:
        click.echo(json.dumps(value, indent=2))


class VCGateGroup(click.Group):
    """A click group that turns vcgate errors and file errors into ``CLIError``.

    Doing it here rather than only in :func:`main` means ``CliRunner`` tests, and any program
    that embeds ``cli``, see the same output and exit codes as the console script.
    """

    group_class = type  # subgroups (``key``, ``did``, later ``chain`` ...) use this class too

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VCGateError as exc:
            raise _to_cli_error(exc) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click handles a closed pipe (`vcgate ... | head`) quietly
            raise _to_cli_error(exc) from exc


# --- parameter types ------------------------------------------------------------------------


_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"1h30m"`` -> seconds. Units: s, m, h, d, w.

    A bare number is refused: ``--valid-for 30`` could mean seconds or days.
    """
    value = text.strip().lower()
    if not value or _DURATION_PART.sub("", value):
        raise ValueError(f"{text!r} is not a duration; use a number and a unit (s, m, h, d, w), e.g. 30d, 12h, 90m")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    if seconds <= 0:
        raise ValueError("the duration must be positive")
    if seconds > _MAX_DURATION:
        raise ValueError("the duration must be at most 100 years")
    return seconds


def parse_timestamp(text: str) -> float:
    """An ISO 8601 date-time (``2026-01-01T00:00:00Z``; no zone means UTC) or ``now``."""
    value = text.strip()
    if value.lower() == "now":
        return float(int(time.time()))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date-time such as 2026-01-01T00:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    ts = parsed.timestamp()
    if not 0 <= ts <= _MAX_TIMESTAMP:
        raise ValueError(f"{text!r} is out of range")
    return ts


class DurationType(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class TimestampType(click.ParamType):
    name = "DATETIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_timestamp(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class DIDType(click.ParamType):
    name = "DID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> DID:
        try:
            return DID(value)
        except InvalidDIDError as exc:
            self.fail(exc.message, param, ctx)


DURATION = DurationType()
TIMESTAMP = TimestampType()
DID_PARAM = DIDType()
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


# --- input ------------------------------------------------------------------------------------


def stdin_is_interactive() -> bool:
    """Whether vcgate may prompt. Tests replace this to exercise the prompt."""
    stdin = sys.stdin
    try:
        return stdin is not None and stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _read_stream(stream: Any, what: str) -> bytes:
    data = stream.read(_MAX_INPUT_BYTES + 1)
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > _MAX_INPUT_BYTES:
        raise MalformedError(f"{what} is larger than {_MAX_INPUT_BYTES} bytes")
    return data


def read_stdin(what: str) -> bytes:
    """Read all of stdin (binary, size-capped)."""
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    return _read_stream(stream, what)


def read_file(path: str | os.PathLike[str], what: str, param_hint: str | None = None) -> bytes:
    """Read a file given on the command line (size-capped). A missing file is a usage error."""
    if not os.path.exists(path):
        raise click.BadParameter(f"no such file: {os.fspath(path)[:200]}", param_hint=param_hint or what)
    with open(path, "rb") as fh:
        return _read_stream(fh, what)


def read_source(source: str, what: str, param_hint: str | None = None) -> bytes:
    """``-`` for stdin, else a file path."""
    return read_stdin(what) if source == "-" else read_file(source, what, param_hint)


def _ascii_text(data: bytes, what: str) -> str:
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise MalformedError(f"{what} is not ASCII text (a compact JWT is ASCII)") from None


def read_tokens(source: str, what: str = "token", param_hint: str | None = None) -> list[str]:
    """JWTs from ``-`` (stdin, whitespace-separated), a file, or the literal JWT itself."""
    if source == "-":
        text = _ascii_text(read_stdin(what), what)
    elif os.path.exists(source):
        text = _ascii_text(read_file(source, what, param_hint), what)
    elif _JWS_SHAPE.fullmatch(source.strip()):
        return [source.strip()]
    else:
        raise click.BadParameter(f"no such file, and not a JWT: {source[:80]!r}", param_hint=param_hint or what)
    tokens = text.split()
    if not tokens:
        raise MalformedError(f"{what}: no token in {'stdin' if source == '-' else source}")
    return tokens


def read_one_token(source: str, what: str = "token", param_hint: str | None = None) -> str:
    tokens = read_tokens(source, what, param_hint)
    if len(tokens) != 1:
        raise MalformedError(f"{what}: expected one token, found {len(tokens)}")
    return tokens[0]


def parse_json_object(text: str | bytes, what: str) -> dict[str, Any]:
    """Strict JSON (no duplicate names, no NaN) that must be an object; else a usage error."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        value = loads_strict(data, what=what)
    except VCGateError as exc:
        raise click.BadParameter(exc.message) from None
    if not isinstance(value, dict):
        raise click.BadParameter(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def read_claims(value: str | None) -> dict[str, Any]:
    """``--claims``: inline JSON, ``@file``, or ``@-`` for stdin."""
    if value is None:
        return {}
    if value.startswith("@"):
        source = value[1:]
        if not source:
            raise click.BadParameter("give a file after '@', or '@-' for stdin", param_hint="--claims")
        try:
            data = read_source(source, "claims", "--claims")
            return parse_json_object(data, "claims")
        except click.BadParameter as exc:
            exc.param_hint = "--claims"
            raise
    try:
        return parse_json_object(value, "claims")
    except click.BadParameter as exc:
        exc.param_hint = "--claims"
        raise


# --- passphrases and keys --------------------------------------------------------------------


def read_passphrase(*, prompt: str, confirm: bool) -> str:
    """The key-file passphrase: ``$VCGATE_PASSPHRASE``, else a hidden prompt on a terminal.

    Without a terminal and without the variable this fails at once instead of waiting for
    input that will never come (a cron job, a CI step, a pipe).
    """
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        if not value:
            raise PassphraseError(f"{PASSPHRASE_ENV} is set but empty")
        return value
    if not stdin_is_interactive():
        raise PassphraseError(
            f"a passphrase is needed and there is no terminal to ask on: set {PASSPHRASE_ENV}"
        )
    value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    if not value:
        raise PassphraseError("the passphrase must not be empty")
    return value


def signing_kid(did: str, key: PublicKey, purpose: str, resolver: Resolver) -> str:
    """The verification method of ``did`` that holds ``key`` for ``purpose`` (the JWS ``kid``).

    For did:key that is ``did#<method-specific-id>``, for did:jwk ``did#0``; for other methods
    the DID document is resolved. A DID that does not authorise the key is refused here, so
    vcgate never signs something its own verifier would reject.
    """
    doc = resolver.resolve(did)
    for vm in doc.methods_for(purpose, key.alg):
        if vm.public_key == key:
            return vm.id
    raise UntrustedKeyError(f"{did[:100]} does not authorise this key for {purpose}")


def did_for_key(public: PublicKey, method: str) -> DID:
    if method == "key":
        return did_key_from_public_key(public)
    if method == "jwk":
        return did_jwk_from_public_key(public)
    raise UnsupportedKeyError(f"unsupported DID method {method!r} for a key; use key or jwk")


def key_file_did(header: Mapping[str, Any], public: PublicKey, path: str | os.PathLike[str]) -> DID:
    """The DID recorded in a key file, checked against the file's public key.

    The header is not covered by the passphrase, so a did:key / did:jwk in it is recomputed
    from the key; a file without one gets the key's did:key.
    """
    value = header.get("did")
    if value is None:
        return did_key_from_public_key(public)
    try:
        did = DID(value)
    except InvalidDIDError as exc:
        raise KeyFileError(f"{path}: the recorded DID is invalid: {exc.message}") from exc
    if did.method in ("key", "jwk"):
        try:
            signing_kid(did, public, "assertionMethod", Resolver.local())
        except VCGateError as exc:
            raise KeyFileError(f"{path}: the recorded DID {did[:60]}... does not match the key") from exc
    return did


@dataclass(frozen=True)
class LoadedKey:
    """A decrypted key file: the key and the DID it speaks for."""

    path: Path
    key: PrivateKey
    did: DID


def load_key(path: Path) -> LoadedKey:
    """Read a key file, asking for the passphrase only when the file is encrypted."""
    header = read_key_header(path)
    passphrase = None
    if header.get("encryption") is not None:
        passphrase = read_passphrase(prompt=f"Passphrase for {path}", confirm=False)
    key = read_key_file(path, passphrase=passphrase)
    return LoadedKey(path, key, key_file_did(header, key.public_key, path))


@dataclass(frozen=True)
class NetworkOptions:
    """Where did:web and status-list fetches may go: extra networks and a private CA bundle."""

    allow_networks: tuple[str, ...] = ()
    ca_bundle: str | None = None

    @property
    def verify(self) -> Any:
        return self.ca_bundle if self.ca_bundle is not None else True


def make_resolver(name: str, network: NetworkOptions = NetworkOptions()) -> Resolver:
    """``local``: did:key and did:jwk, no network. ``default``: adds did:web."""
    if name == "local":
        return Resolver.local()
    from ..did import JWKMethod, KeyMethod, WebMethod

    return Resolver(
        [KeyMethod(), JWKMethod(), WebMethod(allow_networks=network.allow_networks, verify=network.verify)]
    )


def save_key(key: PrivateKey, out: Path, *, did_method: str, unencrypted: bool, force: bool) -> DID:
    """Write a key file (asking for a new passphrase unless unencrypted) and return its DID."""
    did = did_for_key(key.public_key, did_method)
    passphrase = None if unencrypted else read_passphrase(prompt=f"New passphrase for {out}", confirm=True)
    write_key_file(out, key, passphrase=passphrase, extra={"did": str(did)}, overwrite=force)
    if unencrypted:
        warn(f"{out} is NOT encrypted: anyone who can read it can sign as {did[:40]}...")
    else:
        info(f"wrote {out} ({key.alg}, encrypted)")
    return did


def check_out_path(out: Path, force: bool) -> None:
    """Refuse early (before any prompt) what write_key_file would refuse late."""
    if str(out) == "-":
        raise click.BadParameter("a key file cannot go to stdout; give a file name", param_hint="--out")
    if out.is_dir():
        raise click.BadParameter(f"{out} is a directory", param_hint="--out")
    if not out.parent.is_dir():
        raise click.BadParameter(f"directory {out.parent} does not exist", param_hint="--out")
    if out.exists() and not force:
        raise KeyFileError(f"{out} exists; pass --force to overwrite it")


# --- credential building blocks ----------------------------------------------------------------


@dataclass(frozen=True)
class StatusOptions:
    """``vcgate issue``'s status options, as given."""

    method: str | None = None
    rpc: str | None = None
    registry: str | None = None
    eth_key: Path | None = None
    revocation_list: str = "default"
    status_list: Path | None = None


def build_status_entry(options: StatusOptions, *, issuer_key: PrivateKey) -> dict[str, Any] | None:
    """The ``credentialStatus`` of a new credential, or None for a credential without one."""
    if options.method is None:
        return None
    if options.method == "bitstring":
        from .status import bitstring_status_entry

        return bitstring_status_entry(options.status_list)
    if options.method == "onchain":
        from .status import onchain_status_entry

        return onchain_status_entry(
            rpc=options.rpc,
            registry=options.registry,
            eth_key=options.eth_key,
            issuer_key=issuer_key,
            revocation_list=options.revocation_list,
        )
    raise click.BadParameter(f"unknown status method {options.method!r}", param_hint="--status")


def token_kind(jws: JWS) -> str:
    """``"presentation"`` or ``"credential"``, from a parsed but unverified token."""
    typ = jws.typ
    if typ in VP_JOSE_TYPS:
        return "presentation"
    if typ in VC_JOSE_TYPS:
        return "credential"
    payload = jws.payload
    if "vp" in payload:
        return "presentation"
    if "vc" in payload:
        return "credential"
    types = payload.get("type")
    types = [types] if isinstance(types, str) else types
    if isinstance(types, list) and "VerifiablePresentation" in types:
        return "presentation"
    return "credential"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else to_xsd_datetime(ts)


def credential_summary(vc: VerifiedCredential) -> dict[str, Any]:
    return {
        "format": vc.format,
        "id": vc.id,
        "issuer": vc.issuer,
        "subject": vc.subject,
        "types": list(vc.types),
        "valid_from": _iso(vc.valid_from),
        "valid_until": _iso(vc.valid_until),
        "kid": vc.kid,
        "claims": dict(vc.claims),
        "status": [dict(s) for s in vc.status],
    }


def presentation_summary(vp: VerifiedPresentation) -> dict[str, Any]:
    return {
        "format": vp.format,
        "id": vp.id,
        "holder": vp.holder,
        "kid": vp.kid,
        "audience": list(vp.audience),
        "nonce": vp.nonce,
        "issued_at": _iso(vp.issued_at),
        "expires_at": _iso(vp.expires_at),
        "credentials": [credential_summary(c) for c in vp.credentials],
    }


def _print_fields(rows: Sequence[tuple[str, Any]], indent: str = "") -> None:
    width = max(len(k) for k, _ in rows) + 1
    for name, value in rows:
        click.echo(f"{indent}{name + ':':<{width}} {value if value not in (None, '') else '-'}")


def _credential_rows(s: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [
        ("issuer", s["issuer"]),
        ("subject", s["subject"]),
        ("types", ", ".join(s["types"])),
        ("valid from", s["valid_from"]),
        ("valid until", s["valid_until"] or "no expiry"),
        ("id", s["id"]),
        ("claims", json.dumps(s["claims"], separators=(",", ":")) if s["claims"] else None),
    ]


# Why an entry type went unchecked, by type: the hint names the option that checks it.
_UNCHECKED_HINTS = {
    "EthrRevocationRegistry2022": " (pass --rpc for on-chain status)",
    "BitstringStatusListEntry": " (status lists are not fetched with --no-status-lists)",
    "StatusList2021Entry": " (status lists are not fetched with --no-status-lists)",
}


def _warn_unchecked_status(credentials: Sequence[VerifiedCredential], checked: Sequence[str] = ()) -> None:
    for vc in credentials:
        for entry in vc.status:
            type_ = entry.get("type")
            if type_ not in checked:
                warn(
                    f"credential {vc.id or '(no id)'}: credentialStatus {str(type_)[:60]} was not checked"
                    + _UNCHECKED_HINTS.get(type_ if isinstance(type_, str) else "", " (vcgate cannot check this type)")
                )


def check_status(
    credentials: Sequence[VerifiedCredential],
    *,
    verifier: Verifier,
    rpc: str | None,
    network: NetworkOptions,
    fetch_lists: bool = True,
) -> None:
    """Check the credentials' status entries that can be checked; warn about the others.

    Bitstring status lists are fetched over HTTPS (SSRF-safe, like did:web) unless
    ``fetch_lists`` is off; with ``rpc``, ``EthrRevocationRegistry2022`` entries are read from
    the chain. A revoked or suspended credential raises ``RevokedError`` / ``SuspendedError``.
    """
    if not any(vc.status for vc in credentials):
        return
    from ..status import StatusChecker

    methods: list[Any] = []
    if fetch_lists:
        from ..fetch import SafeFetcher
        from ..status.bitstring import BitstringStatusMethod

        fetcher = SafeFetcher(
            allow_networks=network.allow_networks, verify=network.verify, label="status list host", document="status list"
        )
        methods.append(BitstringStatusMethod(verifier=verifier, fetch=fetcher.fetch))
    if rpc is not None:
        from .chain import connect_rpc
        from ..status.registry import DirectRegistryStatus

        methods.append(DirectRegistryStatus(connect_rpc(rpc)))
    checker = StatusChecker(methods, ignore_unknown=True)
    for vc in credentials:
        checker.check(vc)
    _warn_unchecked_status(credentials, checker.types)


# --- the command group ------------------------------------------------------------------------

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


@click.group(cls=VCGateGroup, context_settings=_CONTEXT)
@click.version_option(__version__, "--version", prog_name="vcgate", message="%(prog)s %(version)s")
def cli() -> None:
    """vcgate: verifiable-credential access control for AI model serving.

    Create keys, issue W3C verifiable credentials as JWTs, present them, and verify
    credentials and presentations.

    Exit codes: 0 done / valid, 1 refused or failed ('error: <code>: <message>' on
    stderr), 2 usage error, 130 interrupted.

    \b
    Examples:
      vcgate key new --out issuer.key
      vcgate issue --key issuer.key --subject did:key:z6Mk... --type AgentCredential \\
          --claims '{"model": "gpt-4o"}' --valid-for 30d > cred.jwt
      vcgate verify cred.jwt
    """


# --- key ----------------------------------------------------------------------------------------


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


@key.command("new")
@click.option("--alg", type=click.Choice(SIGNING_ALGORITHMS), default="EdDSA", help="Signature algorithm (and curve).")
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Key file to write."
)
@_did_method_option
@_unencrypted_option
@_force_option
def key_new(alg: str, out: Path, did_method: str, unencrypted: bool, force: bool) -> None:
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
    click.echo(did)


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
    click.echo(did)


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
    if as_json:
        echo_json(summary)
        return
    _print_fields(
        [
            ("file", summary["file"]),
            ("alg", f"{public.alg} ({public.curve})"),
            ("did", summary["did"]),
            ("kid", kid),
            ("thumbprint", summary["thumbprint"]),
            ("encrypted", f"yes ({enc.get('kdf')}, {enc.get('cipher')})" if isinstance(enc, dict) else "NO"),
            ("public jwk", json.dumps(summary["public_jwk"], separators=(",", ":"))),
        ]
    )


# --- did ------------------------------------------------------------------------------------------


_resolver_option = click.option(
    "--resolver",
    type=click.Choice(RESOLVERS),
    default="default",
    help="'local': did:key and did:jwk only, no network; 'default': also did:web.",
)


@cli.group()
def did() -> None:
    """Work with DIDs.

    \b
    Examples:
      vcgate did resolve did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK
    """


@did.command("resolve")
@click.argument("did_value", metavar="DID")
@click.option("--compact", is_flag=True, help="One line of JSON instead of indented JSON.")
@_resolver_option
def did_resolve(did_value: str, compact: bool, resolver: str) -> None:
    """Resolve a DID and print its DID document as JSON.

    \b
    Examples:
      vcgate did resolve did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK
      vcgate did resolve --compact did:web:example.com | jq .verificationMethod
    """
    doc = make_resolver(resolver).resolve(did_value)
    echo_json(doc.raw, compact=compact)


# --- issue ----------------------------------------------------------------------------------------


_STATUS_OPTIONS = {"status_list": "--status-list", "rpc": "--rpc", "registry": "--registry",
                   "eth_key": "--eth-key", "revocation_list": "--revocation-list"}


def _check_status_options(method: str | None) -> None:
    """Refuse status options typed without --status: the credential would silently get none
    (and could never be revoked). Values from the environment are ambient and stay allowed."""
    if method is not None:
        return
    ctx = click.get_current_context()
    given = [flag for name, flag in _STATUS_OPTIONS.items()
             if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(
            f"{', '.join(given)} without --status: add --status bitstring or --status onchain "
            "(without --status the credential has no credentialStatus and cannot be revoked)"
        )


def _check_uri(value: str | None) -> None:
    if value is not None and (":" not in value or any(c.isspace() for c in value)):
        raise click.BadParameter(f"{value[:80]!r} is not a URI (e.g. urn:uuid:...)", param_hint="--id")


@cli.command()
@click.option("--key", "key_file", required=True, type=EXISTING_FILE, help="Issuer key file.")
@click.option("--subject", required=True, type=DID_PARAM, help="DID of the credential subject (the holder).")
@click.option(
    "--type", "types", multiple=True, metavar="TYPE", help="Credential type, after VerifiableCredential (repeatable)."
)
@click.option("--claims", metavar="JSON|@FILE", help="Subject claims: a JSON object, @file, or @- for stdin.")
@click.option("--valid-from", type=TIMESTAMP, default=None, help="Start of validity, ISO 8601 [default: now].")
@click.option(
    "--valid-for", type=DURATION, default=None, help="Validity period, e.g. 30d, 12h, 90m [default: no expiry]."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=FORMAT_VC_JOSE,
    help="VC-JOSE (VCDM 2.0) or VC-JWT (VCDM 1.1).",
)
@click.option("--id", "credential_id", metavar="URI", help="Credential id [default: a fresh urn:uuid].")
@click.option(
    "--issuer", type=DID_PARAM, default=None, help="Issuer DID; must authorise the key [default: the key's DID]."
)
@_resolver_option
@click.option(
    "--status",
    "status_method",
    type=click.Choice(["onchain", "bitstring"]),
    default=None,
    help="Embed a status: 'onchain' = an ERC-5539 registry entry (EthrRevocationRegistry2022); "
    "'bitstring' = an index in a W3C Bitstring Status List (BitstringStatusListEntry).",
)
@click.option(
    "--status-list",
    envvar="VCGATE_STATUS_LIST",
    default=None,
    type=EXISTING_FILE,
    metavar="STATE",
    help="--status bitstring: the list's state file (from 'vcgate status-list create') [env VCGATE_STATUS_LIST].",
)
@click.option("--rpc", envvar="VCGATE_RPC_URL", default=None, metavar="URL", help="--status onchain: JSON-RPC URL [env VCGATE_RPC_URL].")
@click.option("--registry", envvar="VCGATE_REGISTRY", default=None, metavar="ADDR", help="--status onchain: registry address [env VCGATE_REGISTRY].")
@click.option(
    "--eth-key",
    envvar="VCGATE_ETH_KEY",
    default=None,
    type=EXISTING_FILE,
    metavar="FILE",
    help="--status onchain: ES256K key file whose address is the namespace [default: the issuer key, if ES256K; env VCGATE_ETH_KEY].",
)
@click.option(
    "--revocation-list",
    default="default",
    metavar="NAME|0xHEX",
    help="--status onchain: the list within the namespace (a name is hashed with keccak-256).",
)
def issue(
    key_file: Path,
    subject: DID,
    types: tuple[str, ...],
    claims: str | None,
    valid_from: float | None,
    valid_for: int | None,
    fmt: str,
    credential_id: str | None,
    issuer: DID | None,
    resolver: str,
    status_method: str | None,
    status_list: Path | None,
    rpc: str | None,
    registry: str | None,
    eth_key: Path | None,
    revocation_list: str,
) -> None:
    """Issue a credential and print it as a JWT.

    The issuer is the key's DID unless --issuer names another DID that authorises the key
    for assertionMethod; the JWS kid is that verification method.

    \b
    Examples:
      vcgate issue --key issuer.key --subject did:key:z6Mk... --type AgentCredential \\
          --claims '{"models": ["gpt-4o"], "tier": "gold"}' --valid-for 30d > cred.jwt
      vcgate issue --key issuer.key --subject "$AGENT" --claims @claims.json \\
          --format vc-jwt11 --valid-from 2026-01-01T00:00:00Z --valid-for 12h
      vcgate issue --key issuer.key --subject "$AGENT" --type ModelAccessCredential \\
          --status onchain --rpc http://127.0.0.1:8545 --registry 0x5FbD... --eth-key issuer-eth.key
      vcgate issue --key issuer.key --subject "$AGENT" --type ModelAccessCredential \\
          --status bitstring --status-list status-1.json --valid-for 30d > cred.jwt
    """
    if any(not t.strip() for t in types):
        raise click.BadParameter("a type must not be empty", param_hint="--type")
    _check_status_options(status_method)
    _check_uri(credential_id)
    subject_claims = read_claims(claims)
    if "id" in subject_claims:
        raise click.BadParameter("claims must not set 'id': the subject is --subject", param_hint="--claims")
    start = valid_from if valid_from is not None else float(int(time.time()))
    until = None if valid_for is None else start + valid_for
    if until is not None and until > _MAX_TIMESTAMP:
        raise click.BadParameter("--valid-from plus --valid-for goes past the year 9999", param_hint="--valid-for")
    loaded = load_key(key_file)
    issuer_did = issuer if issuer is not None else loaded.did
    if status_method == "bitstring" and issuer_did != loaded.did:
        # 'status-list publish' and 'revoke' sign the list as the key file's DID, and verifiers
        # require the list's issuer to be the credential's: such a credential could never verify.
        raise click.BadParameter(
            f"--status bitstring: the status list is signed as the key's DID ({loaded.did[:60]}...), so the "
            "credential's issuer must be that DID too; leave out --issuer",
            param_hint="--issuer",
        )
    kid = signing_kid(issuer_did, loaded.key.public_key, "assertionMethod", make_resolver(resolver))
    cid = credential_id or f"urn:uuid:{uuid.uuid4()}"
    token = issue_credential(
        loaded.key,
        issuer=issuer_did,
        kid=kid,
        subject=subject,
        types=types,
        claims=subject_claims,
        valid_from=start,
        valid_until=until,
        status=build_status_entry(
            StatusOptions(status_method, rpc, registry, eth_key, revocation_list, status_list), issuer_key=loaded.key
        ),
        credential_id=cid,
        format=fmt,
    )
    click.echo(token)


# --- present -------------------------------------------------------------------------------------


@cli.command(short_help="Present credentials as the holder; print the presentation JWT.")
@click.option("--key", "key_file", required=True, type=EXISTING_FILE, help="Holder key file.")
@click.option("--aud", required=True, metavar="AUD", help="Audience: the verifier the presentation is for.")
@click.option("--nonce", required=True, metavar="N", help="The verifier's challenge nonce.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=FORMAT_VC_JOSE,
    help="vp+jwt (VCDM 2.0) or VP-JWT (VCDM 1.1).",
)
@click.option("--lifetime", type=DURATION, default="5m", help="How long the presentation stays valid.")
@click.argument("credentials", nargs=-1, required=True, metavar="CREDENTIAL...")
def present(key_file: Path, aud: str, nonce: str, fmt: str, lifetime: int, credentials: tuple[str, ...]) -> None:
    """Sign a presentation of credentials as the holder; print it as a JWT.

    Each CREDENTIAL is a file, '-' for stdin (one or more JWTs), or a JWT itself. The holder
    is the key's DID; it should be the subject of each credential.

    \b
    Examples:
      vcgate present --key agent.key --aud https://api.example.com --nonce "$NONCE" cred.jwt
      vcgate issue ... | vcgate present --key agent.key --aud https://api --nonce n1 -
    """
    if credentials.count("-") > 1:
        raise click.BadParameter("'-' (stdin) can be given once", param_hint="CREDENTIAL")
    tokens = [t for source in credentials for t in read_tokens(source, "credential", "CREDENTIAL")]
    if not tokens:
        raise click.UsageError("no credential to present")
    # A look without verifying, before asking for the passphrase: catch a wrong file early,
    # and warn about a presentation that holder binding will refuse.
    claims = [read_credential(parse_jws(t, algorithms=ALGORITHMS), contexts=DEFAULT_CONTEXTS) for t in tokens]
    loaded = load_key(key_file)
    for cred in claims:
        if cred.subject != loaded.did:
            about = str(cred.subject)[:60]
            warn(f"credential {cred.id or '(no id)'} is about {about}, not the holder {loaded.did[:60]}")
    kid = signing_kid(loaded.did, loaded.key.public_key, "authentication", make_resolver("default"))
    token = create_presentation(
        loaded.key,
        holder=loaded.did,
        kid=kid,
        credentials=tokens,
        audience=aud,
        nonce=nonce,
        issued_at=time.time(),
        lifetime=lifetime,
        format=fmt,
    )
    click.echo(token)


# --- verify -------------------------------------------------------------------------------------


@cli.command()
@click.argument("source", metavar="[FILE|-]", required=False)
@click.option("--aud", metavar="AUD", help="Require the presentation's audience to name this.")
@click.option("--nonce", metavar="N", help="Require the presentation to carry this nonce.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (or the refusal) as JSON on stdout.")
@click.option(
    "--no-holder-binding", is_flag=True, help="Do not require the holder to be the subject of each credential."
)
@_resolver_option
@click.option(
    "--rpc",
    envvar="VCGATE_RPC_URL",
    default=None,
    metavar="URL",
    help="Check on-chain (ERC-5539) revocation status through this JSON-RPC URL [env VCGATE_RPC_URL].",
)
@click.option("--no-status-lists", is_flag=True, help="Do not fetch bitstring status lists (no network for status).")
@click.option(
    "--allow-network",
    "allow_networks",
    multiple=True,
    metavar="CIDR",
    help="Let did:web and status-list fetches reach this otherwise refused network (private deployments); repeatable.",
)
@click.option("--ca-bundle", type=EXISTING_FILE, default=None, help="CA bundle for did:web and status-list HTTPS.")
@click.pass_context
def verify(
    ctx: click.Context,
    source: str | None,
    aud: str | None,
    nonce: str | None,
    as_json: bool,
    no_holder_binding: bool,
    resolver: str,
    rpc: str | None,
    no_status_lists: bool,
    allow_networks: tuple[str, ...],
    ca_bundle: Path | None,
) -> None:
    """Verify a credential or presentation JWT from a file or stdin.

    The kind is detected from the token. Exit 0: valid (a summary is printed). Exit 1:
    refused, with 'error: <code>: <message>' on stderr, or with --json a JSON object
    {"valid": false, "error": code, "message": ...} on stdout. Exit 2: usage error.

    Giving --aud or --nonce means a presentation is expected: a bare credential is then
    refused (type_mismatch). Status is checked too: bitstring status lists are fetched over
    HTTPS (unless --no-status-lists), on-chain entries are read through --rpc; a revoked or
    suspended credential is refused ('revoked', 'suspended'). Entries that are not checked are
    named in a warning.

    \b
    Examples:
      vcgate verify cred.jwt
      vcgate present ... | vcgate verify --aud https://api.example.com --nonce "$NONCE" -
      vcgate verify --json --resolver local vp.jwt | jq .holder
      vcgate verify --rpc http://127.0.0.1:8545 cred.jwt
      vcgate verify --allow-network 10.0.0.0/8 --ca-bundle internal-ca.pem cred.jwt
      vcgate verify --no-status-lists cred.jwt
    """
    if source is None:
        if stdin_is_interactive():
            raise click.UsageError("give a FILE, or pipe a token on stdin ('-')")
        source = "-"
    token = read_one_token(source, "token", "FILE")
    for cidr in allow_networks:
        try:
            ipaddress.ip_network(cidr, strict=True)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--allow-network") from None
    network = NetworkOptions(allow_networks, str(ca_bundle) if ca_bundle is not None else None)
    try:
        result = _verify_token(
            token,
            aud=aud,
            nonce=nonce,
            holder_binding=not no_holder_binding,
            resolver=make_resolver(resolver, network),
            rpc=rpc,
            network=network,
            fetch_lists=not no_status_lists,
        )
    except VCGateError as exc:
        if not as_json:
            raise
        echo_json({"valid": False, "error": exc.code, "message": exc.message})
        ctx.exit(EXIT_REFUSED)
    if as_json:
        echo_json({"valid": True, **result})
        return
    if result["kind"] == "credential":
        click.echo(f"valid credential ({result['format']})")
        _print_fields(_credential_rows(result))
        return
    click.echo(f"valid presentation ({result['format']})")
    _print_fields(
        [
            ("holder", result["holder"]),
            ("audience", ", ".join(result["audience"])),
            ("nonce", result["nonce"]),
            ("expires", result["expires_at"] or "no expiry"),
            ("credentials", len(result["credentials"])),
        ]
    )
    for i, cred in enumerate(result["credentials"], 1):
        click.echo(f"  [{i}] {cred['format']}")
        _print_fields(_credential_rows(cred), indent="      ")


def _verify_token(
    token: str,
    *,
    aud: str | None,
    nonce: str | None,
    holder_binding: bool,
    resolver: Resolver,
    rpc: str | None = None,
    network: NetworkOptions = NetworkOptions(),
    fetch_lists: bool = True,
) -> dict[str, Any]:
    """Verify ``token`` as whatever it is; return the summary (with ``kind``) or raise."""
    verifier = Verifier(resolver=resolver)
    kind = token_kind(parse_jws(token, algorithms=verifier.algorithms))
    if kind == "credential":
        if aud is not None or nonce is not None:
            raise TypeMismatchError("--aud/--nonce expect a presentation, and this token is a credential")
        vc = verifier.verify_credential(token)
        check_status([vc], verifier=verifier, rpc=rpc, network=network, fetch_lists=fetch_lists)
        return {"kind": "credential", **credential_summary(vc)}
    if aud is None:
        warn("the presentation's audience was not checked (pass --aud)")
    if nonce is None:
        warn("the presentation's nonce was not checked (pass --nonce); a replayed presentation passes")
    vp = verifier.verify_presentation(token, audience=aud, nonce=nonce, holder_binding=holder_binding)
    check_status(vp.credentials, verifier=verifier, rpc=rpc, network=network, fetch_lists=fetch_lists)
    return {
        "kind": "presentation",
        **presentation_summary(vp),
        "checked": {"audience": aud is not None, "nonce": nonce is not None, "holder_binding": holder_binding},
    }


# --- command groups in other modules -------------------------------------------------------------

from . import audit, chain, policy, serve, status  # noqa: E402,F401  (register audit, chain, registry, policy, revoke, serve, status, status-list)

# --- entry point ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point: run ``cli`` and map every outcome to an exit code."""
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name="vcgate", standalone_mode=False)
        code = rv if isinstance(rv, int) else EXIT_OK
    except click.ClickException as exc:  # usage errors (exit 2) and CLIError refusals (exit 1)
        exc.show()
        code = exc.exit_code
    except click.Abort as exc:  # click turns Ctrl-C / Ctrl-D at a prompt into Abort
        # A prompt raises Abort "from None": the interrupt is then only in __context__.
        interrupted = isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
        click.echo("error: interrupted" if interrupted else "error: aborted", err=True)
        code = EXIT_INTERRUPTED if interrupted else EXIT_REFUSED
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        code = EXIT_INTERRUPTED
    except (VCGateError, OSError) as exc:  # raised outside a command (parameter callbacks)
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            _silence_stdout()
            code = EXIT_REFUSED
        else:
            _to_cli_error(exc).show()
            code = EXIT_REFUSED
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        click.echo(
            f"error: internal_error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for a traceback)", err=True
        )
        code = EXIT_REFUSED
    sys.exit(code)


def _silence_stdout() -> None:
    # The reader went away (`vcgate ... | head -1`): flushing at exit would fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    main()
