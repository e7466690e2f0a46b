"""Credential status from the CLI: ``revoke``, ``unrevoke``, ``status``, ``status-list``, and the
status entries ``vcgate issue --status onchain|bitstring`` embeds.

Two kinds of status, chosen per credential at issue time:

* ``onchain`` -- an ``EthrRevocationRegistry2022`` entry in an ERC-5539 registry; revoking is a
  transaction signed by the namespace's Ethereum key (``--eth-key``). Needs the chain extra.
* ``bitstring`` -- a ``BitstringStatusListEntry`` in a W3C Bitstring Status List the issuer
  keeps in a local state file (``--status-list``) and publishes as a signed list credential at
  the list's URL; revoking flips the bit and re-signs (``--key``, ``--publish FILE``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .base import (
    DURATION,
    EXISTING_FILE,
    NetworkOptions,
    cli,
    echo_json,
    info,
    load_key,
    make_resolver,
    open_record,
    read_one_token,
    record_option,
    signing_kid,
    warn,
)
from .chain import (
    ETH_KEY_ENV,
    REGISTRY_ENV,
    RPC_ENV,
    chain_module,
    connect_rpc,
    eth_signer,
)
from ..credentials import Verifier
from ..credentials.jws import parse_jws
from ..credentials.jwt import DEFAULT_CONTEXTS, read_credential
from ..credentials.models import VerifiedCredential
from ..credentials.sdjwt import BITSTRING_STATUS_MEMBER, TOKEN_STATUS_ENTRY_TYPE, is_sd_jwt
from ..credentials.sdjwt import status_entries as sd_jwt_status_entries
from ..errors import ChainError, RegistryNotFoundError, RevokedError, UnsupportedKeyError
from ..keys import ALGORITHMS, PrivateKey, PublicKey, read_key_header

__all__ = ["onchain_status_entry", "bitstring_status_entry", "revocation_list_id"]

STATUS_LIST_ENV = "VCGATE_STATUS_LIST"
ONCHAIN_TYPE = "EthrRevocationRegistry2022"
BITSTRING_TYPES = ("BitstringStatusListEntry", "StatusList2021Entry")


# --- building entries (vcgate issue --status ...) -------------------------------------------------


def revocation_list_id(value: str) -> bytes:
    """``--revocation-list``: ``0x`` + 64 hex digits, or a name hashed with keccak-256.

    Names keep lists readable (``--revocation-list agents-2026``); the chain only ever sees
    the 32-byte hash, as ERC-5539 stores it.
    """
    if value.startswith("0x"):
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise click.BadParameter(
                "a list id is 0x followed by 64 hex digits (or give a name)", param_hint="--revocation-list"
            )
        return raw
    if not value or len(value) > 200:
        raise click.BadParameter("a list name must have 1 to 200 characters", param_hint="--revocation-list")
    chain_module()  # a clear error without the chain extra
    from eth_utils import keccak

    return bytes(keccak(text=value))


def eth_address_of_key_file(path: Path) -> str:
    """The Ethereum address of an ES256K key file, from its public part (no passphrase)."""
    public = PublicKey.from_jwk(read_key_header(path)["public_jwk"])
    if public.alg != "ES256K":
        raise UnsupportedKeyError(f"{path} is an {public.alg} key; an Ethereum account needs ES256K")
    return chain_module().eth_address(public)


def onchain_status_entry(
    *, rpc: str | None, registry: str | None, eth_key: Path | None, issuer_key: PrivateKey, revocation_list: str
) -> dict[str, Any]:
    """The ``EthrRevocationRegistry2022`` entry for a new credential.

    The namespace is the Ethereum address of --eth-key, or of the issuer's own key when that
    is ES256K; the revocation key is 32 random bytes, so the chain reveals nothing about the
    credential.
    """
    if rpc is None:
        raise click.BadParameter(f"--status onchain needs --rpc (or {RPC_ENV})", param_hint="--rpc")
    if registry is None:
        raise click.BadParameter(f"--status onchain needs --registry (or {REGISTRY_ENV})", param_hint="--registry")
    if eth_key is not None:
        namespace = eth_address_of_key_file(eth_key)
    elif issuer_key.alg == "ES256K":
        namespace = chain_module().eth_address(issuer_key.public_key)
    else:
        raise click.BadParameter(
            f"an {issuer_key.alg} issuer key has no Ethereum address: give --eth-key (or {ETH_KEY_ENV})",
            param_hint="--eth-key",
        )
    list_id = revocation_list_id(revocation_list)
    chain = connect_rpc(rpc)
    client = chain_module().RegistryClient(chain, registry)
    if not chain.code_at(client.address):
        raise RegistryNotFoundError(f"no contract at {client.address} on chain {chain.chain_id()}")
    from ..status.registry import status_entry

    return status_entry(client.address, chain.chain_id(), namespace, list_id, secrets.token_bytes(32))


def list_class(state: Path) -> type:
    """``TokenStatusList`` for a state file made with ``--format token``, else ``StatusList``."""
    from ..status.bitstring import StatusList
    from ..status.tokenlist import TokenStatusList

    try:
        head = state.read_bytes()[:1 << 22]
    except OSError as exc:
        raise click.BadParameter(f"cannot read {state}: {exc.strerror}", param_hint="--status-list") from None
    return TokenStatusList if b'"statusListFormat": "token"' in head else StatusList


def bitstring_status_entry(state: Path | None, *, token: bool = False) -> dict[str, Any]:
    """Allocate a random index in the status list kept in ``state``; return its entry.

    ``token``: the credential is an SD-JWT VC, whose ``status`` claim points into a Token
    Status List (``status.status_list``) or a Bitstring list (``status.bitstring_status_list``);
    a JWT credential needs a Bitstring list.
    """
    if state is None:
        raise click.BadParameter(
            f"--status bitstring needs --status-list STATE (or {STATUS_LIST_ENV})", param_hint="--status-list"
        )
    cls = list_class(state)
    is_token_list = cls.__name__ == "TokenStatusList"
    if is_token_list and not token:
        raise click.BadParameter(
            "a Token Status List is for SD-JWT VCs (--format sd-jwt); give a Bitstring list's state file",
            param_hint="--status-list",
        )
    with cls.edit(state) as lst:
        entry = lst.entry(lst.allocate())
    return {BITSTRING_STATUS_MEMBER: entry} if token and not is_token_list else entry


# --- reading a credential's entries --------------------------------------------------------------


def _status_entries(token: str) -> list[dict[str, Any]]:
    """A credential's status entries, read but not verified (the list or the chain is the judge)."""
    if is_sd_jwt(token):
        payload = parse_jws(token.split("~", 1)[0], algorithms=ALGORITHMS).payload
        entries = [dict(e) for e in sd_jwt_status_entries(payload.get("status"))]
        if not entries:
            raise click.UsageError("the SD-JWT VC has no status claim")
        return entries
    claims = read_credential(parse_jws(token, algorithms=ALGORITHMS), contexts=DEFAULT_CONTEXTS)
    if not claims.status:
        raise click.UsageError("the credential has no credentialStatus")
    return [dict(e) for e in claims.status]


