"""What every ``vcgate`` command group shares: the root ``cli`` group, exit codes, the error type,
output helpers, parameter types, input reading, passphrases, key loading and resolvers.

Command groups live in sibling modules (``key``, ``did``, ``credentials``, ``status``,
``chain``, ``policy``, ``serve``, ``audit``); each imports what it needs from here and adds
itself with ``@cli.group()`` / ``@cli.command()``. This module imports no command module, so
the package has no import cycle.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..credentials import FORMAT_VC_JOSE, FORMAT_VC_JWT11
from ..did import DID, Resolver, did_jwk_from_public_key, did_key_from_public_key
from ..errors import (
    InvalidDIDError,
    KeyFileError,
    MalformedError,
    PassphraseError,
    UnsupportedKeyError,
    UntrustedKeyError,
    VCGateError,
)
from ..keys import (
    PASSPHRASE_ENV,
    PrivateKey,
    PublicKey,
    passphrase_from_env,
    read_key_file,
    read_key_header,
    write_key_file,
)
from ..strictjson import loads_strict

#: Set to 1 to see a traceback for an unexpected internal error.
DEBUG_ENV = "VCGATE_DEBUG"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

FORMATS = (FORMAT_VC_JOSE, FORMAT_VC_JWT11)
#: Algorithms vcgate signs with (verification also accepts aliases such as "Ed25519").
SIGNING_ALGORITHMS = ("EdDSA", "ES256", "ES256K", "ES384", "ES512")
RESOLVERS = ("default", "local")

# Inputs are tokens, JSON claims and JWKs: a few KiB. Reading is capped so that a wrong
# path (a disk image, /dev/zero) fails fast instead of filling memory.
_MAX_INPUT_BYTES = 1024 * 1024
# Latest instant an XML Schema dateTime with a four-digit year can carry.
MAX_TIMESTAMP = 253402300799
_MAX_DURATION = 100 * 366 * 86400
_JWS_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+"
                        # an SD-JWT (VC, or presentation with a KB-JWT): Disclosures after '~'
                        r"(?:~(?:[A-Za-z0-9_-]+~)*(?:[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+)?)?")


# --- errors and output ----------------------------------------------------------------------


#: What to do next, by error code, for errors raised without a hint of their own.
HINTS: dict[str, str] = {
    "passphrase_invalid": f"set {PASSPHRASE_ENV} to the key file's passphrase (or run on a terminal to be asked for it)",
    "key_file_invalid": "check the key file option (--key, --out, ...); 'vcgate key show FILE' reads a key file",
    "key_unsupported": "make a key of the right kind: vcgate key new --alg EdDSA|ES256|ES256K --out FILE",
    "io_error": "check that the path exists and that you may read (or write) it",
    "internal_error": f"set {DEBUG_ENV}=1 for a traceback, and report it",
    "usage_error": "'vcgate COMMAND --help' lists the options, with examples",
    "malformed": "check the input is what the command expects (a JWT, a JSON object); see 'vcgate COMMAND --help'",
    "too_large": "inputs are capped at 1 MiB: check you gave the right file",
    "signature_invalid": "the token was altered or signed with another key: get a fresh copy from its issuer",
    "untrusted_key": "the DID does not authorise this key: check --issuer and --key ('vcgate key show FILE' prints the key's DID)",
    "expired": "ask the issuer for a new credential (vcgate issue ... --valid-for 30d)",
    "not_yet_valid": "wait until its validity starts, or check this machine's clock",
    "audience_mismatch": "present again for this verifier (vcgate present --aud AUD), or check --aud",
    "nonce_mismatch": "present again with the verifier's fresh nonce (vcgate present --nonce N)",
    "holder_mismatch": "present with the key of the credential's subject, or verify with --no-holder-binding",
    "type_mismatch": "--aud/--nonce are for presentations: leave them out to verify a credential",
    "revoked": "the issuer revoked this credential: ask the issuer for a new one",
    "suspended": "the issuer suspended this credential: ask the issuer to reinstate it (vcgate unrevoke)",
    "status_unavailable": "check that the status list is served at its URL; a list host on a private or local network "
                          "needs --allow-network CIDR and --ca-bundle FILE (docs/status-list.md)",
    "status_list_invalid": "re-publish the list with the credential issuer's key (vcgate status-list publish); a list "
                           "host on a private or local network needs --allow-network CIDR (docs/status-list.md)",
    "status_unsupported": "vcgate checks BitstringStatusListEntry, StatusList2021Entry, token status lists and "
                          "EthrRevocationRegistry2022; --no-status-lists skips status lists",
    "did_resolution_failed": "--resolver local resolves did:key and did:jwk without network; a private did:web host "
                             "needs --allow-network, --ca-bundle or --did-web-ports",
    "did_not_found": "check the DID, and that its did.json is served over https",
    "did_method_not_supported": "vcgate resolves did:key, did:jwk and did:web",
    "chain_unavailable": "start a node (vcgate chain dev) or check --rpc / VCGATE_RPC_URL",
    "registry_not_found": "deploy one (vcgate registry deploy) or check --registry / VCGATE_REGISTRY and --rpc",
    "registry_not_authorized": "sign with the list owner's key or a delegate's: --eth-key / VCGATE_ETH_KEY",
    "policy_invalid": "fix the policy at the line and field named; 'vcgate policy check FILE' checks it (docs/policy.md)",
    "audit_tampered": "the log was changed after it was written: keep the file as evidence and start a new log",
    "did_address_forbidden": "the DID's host is on a refused network: --allow-network CIDR admits a private one",
    "did_invalid": "a DID looks like did:key:z6Mk..., did:jwk:... or did:web:example.com",
    "status_list_full": "create another list (vcgate status-list create --url URL --out STATE) and issue from it",
    "extra_missing": "install the extra the message names: pip install 'vcgate[EXTRA]'",
    "chain_error": "check --rpc / VCGATE_RPC_URL and the chain extra (pip install 'vcgate[chain]')",
}


def hint_for(code: str) -> str | None:
    """The default next step for an error code (a family's, e.g. every ``delegation_*``)."""
    if code in HINTS:
        return HINTS[code]
    if code.startswith("delegation_"):
        return "see docs/delegation.md: a delegation may only narrow its parent's capabilities, within its validity"
    return None


class CLIError(click.ClickException):
    """A refusal: ``error: <code>: <message>`` and ``hint: <what to do next>`` on stderr, exit 1.

    With ``--json`` (``as_json``) the same as one JSON object on stderr:
    ``{"error": {"code": ..., "message": ..., "hint": ...}}``.
    """

    exit_code = EXIT_REFUSED

    def __init__(self, code: str, message: str, hint: str | None = None, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint if hint is not None else hint_for(code)
        self.as_json = False
        if exit_code is not None:
            self.exit_code = exit_code

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "hint": self.hint}}

    def show(self, file: Any = None) -> None:
        if self.as_json:
            click.echo(json.dumps(self.to_json()), err=True)
            return
        click.echo(f"error: {self.code}: {self.message}", err=True)
        if self.hint:
            click.echo(f"hint: {self.hint}", err=True)