# --- revoke / unrevoke ---------------------------------------------------------------------------


def _need_publish_target(key_file: Path | None, publish: Path | None) -> None:
    if key_file is None or publish is None:
        raise click.BadParameter(
            "a bitstring list is re-signed after a change: give --key ISSUER_KEY and --publish FILE",
            param_hint="--key/--publish",
        )


def _publish(lst: Any, key_file: Path | None, publish: Path | None, valid_for: int | None) -> str:
    """Re-sign the list credential and write it where it is served from."""
    _need_publish_target(key_file, publish)
    assert key_file is not None and publish is not None
    loaded = load_key(key_file)
    kid = signing_kid(loaded.did, loaded.key.public_key, "assertionMethod", make_resolver("local"))
    now = float(int(time.time()))
    token = _signed_list(lst, loaded, kid, now, valid_for)
    publish.parent.mkdir(parents=True, exist_ok=True)  # www/status/1: the folders are the URL's path
    publish.write_text(token + "\n")
    return token


def _signed_list(lst: Any, loaded: Any, kid: str, now: float, valid_for: int | None) -> str:
    """The list as its format publishes it: a Status List Token or a list credential."""
    until = None if valid_for is None else now + valid_for
    if hasattr(lst, "to_token"):
        return lst.to_token(loaded.key, issuer=loaded.did, kid=kid, issued_at=now, valid_until=until)
    return lst.to_credential(loaded.key, issuer=loaded.did, kid=kid, valid_from=now, valid_until=until)


def _change_bitstring(
    value: bool, entries: list[dict[str, Any]], state: Path | None, key_file: Path | None,
    publish: Path | None, valid_for: int | None,
) -> list[dict[str, Any]]:
    from ..status.bitstring import parse_entry

    if state is None:
        raise click.BadParameter(f"give the list's state file: --status-list (or {STATUS_LIST_ENV})", param_hint="--status-list")
    _need_publish_target(key_file, publish)  # before taking the lock or asking for a passphrase
    results = []
    with list_class(state).edit(state) as lst:
        for raw in entries:
            if raw.get("type") == TOKEN_STATUS_ENTRY_TYPE:
                list_url, index = raw.get("uri"), raw.get("idx")
            else:
                entry = parse_entry(raw)
                list_url, index = entry.list_url, entry.index
            if list_url != lst.url:
                raise click.BadParameter(
                    f"the credential's list is {list_url}, the state file is for {lst.url}", param_hint="--status-list"
                )
            try:
                lst.set(index, value)
            except (ValueError, IndexError) as exc:
                # Same URL, other state (recreated with --force, a copy from elsewhere): refuse
                # rather than flip a bit this state never handed out.
                raise click.BadParameter(
                    f"{exc}; is {state} the state file this credential was issued from?", param_hint="--status-list"
                ) from None
            results.append({"list": lst.url, "purpose": lst.purpose, "index": index})
        _publish(lst, key_file, publish, valid_for)
    return results


def _change_onchain(
    value: bool, entries: list[dict[str, Any]], rpc: str | None, eth_key: Path | None
) -> list[dict[str, Any]]:
    from ..status.registry import parse_status_entry

    if rpc is None or eth_key is None:
        raise click.BadParameter(
            f"an on-chain status needs --rpc and --eth-key (or {RPC_ENV}, {ETH_KEY_ENV})", param_hint="--rpc/--eth-key"
        )
    chain = connect_rpc(rpc)
    _key, account = eth_signer(eth_key)
    results = []
    for raw in entries:
        entry = parse_status_entry(raw)
        if entry.chain_id != chain.chain_id():
            raise ChainError(f"the credential's registry is on chain {entry.chain_id}; --rpc is chain {chain.chain_id()}")
        tx = chain_module().RegistryClient(chain, entry.registry).change_status(
            account,
            revoked=value,
            namespace=entry.namespace,
            revocation_list=entry.revocation_list,
            revocation_key=entry.revocation_key,
        )
        results.append(
            {"registry": entry.registry, "namespace": entry.namespace, "revocationList": "0x" + entry.revocation_list.hex(),
             "revocationKey": "0x" + entry.revocation_key.hex(), "tx": tx.tx_hash, "block": tx.block_number}
        )
    return results


def change_entries(value: bool, entries: list[dict[str, Any]], opts: dict[str, Any]) -> list[dict[str, Any]]:
    """Revoke (``value``) or reinstate one credential, given its status entries: on chain and/or
    in its status list, as the entries say. ``opts``: ``rpc``, ``eth_key``, ``status_list``,
    ``key_file``, ``publish``, ``valid_for``. Returns what changed, one dict per entry."""
    onchain = [e for e in entries if e.get("type") == ONCHAIN_TYPE]
    bitstring = [e for e in entries if e.get("type") in (*BITSTRING_TYPES, TOKEN_STATUS_ENTRY_TYPE)]
    if not onchain and not bitstring:
        raise click.UsageError("the credential has no status entry vcgate can change")
    results = []
    if onchain:
        results += _change_onchain(value, onchain, opts.get("rpc"), opts.get("eth_key"))
    if bitstring:
        results += _change_bitstring(value, bitstring, opts.get("status_list"), opts.get("key_file"),
                                     opts.get("publish"), opts.get("valid_for"))
    return results