def _os_message(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def to_cli_error(exc: BaseException) -> CLIError:
    if isinstance(exc, VCGateError):
        return CLIError(exc.code, exc.message, exc.hint)
    if isinstance(exc, OSError):
        return CLIError("io_error", _os_message(exc))
    raise TypeError(exc)  # pragma: no cover - callers pass only the two kinds above


def usage_error(exc: click.ClickException, ctx: click.Context | None = None) -> CLIError:
    """A click usage error (exit 2) as a ``usage_error`` CLIError, for ``--json`` output."""
    message = exc.format_message()
    hint = HINTS["usage_error"]
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        # command_path starts with the program's name as invoked ("cli" in tests): say "vcgate".
        command = " ".join(["vcgate", *exc.ctx.command_path.split()[1:]])
        hint = f"'{command} --help' lists the options, with examples"
        if isinstance(exc, click.BadParameter) and exc.param is not None and exc.param.opts:
            hint = f"check {exc.param.opts[-1]}; " + hint
    return CLIError("usage_error", message, hint, exit_code=exc.exit_code)


def json_requested(args: Sequence[str]) -> bool:
    """Whether the command line asks for ``--json`` (errors are then JSON on stderr too)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


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
        as_json = json_requested([*ctx._protected_args, *ctx.args])
        try:
            return super().invoke(ctx)
        except VCGateError as exc:
            error = to_cli_error(exc)
            error.as_json = as_json
            raise error from exc
        except CLIError as exc:
            exc.as_json = exc.as_json or as_json
            raise
        except click.ClickException as exc:  # usage errors: click's own text, or JSON with --json
            if not as_json:
                raise
            error = usage_error(exc)
            error.as_json = True
            raise error from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # click handles a closed pipe (`vcgate ... | head`) quietly
            error = to_cli_error(exc)
            error.as_json = as_json
            raise error from exc


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
    if not 0 <= ts <= MAX_TIMESTAMP:
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
    if not tokens:  # nothing to read is a usage error (exit 2), not a refusal of a token
        where = "stdin" if source == "-" else source
        raise click.UsageError(f"{what}: no token in {where}: give a FILE, or pipe a token on stdin ('-')")
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
    value = passphrase_from_env()
    if value is not None:
        return value
    if not stdin_is_interactive():
        raise PassphraseError(
            f"a passphrase is needed and there is no terminal to ask on: set {PASSPHRASE_ENV}",
            hint=f"export {PASSPHRASE_ENV}='...' (the passphrase the key file was written with), or run on a terminal",
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
    did_web_ports: tuple[int, ...] = ()
    #: ``--resolve HOST:ADDRESS`` pairs: these names go to these addresses, without DNS (like curl's
    #: --resolve); the address policy (``--allow-network``), pinning and TLS checks still apply.
    resolve: tuple[tuple[str, str], ...] = ()

    @property
    def verify(self) -> Any:
        return self.ca_bundle if self.ca_bundle is not None else True

    def resolve_host(self) -> Any:
        """A ``resolve_host`` for :class:`vcgate.fetch.SafeFetcher`, or None for the system's."""
        if not self.resolve:
            return None
        from ..fetch import system_resolve_host

        table = {host.lower(): address for host, address in self.resolve}

        def resolve(host: str, port: int) -> list[str]:
            if host.lower() in table:
                return [table[host.lower()]]
            return system_resolve_host(host, port, timeout=5.0)

        return resolve


def _resolve_pairs(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    import ipaddress

    pairs = []
    for value in values:
        host, sep, address = value.rpartition(":") if value.count(":") == 1 else value.partition(":")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not HOST:ADDRESS (e.g. status.localhost:127.0.0.1)",
                                     param_hint="--resolve") from None
        if not sep or not host:
            raise click.BadParameter(f"{value!r} is not HOST:ADDRESS", param_hint="--resolve")
        pairs.append((host, address))
    return tuple(pairs)


resolve_option = click.option(
    "--resolve",
    "resolve",
    multiple=True,
    metavar="HOST:ADDRESS",
    callback=_resolve_pairs,
    help="Send did:web and status-list fetches for HOST to ADDRESS, without DNS (trying a list host on "
    "127.0.0.1: add --allow-network 127.0.0.1/32 and --ca-bundle); repeatable.",
)


def make_resolver(name: str, network: NetworkOptions = NetworkOptions()) -> Resolver:
    """``local``: did:key and did:jwk, no network. ``default``: adds did:web and https issuer URLs."""
    if name == "local":
        return Resolver.local()
    from ..did import JWKMethod, KeyMethod, WebMethod
    from ..did.controller import ControllerDocumentMethod

    fetch = {"allow_networks": network.allow_networks, "verify": network.verify, "allow_ports": network.did_web_ports,
             "resolve_host": network.resolve_host()}
    return Resolver([KeyMethod(), JWKMethod(), WebMethod(**fetch), ControllerDocumentMethod(**fetch)])


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



def print_fields(rows: Sequence[tuple[str, Any]], indent: str = "") -> None:
    width = max(len(k) for k, _ in rows) + 1
    for name, value in rows:
        click.echo(f"{indent}{name + ':':<{width}} {value if value not in (None, '') else '-'}")



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



def _did_web_ports(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    from ..did.web import parse_ports

    try:
        return parse_ports(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--did-web-ports") from None


did_web_ports_option = click.option(
    "--did-web-ports",
    "did_web_ports",
    metavar="PORTS",
    envvar="VCGATE_DID_WEB_PORTS",
    default=None,
    callback=_did_web_ports,
    help="Ports besides 443 that a did:web DID may name, comma-separated (did:web:host%3A8443); "
    "other ports are refused. [env: VCGATE_DID_WEB_PORTS]",
)

def _alg_name(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    from ..credentials.jws import alg_name_setting

    try:
        return alg_name_setting(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--alg-name") from None


alg_name_option = click.option(
    "--alg-name",
    "alg_name",
    metavar="EdDSA|Ed25519",
    envvar="VCGATE_JOSE_ALG_NAME",
    default=None,
    callback=_alg_name,
    help="JOSE 'alg' written for Ed25519 signatures: EdDSA (default; deprecated by RFC 9864, what most "
    "verifiers take today) or Ed25519 (RFC 9864). vcgate verifies both. [env: VCGATE_JOSE_ALG_NAME]",
)

record_option = click.option(
    "--record",
    "record",
    envvar="VCGATE_ISSUER_RECORD",
    default=None,
    metavar="PATH|off",
    help="The issuer's record of issued credentials (SQLite), or 'off' "
    "[default: $XDG_DATA_HOME/vcgate/issued.sqlite3, i.e. ~/.local/share/vcgate/issued.sqlite3; env VCGATE_ISSUER_RECORD].",
)


def open_record(value: str | None) -> Any:
    """The :class:`~vcgate.issuer_record.IssuerRecord` that ``--record`` names, or None for ``off``."""
    from ..issuer_record import IssuerRecord, record_path

    path = record_path(value)
    return None if path is None else IssuerRecord(path)


resolver_option = click.option(
    "--resolver",
    type=click.Choice(RESOLVERS),
    default="default",
    help="'local': did:key and did:jwk only, no network; 'default': also did:web and issuers that are https "
    "URLs (controller documents).",
)