def echo_changes(value: bool, results: list[dict[str, Any]], *, as_json: bool, publish: Path | None,
                 extra: dict[str, Any] | None = None) -> None:
    word = "revoked" if value else "reinstated"
    if as_json:
        echo_json({"status": word, "changes": results, **(extra or {})})
        return
    for r in results:
        if "index" in r:
            click.echo(f"{word} index {r['index']} of {r['list']} ({r['purpose']}); published {publish}")
        elif "revocationKey" in r:
            click.echo(f"{word} key {r['revocationKey'][:18]}... in block {r['block']} (tx {r['tx']})")
        else:
            click.echo(f"{word} list {r['revocationList'][:18]}... in block {r['block']} (tx {r['tx']})")


def _change(value: bool, opts: dict[str, Any]) -> None:
    credential, list_name = opts["credential"], opts["list_name"]
    if (credential is None) == (list_name is None):
        raise click.UsageError("give a CREDENTIAL, or --list for a whole on-chain revocation list")
    extra: dict[str, Any] = {}
    if credential is not None:
        token = read_one_token(credential, "credential", "CREDENTIAL")
        results = change_entries(value, _status_entries(token), opts)
        # Keep the issuer's record in step, when it has this very credential.
        record = open_record(opts.get("record"))
        if record is not None:
            from ..issuer_record import credential_hash

            found = record.find_by_hash(credential_hash(token))
            if found is not None:
                record.mark(found.id, revoked=value, changes=results)
                extra["record"] = {"id": found.id, "path": str(record.path)}
    else:
        registry = opts["registry"]
        if opts["rpc"] is None or opts["eth_key"] is None or registry is None:
            raise click.BadParameter(
                f"--list needs --rpc, --eth-key and --registry (or {RPC_ENV}, {ETH_KEY_ENV}, {REGISTRY_ENV})",
                param_hint="--list",
            )
        chain = connect_rpc(opts["rpc"])
        _key, account = eth_signer(opts["eth_key"])
        lst = revocation_list_id(list_name)
        tx = chain_module().RegistryClient(chain, registry).change_list_status(
            account, revoked=value, revocation_list=lst, namespace=opts["namespace"]
        )
        results = [{"registry": registry, "namespace": opts["namespace"] or account.address,
                    "revocationList": "0x" + lst.hex(), "tx": tx.tx_hash, "block": tx.block_number}]
    echo_changes(value, results, as_json=opts["as_json"], publish=opts["publish"], extra=extra)


def _change_options(fn: Any) -> Any:
    options = [
        click.argument("credential", required=False, metavar="[CREDENTIAL]"),
        click.option("--list", "list_name", metavar="NAME|0xHEX", default=None,
                     help="On-chain: change a whole revocation list instead of one credential."),
        click.option("--namespace", metavar="ADDR", default=None,
                     help="On-chain, with --list: the list's namespace [default: the --eth-key address]."),
        click.option("--registry", envvar=REGISTRY_ENV, default=None, metavar="ADDR",
                     help=f"On-chain, with --list: the registry [env {REGISTRY_ENV}]."),
        click.option("--rpc", envvar=RPC_ENV, default=None, metavar="URL", help=f"On-chain: JSON-RPC URL [env {RPC_ENV}]."),
        click.option("--eth-key", envvar=ETH_KEY_ENV, default=None, type=EXISTING_FILE, metavar="FILE",
                     help=f"On-chain: ES256K key file of the list's owner or a delegate [env {ETH_KEY_ENV}]."),
        click.option("--status-list", envvar=STATUS_LIST_ENV, default=None, type=EXISTING_FILE, metavar="STATE",
                     help=f"Bitstring: the list's state file [env {STATUS_LIST_ENV}]."),
        click.option("--key", "key_file", default=None, type=EXISTING_FILE, metavar="FILE",
                     help="Bitstring: the issuer key that re-signs the list credential."),
        click.option("--publish", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
                     help="Bitstring: where to write the re-signed list credential (serve it at the list URL)."),
        click.option("--valid-for", type=DURATION, default=None,
                     help="Bitstring: validity of the re-signed list credential [default: no expiry]."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        record_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command("revoke")
@_change_options
def revoke(**opts: Any) -> None:
    """Revoke a credential -- on chain or in its bitstring status list.

    CREDENTIAL is a file, '-' or the JWT itself; its credentialStatus says where its status
    lives. On chain (EthrRevocationRegistry2022): sends changeStatus signed by --eth-key (the
    list's owner or a delegate) and waits for the receipt; gateways' mirrors see it within a
    poll interval and a block. Bitstring: sets the credential's bit in --status-list, re-signs
    the list with --key and writes it to --publish (on a suspension list this suspends).

    \b
    Examples:
      vcgate revoke --rpc http://127.0.0.1:8545 --eth-key issuer-eth.key cred.jwt
      vcgate revoke --list agents-2026 --registry "$VCGATE_REGISTRY"
      vcgate revoke --status-list status-1.json --key issuer.key --publish www/status/1 cred.jwt
    """
    _change(True, opts)


@cli.command("unrevoke")
@_change_options
def unrevoke(**opts: Any) -> None:
    """Reinstate a revoked (or suspended) credential, or a whole on-chain list.

    \b
    Examples:
      vcgate unrevoke --rpc http://127.0.0.1:8545 --eth-key issuer-eth.key cred.jwt
      vcgate unrevoke --list agents-2026 --registry "$VCGATE_REGISTRY"
      vcgate unrevoke --status-list status-1.json --key issuer.key --publish www/status/1 cred.jwt
    """
    _change(False, opts)


# --- status -------------------------------------------------------------------------------------


@cli.command("status")
@click.argument("credential", metavar="CREDENTIAL")
@click.option("--rpc", envvar=RPC_ENV, default=None, metavar="URL", help=f"JSON-RPC URL for on-chain entries [env {RPC_ENV}].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def status(credential: str, rpc: str | None, as_json: bool) -> None:
    """Print a credential's on-chain revocation state as the chain reads now.

    Exit 0: in force. Exit 1: revoked ('error: revoked: ...'). The credential's signature is
    not checked here (use 'vcgate verify --rpc'); bitstring lists are checked by 'vcgate verify'.

    \b
    Examples:
      vcgate status --rpc http://127.0.0.1:8545 cred.jwt
    """
    from ..status.registry import DirectRegistryStatus

    all_entries = _status_entries(read_one_token(credential, "credential", "CREDENTIAL"))
    entries = [e for e in all_entries if e.get("type") == ONCHAIN_TYPE]
    if not entries:
        hint = "; its status list is checked by 'vcgate verify'" if any(
            e.get("type") in BITSTRING_TYPES for e in all_entries) else ""
        raise click.UsageError(f"the credential has no {ONCHAIN_TYPE} status entry{hint}")
    if rpc is None:
        raise click.BadParameter(f"give --rpc (or {RPC_ENV})", param_hint="--rpc")
    checker = DirectRegistryStatus(connect_rpc(rpc))
    states = [checker.read(e) for e in entries]
    rows = [
        {"registry": s.entry.registry, "chainId": s.entry.chain_id, "namespace": s.entry.namespace,
         "revocationList": "0x" + s.entry.revocation_list.hex(), "revocationKey": "0x" + s.entry.revocation_key.hex(),
         "block": s.block_number, "revoked": s.revoked, "listRevoked": s.list_revoked,
         "state": "revoked" if s.revoked else "active"}
        for s in states
    ]
    if as_json:
        echo_json(rows if len(rows) > 1 else rows[0])
    else:
        for r in rows:
            why = " (whole list)" if r["listRevoked"] else ""
            click.echo(f"{r['state']}{why} at block {r['block']}: registry {r['registry']} list {r['revocationList'][:18]}...")
    if any(s.revoked for s in states):
        if as_json:
            click.get_current_context().exit(1)
        raise RevokedError()


# --- status-list ----------------------------------------------------------------------------------


@cli.group("status-list")
def status_list_group() -> None:
    """Status lists kept by an issuer (off-chain revocation or suspension): W3C Bitstring
    Status Lists for JWT credentials, IETF Token Status Lists (--format token) for SD-JWT VCs.

    The issuer keeps a state file (allocated indices and bits), issues credentials that point
    at random indices of it, and serves the signed list credential at the list's https URL;
    'vcgate revoke' / 'unrevoke' flip a bit and re-sign. Verifiers fetch the list ('vcgate
    verify', the gateway) and cache it for its ttl (60 s by default).

    \b
    Examples:
      vcgate status-list create --url https://issuer.example/status/1 --out status-1.json
      vcgate issue --key issuer.key --subject "$AGENT" --status bitstring --status-list status-1.json > cred.jwt
      vcgate status-list publish --status-list status-1.json --key issuer.key --out www/status/1
      vcgate revoke --status-list status-1.json --key issuer.key --publish www/status/1 cred.jwt
      vcgate status-list show status-1.json
      vcgate status-list create --format token --url https://issuer.example/statuslists/1 --out tsl-1.json
      vcgate issue --format sd-jwt --key issuer.key --subject "$AGENT" --type ModelAccessCredential \\
          --status bitstring --status-list tsl-1.json > cred.sd-jwt
    """


@status_list_group.command("create")
@click.option("--url", required=True, metavar="URL", help="https URL the list credential will be published at.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), metavar="STATE",
              help="The state file to create (allocated indices and bits).")
@click.option("--purpose", type=click.Choice(["revocation", "suspension"]), default="revocation", help="statusPurpose.")
@click.option("--length", type=int, default=131072, help="Entries (131072 to 8388608, a multiple of 8).")
@click.option("--force", is_flag=True, help="Overwrite an existing state file.")
@click.option("--format", "fmt", type=click.Choice(["bitstring", "token"]), default="bitstring", show_default=True,
              help="'bitstring': W3C Bitstring Status List (for JWT credentials); 'token': IETF Token Status "
              "List, a statuslist+jwt (for SD-JWT VCs).")
@click.option("--json", "as_json", is_flag=True, help="Print {state, url, format, purpose, length} as JSON.")
def status_list_create(url: str, out: Path, purpose: str, length: int, force: bool, fmt: str, as_json: bool) -> None:
    """Create an empty status list state file.

    --url is where 'vcgate status-list publish' output must be served: every credential issued
    from the list names it, so it cannot change later. Keep the state file private and backed
    up: it is the only record of which indices are taken.

    \b
    Examples:
      vcgate status-list create --url https://issuer.example/status/1 --out status-1.json
      vcgate status-list create --url https://issuer.example/status/s1 --purpose suspension --out susp-1.json
      vcgate status-list create --format token --url https://issuer.example/statuslists/1 --out tsl-1.json
    """
    from ..status.bitstring import StatusList
    from ..status.tokenlist import TokenStatusList

    if out.exists() and not force:
        raise click.BadParameter(f"{out} exists; pass --force to replace it", param_hint="--out")
    if not out.parent.is_dir():
        raise click.BadParameter(f"directory {out.parent} does not exist", param_hint="--out")
    try:
        lst = (TokenStatusList if fmt == "token" else StatusList).create(url, purpose=purpose, length=length)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc)) from None
    lst.save(out)
    info(f"wrote {out}: {fmt} list, {lst.length} entries, {purpose}, published at {url}")
    if as_json:
        echo_json({"state": str(out), "url": url, "format": fmt, "purpose": purpose, "length": lst.length})


@status_list_group.command("publish")
@click.option("--status-list", envvar=STATUS_LIST_ENV, required=True, type=EXISTING_FILE, metavar="STATE",
              help=f"The list's state file [env {STATUS_LIST_ENV}].")
@click.option("--key", "key_file", required=True, type=EXISTING_FILE, metavar="FILE", help="The issuer key that signs the list.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Write the list credential here [default: stdout].")
@click.option("--valid-for", type=DURATION, default=None, help="Validity of the list credential [default: no expiry].")
@click.option("--json", "as_json", is_flag=True, help="Print {url, out, list} as JSON (list: the signed list token).")
def status_list_publish(status_list: Path, key_file: Path, out: Path | None, valid_for: int | None,
                        as_json: bool) -> None:
    """Sign the current list as a BitstringStatusListCredential (vc+jwt) -- or, for a
    '--format token' list, a Status List Token (statuslist+jwt) -- to serve at its URL.

    Publish once after 'status-list create' (before the first credential is checked);
    'vcgate revoke --publish' and 'unrevoke --publish' re-sign it after each change. Serve it
    as application/vc+jwt (a token list as application/statuslist+jwt); the signer must be
    the key the credentials were issued with.

    \b
    Examples:
      vcgate status-list publish --status-list status-1.json --key issuer.key --out www/status/1
    """
    lst = list_class(status_list).load(status_list)
    if out is not None:
        token = _publish(lst, key_file, out, valid_for)
        info(f"wrote {out}; serve it at {lst.url}")
    else:
        loaded = load_key(key_file)
        kid = signing_kid(loaded.did, loaded.key.public_key, "assertionMethod", make_resolver("local"))
        token = _signed_list(lst, loaded, kid, float(int(time.time())), valid_for)
    if as_json:
        echo_json({"url": lst.url, "out": None if out is None else str(out), "list": token})
    elif out is None:
        click.echo(token)


@status_list_group.command("show")
@click.argument("state", type=EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status_list_show(state: Path, as_json: bool) -> None:
    """Print a status list's URL, purpose, size and how many entries are allocated and set.

    \b
    Examples:
      vcgate status-list show status-1.json
      vcgate status-list show --json status-1.json | jq .free
    """
    lst = list_class(state).load(state)
    summary = {"url": lst.url, "format": "token" if hasattr(lst, "to_token") else "bitstring",
               "purpose": lst.purpose, "length": lst.length,
               "allocated": lst.allocated_count, "free": lst.free_count, "set": sum(bin(b).count("1") for b in lst.bits)}
    if as_json:
        echo_json(summary)
    else:
        for k, v in summary.items():
            click.echo(f"{k:>10}: {v}")


# --- the status of a credential being issued or verified (used by `issue` and `verify`) ------------


@dataclass(frozen=True)
class StatusOptions:
    """``vcgate issue``'s status options, as given."""

    method: str | None = None
    rpc: str | None = None
    registry: str | None = None
    eth_key: Path | None = None
    revocation_list: str = "default"
    status_list: Path | None = None


def build_status_entry(options: StatusOptions, *, issuer_key: PrivateKey, sd_jwt: bool = False) -> dict[str, Any] | None:
    """The ``credentialStatus`` of a new credential (an SD-JWT VC's ``status`` claim with
    ``sd_jwt``), or None for a credential without one."""
    if options.method is None:
        return None
    if options.method == "bitstring":
        return bitstring_status_entry(options.status_list, token=sd_jwt)
    if sd_jwt:
        raise click.BadParameter("an SD-JWT VC takes --status bitstring (a Token Status List or a Bitstring list)", param_hint="--status")
    if options.method == "onchain":
        return onchain_status_entry(
            rpc=options.rpc,
            registry=options.registry,
            eth_key=options.eth_key,
            issuer_key=issuer_key,
            revocation_list=options.revocation_list,
        )
    raise click.BadParameter(f"unknown status method {options.method!r}", param_hint="--status")



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
        from ..status.tokenlist import TokenStatusListMethod

        fetcher = SafeFetcher(
            allow_networks=network.allow_networks, verify=network.verify, label="status list host", document="status list",
            resolve_host=network.resolve_host(),
        )
        methods.append(BitstringStatusMethod(verifier=verifier, fetch=fetcher.fetch))
        methods.append(TokenStatusListMethod(
            verifier=verifier, fetch=lambda url: fetcher.fetch(url, accept=TokenStatusListMethod.accept)
        ))
    if rpc is not None:
        from ..status.registry import DirectRegistryStatus

        methods.append(DirectRegistryStatus(connect_rpc(rpc)))
    checker = StatusChecker(methods, ignore_unknown=True)
    for vc in credentials:
        checker.check(vc)
    _warn_unchecked_status(credentials, checker.types)


