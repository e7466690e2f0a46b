"""The credential commands: ``vcgate issue``, ``vcgate present`` and ``vcgate verify``."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ..credentials import FORMAT_VC_JOSE, Verifier, create_presentation, issue_credential
from ..credentials.delegation import chain_ancestors, chain_tokens
from ..credentials.jws import JWS, parse_jws
from ..credentials.jwt import DEFAULT_CONTEXTS, VC_JOSE_TYPS, VP_JOSE_TYPS, read_credential, to_xsd_datetime
from ..credentials.dcql import parse_dcql, select
from ..credentials.models import VerifiedCredential, VerifiedPresentation
from ..credentials.sdjwt import holder_view, is_sd_jwt, issue_sd_jwt_vc, present_sd_jwt
from ..credentials.sdjwt import status_entries as sd_jwt_status_entries
from ..did import DID, Resolver
from ..errors import CredentialExistsError, CredentialNotRevocableError, TypeMismatchError, VCGateError
from ..issuer_record import IssuedCredential, credential_hash
from ..keys import ALGORITHMS
from .base import (
    DID_PARAM,
    DURATION,
    EXISTING_FILE,
    EXIT_REFUSED,
    MAX_TIMESTAMP,
    FORMATS,
    TIMESTAMP,
    NetworkOptions,
    alg_name_option,
    did_web_ports_option,
    cli,
    echo_json,
    hint_for,
    load_key,
    make_resolver,
    open_record,
    print_fields,
    read_claims,
    read_one_token,
    read_tokens,
    record_option,
    resolve_option,
    resolver_option,
    info,
    signing_kid,
    stdin_is_interactive,
    warn,
)
from .status import STATUS_LIST_ENV, StatusOptions, build_status_entry, change_entries, check_status, echo_changes
from .chain import ETH_KEY_ENV, RPC_ENV

SD_JWT = "sd-jwt"


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
    type=click.Choice([*FORMATS, SD_JWT]),
    default=FORMAT_VC_JOSE,
    help="VC-JOSE (VCDM 2.0), VC-JWT (VCDM 1.1), or SD-JWT VC (dc+sd-jwt: one --type is its vct; "
    "the holder is bound by cnf to --subject's authentication key; see docs/sd-jwt.md).",
)
@click.option(
    "--disclosable",
    metavar="CLAIM,...",
    default=None,
    help="--format sd-jwt: the claims to make selectively disclosable (paths: org, address.country, "
    "roles[]) [default: every claim; vct, iss, validity, cnf and status never are].",
)
@click.option("--id", "credential_id", metavar="URI", help="Credential id [default: a fresh urn:uuid].")
@click.option(
    "--issuer", type=DID_PARAM, default=None, help="Issuer DID; must authorise the key [default: the key's DID]."
)
@resolver_option
@click.option(
    "--status",
    "status_method",
    type=click.Choice(["onchain", "bitstring"]),
    default=None,
    help="Embed a status: 'onchain' = an ERC-5539 registry entry (EthrRevocationRegistry2022); "
    "'bitstring' = an index in the --status-list: a W3C Bitstring Status List (BitstringStatusListEntry; "
    "in an SD-JWT VC as status.bitstring_status_list) or, for --format sd-jwt, a Token Status List.",
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
@click.option(
    "--max-delegation-depth",
    type=click.IntRange(0, 8),
    default=None,
    metavar="N",
    help="How many delegation links may follow this credential (docs/delegation.md) [default: the policy decides].",
)
@alg_name_option
@record_option
@click.option("--record-claims", is_flag=True,
              help="Keep the subject's claims in the record too [default: only id, subject, types, validity, status].")
@click.option("--json", "as_json", is_flag=True,
              help="Print {credential, id, format, issuer, subject, types, valid_from, valid_until, status, record} as JSON.")
def issue(
    key_file: Path,
    subject: DID,
    types: tuple[str, ...],
    claims: str | None,
    valid_from: float | None,
    valid_for: int | None,
    fmt: str,
    disclosable: str | None,
    credential_id: str | None,
    issuer: DID | None,
    resolver: str,
    status_method: str | None,
    status_list: Path | None,
    rpc: str | None,
    registry: str | None,
    eth_key: Path | None,
    revocation_list: str,
    max_delegation_depth: int | None,
    alg_name: str,
    record: str | None,
    record_claims: bool,
    as_json: bool,
) -> None:
    """Issue a credential and print it as a JWT.

    What was issued (id, subject, types, format, issuer, validity, status entry, issue time,
    the credential's SHA-256; never the key, and the claims only with --record-claims) is added
    to the issuer's record ('vcgate credentials list|show|revoke'); --record off keeps none.

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
      vcgate issue --format sd-jwt --key issuer.key --subject "$AGENT" --type ModelAccessCredential \\
          --claims '{"models": ["gpt-4o"], "org": "acme", "email": "ada@acme.example"}' > cred.sd-jwt
    """
    if any(not t.strip() for t in types):
        raise click.BadParameter("a type must not be empty", param_hint="--type")
    if disclosable is not None and fmt != SD_JWT:
        raise click.BadParameter("--disclosable is for --format sd-jwt", param_hint="--disclosable")
    if fmt == SD_JWT and max_delegation_depth is not None:
        raise click.BadParameter("delegation chains are VC-JOSE credentials (docs/sd-jwt.md)", param_hint="--format")
    if fmt == SD_JWT and len(types) != 1:
        raise click.BadParameter("--format sd-jwt takes exactly one --type: it becomes the vct", param_hint="--type")
    _check_status_options(status_method)
    _check_uri(credential_id)
    subject_claims = read_claims(claims)
    if "id" in subject_claims:
        raise click.BadParameter("claims must not set 'id': the subject is --subject", param_hint="--claims")
    start = valid_from if valid_from is not None else float(int(time.time()))
    until = None if valid_for is None else start + valid_for
    if until is not None and until > MAX_TIMESTAMP:
        raise click.BadParameter("--valid-from plus --valid-for goes past the year 9999", param_hint="--valid-for")
    if until is not None and until <= time.time():
        raise click.BadParameter(
            f"--valid-from plus --valid-for ends at {_iso(until)}, in the past: the credential would be expired "
            "at issue; give a later --valid-from or a longer --valid-for",
            param_hint="--valid-for",
        )
    issued = open_record(record)
    if issued is not None and credential_id is not None and issued.find(credential_id) is not None:
        raise CredentialExistsError(f"{issued.path} already has a credential {credential_id[:100]}")
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
    status_options = StatusOptions(status_method, rpc, registry, eth_key, revocation_list, status_list)
    if fmt == SD_JWT:
        holder_methods = make_resolver(resolver).resolve(subject).methods_for("authentication")
        if not holder_methods:
            raise click.BadParameter(f"{subject[:60]} has no authentication key to bind", param_hint="--subject")
        status = build_status_entry(status_options, issuer_key=loaded.key, sd_jwt=True)
        try:
            token = issue_sd_jwt_vc(
                loaded.key, issuer=issuer_did, kid=kid, vct=types[0], claims=subject_claims, valid_from=start,
                valid_until=until, holder_kid=holder_methods[0].id, credential_id=cid, status=status,
                disclosable=None if disclosable is None else [c.strip() for c in disclosable.split(",") if c.strip()],
                alg_name=alg_name,
            )
        except VCGateError as exc:
            raise click.BadParameter(exc.message, param_hint="--claims/--disclosable") from None
        all_types: tuple[str, ...] = (types[0],)
        recorded_status = tuple(dict(e) for e in sd_jwt_status_entries(status))
    else:
        status = build_status_entry(status_options, issuer_key=loaded.key)
        token = issue_credential(
            loaded.key,
            issuer=issuer_did,
            kid=kid,
            subject=subject,
            types=types,
            claims=subject_claims,
            valid_from=start,
            valid_until=until,
            status=status,
            credential_id=cid,
            format=fmt,
            extra={"delegation": {"maxDepth": max_delegation_depth}} if max_delegation_depth is not None else None,
            alg_name=alg_name,
        )
        all_types = ("VerifiableCredential", *types)
        recorded_status = () if status is None else (status,)
    entry = IssuedCredential(
        id=cid, subject=str(subject), types=all_types, format=fmt, issuer=str(issuer_did), valid_from=start,
        valid_until=until, status=recorded_status, issued_at=time.time(), sha256=credential_hash(token),
        claims=subject_claims if record_claims else None, key_file=str(key_file.resolve()),
        status_list=str(status_list.resolve()) if status_method == "bitstring" and status_list is not None else None,
    )
    if issued is not None:  # recorded before it is printed: nothing leaves vcgate unrecorded
        issued.add(entry)
    if as_json:
        summary = entry.to_dict(time.time())
        echo_json({"credential": token, **{k: summary[k] for k in _ISSUE_JSON_KEYS},
                   "record": None if issued is None else str(issued.path)})
        return
    click.echo(token)


_ISSUE_JSON_KEYS = ("id", "format", "issuer", "subject", "types", "valid_from", "valid_until", "status", "sha256")


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
@click.option("--disclose", metavar="CLAIM,...", default=None,
              help="SD-JWT VC: disclose exactly these claims (paths: org, address.country, roles[]) [default: all].")
@click.option("--dcql", metavar="JSON|@FILE", default=None,
              help="SD-JWT VC: disclose exactly what this DCQL query (OpenID4VP) asks for; @- reads stdin.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {presentation, format, holder, audience, nonce, credentials} as JSON.")
@click.argument("credentials", nargs=-1, required=True, metavar="CREDENTIAL...")
def present(key_file: Path, aud: str, nonce: str, fmt: str, lifetime: int, disclose: str | None, dcql: str | None,
            as_json: bool, credentials: tuple[str, ...]) -> None:
    """Sign a presentation of credentials as the holder; print it as a JWT.

    Each CREDENTIAL is a file, '-' for stdin (one or more JWTs), or a JWT itself. The holder
    is the key's DID; it should be the subject of each credential -- or, for a delegation
    chain (a root credential and its delegation credentials, see 'vcgate delegate'), of the
    chain's last delegation. A chain is presented whole, root first. An SD-JWT VC is presented
    alone, with the Disclosures --disclose or --dcql ask for and a Key Binding JWT (aud,
    nonce) signed with the key: the output is <JWT>~<Disclosure>~...~<KB-JWT>.

    \b
    Examples:
      vcgate present --key agent.key --aud https://api.example.com --nonce "$NONCE" cred.jwt
      vcgate issue ... | vcgate present --key agent.key --aud https://api --nonce n1 -
      vcgate present --key subagent.key --aud https://api.example.com --nonce "$NONCE" subagent.chain
      vcgate present --key agent.key --aud https://api --nonce n1 --disclose models cred.sd-jwt
      vcgate present --key agent.key --aud https://api --nonce n1 \\
          --dcql '{"credentials":[{"id":"a","format":"dc+sd-jwt","claims":[{"path":["org"]}]}]}' cred.sd-jwt
    """
    if credentials.count("-") > 1 or (dcql == "@-" and "-" in credentials):
        raise click.BadParameter("'-' (stdin) can be given once", param_hint="CREDENTIAL")
    tokens = [t for source in credentials for t in read_tokens(source, "credential", "CREDENTIAL")]
    if not tokens:
        raise click.UsageError("no credential to present")
    if any(is_sd_jwt(t) for t in tokens):
        holder, token = _present_sd_jwt(key_file, aud, nonce, tokens, disclose, dcql)
        _echo_presentation(token, SD_JWT, holder, aud, nonce, 1, as_json)
        return
    if disclose is not None or dcql is not None:
        raise click.BadParameter("--disclose and --dcql are for SD-JWT VCs", param_hint="--disclose/--dcql")
    # A look without verifying, before asking for the passphrase: catch a wrong file early,
    # and warn about a presentation that holder binding will refuse.
    claims = [read_credential(parse_jws(t, algorithms=ALGORITHMS), contexts=DEFAULT_CONTEXTS) for t in tokens]
    loaded = load_key(key_file)
    # A delegation chain travels whole, root first: only its last delegate is the holder.
    ancestors = chain_ancestors(tokens)
    for token, cred in zip(tokens, claims):
        if cred.subject != loaded.did and token not in ancestors:
            about = str(cred.subject)[:60]
            warn(f"credential {cred.id or '(no id)'} is about {about}, not the holder {loaded.did[:60]}")
    kid = signing_kid(loaded.did, loaded.key.public_key, "authentication", make_resolver("default"))
    token = create_presentation(
        loaded.key,
        holder=loaded.did,
        kid=kid,
        credentials=chain_tokens(tokens),
        audience=aud,
        nonce=nonce,
        issued_at=time.time(),
        lifetime=lifetime,
        format=fmt,
    )
    _echo_presentation(token, fmt, loaded.did, aud, nonce, len(tokens), as_json)


def _echo_presentation(token: str, fmt: str, holder: str, aud: str, nonce: str, count: int, as_json: bool) -> None:
    if as_json:
        echo_json({"presentation": token, "format": fmt, "holder": str(holder), "audience": aud, "nonce": nonce,
                   "credentials": count})
    else:
        click.echo(token)


def _present_sd_jwt(key_file: Path, aud: str, nonce: str, tokens: list[str], disclose: str | None,
                    dcql: str | None) -> tuple[str, str]:
    if len(tokens) != 1:
        raise click.BadParameter("an SD-JWT VC is presented alone: give one CREDENTIAL", param_hint="CREDENTIAL")
    if disclose is not None and dcql is not None:
        raise click.BadParameter("give --disclose or --dcql, not both", param_hint="--disclose/--dcql")
    paths: list[tuple[Any, ...]] | None = None
    if disclose is not None:
        paths = [tuple(None if p == "[]" else p for p in c.strip().replace("[]", ".[]").split(".") if p)
                 for c in disclose.split(",") if c.strip()]
    elif dcql is not None:
        try:
            matches = select(parse_dcql(read_claims(dcql)), [(tokens[0], *holder_view(tokens[0]))])
        except VCGateError as exc:
            raise click.BadParameter(exc.message, param_hint="--dcql") from None
        if not matches:
            raise click.UsageError("the credential does not have what the DCQL query asks for")
        paths = next(iter(matches.values()))[1]
    loaded = load_key(key_file)
    return loaded.did, present_sd_jwt(tokens[0], disclose=paths, holder_key=loaded.key, audience=aud, nonce=nonce,
                                      issued_at=time.time())


# --- verify -------------------------------------------------------------------------------------


@cli.command()
@click.argument("source", metavar="[FILE|-]", required=False)
@click.option("--aud", metavar="AUD", help="Require the presentation's audience to name this.")
@click.option("--nonce", metavar="N", help="Require the presentation to carry this nonce.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (or the refusal) as JSON on stdout.")
@click.option(
    "--no-holder-binding", is_flag=True, help="Do not require the holder to be the subject of each credential."
)
@resolver_option
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
@did_web_ports_option
@resolve_option
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
    did_web_ports: tuple[int, ...],
    resolve: tuple[tuple[str, str], ...],
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
    network = NetworkOptions(allow_networks, str(ca_bundle) if ca_bundle is not None else None, did_web_ports, resolve)
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
        echo_json({"valid": False, "error": exc.code, "message": exc.message, "hint": exc.hint or hint_for(exc.code)})
        ctx.exit(EXIT_REFUSED)
    # Without a policy there is no list of trusted issuers: say so instead of implying trust.
    result["issuer_trust"] = "not checked"
    if as_json:
        echo_json({"valid": True, **result})
        return
    trust_note = "not checked (signature, validity and status were): 'vcgate policy explain --policy FILE' checks it"
    if result["kind"] == "credential":
        click.echo(f"valid credential ({result['format']})")
        print_fields([*_credential_rows(result), ("issuer trust", trust_note)])
        return
    click.echo(f"valid presentation ({result['format']})")
    print_fields(
        [
            ("holder", result["holder"]),
            ("audience", ", ".join(result["audience"])),
            ("nonce", result["nonce"]),
            ("expires", result["expires_at"] or "no expiry"),
            ("credentials", len(result["credentials"])),
            ("issuer trust", trust_note),
        ]
    )
    for i, cred in enumerate(result["credentials"], 1):
        click.echo(f"  [{i}] {cred['format']}")
        print_fields(_credential_rows(cred), indent="      ")


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
    if is_sd_jwt(token):  # an SD-JWT VC as issued ends in '~'; a presentation in its KB-JWT
        kind = "credential" if token.endswith("~") else "presentation"
    else:
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




# --- the issuer's record: credentials list|show|revoke ---------------------------------------------


@cli.group("credentials")
def credentials_group() -> None:
    """The issuer's record of what 'vcgate issue' issued: list it, show one, revoke by id.

    The record is a SQLite file (mode 0600): --record PATH or $VCGATE_ISSUER_RECORD, default
    $XDG_DATA_HOME/vcgate/issued.sqlite3 (~/.local/share/vcgate/issued.sqlite3); 'off' keeps
    none. It holds each credential's id, subject, types, format, issuer, validity, status entry,
    issue time and SHA-256 -- never a key, and claims only with 'issue --record-claims'.

    \b
    Examples:
      vcgate credentials list --status active
      vcgate credentials show urn:uuid:3f0c...
      vcgate credentials revoke urn:uuid:3f0c... --publish www/status/1
    """


def _need_record(record: str | None) -> Any:
    issued = open_record(record)
    if issued is None:
        raise click.BadParameter("the record is off: give --record PATH (or VCGATE_ISSUER_RECORD)", param_hint="--record")
    return issued


def _complete_ids(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of ID from the record the command line (or the environment) names."""
    try:
        issued = open_record(ctx.params.get("record"))
        return [] if issued is None else [c.id for c in issued.list() if c.id.startswith(incomplete)][:200]
    except VCGateError:
        return []


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@credentials_group.command("list")
@click.option("--subject", default=None, metavar="DID", help="Only credentials about this subject.")
@click.option("--status", "state", type=click.Choice(["active", "revoked", "expired"]), default=None,
              help="Only credentials in this state [default: all].")
@click.option("--json", "as_json", is_flag=True, help="Print {record, credentials: [...]} as JSON (shapes: docs/cli.md).")
@record_option
def credentials_list(subject: str | None, state: str | None, as_json: bool, record: str | None) -> None:
    """List the issued credentials, oldest first: id, state, subject, types, expiry.

    \b
    Examples:
      vcgate credentials list
      vcgate credentials list --subject did:key:z6Mk... --status active --json
    """
    issued = _need_record(record)
    rows = issued.list(subject=subject, state=state)
    now = issued.now()
    if as_json:
        echo_json({"record": str(issued.path), "credentials": [c.to_dict(now) for c in rows]})
        return
    if not rows:
        info(f"no credentials in {issued.path}" + (" that match" if subject or state else ""))
        return
    for c in rows:
        d = c.to_dict(now)
        click.echo(f"{d['id']}  {d['state']:<7}  {_short(d['subject'], 40):<40}  {','.join(d['types'][-1:])}  "
                   f"until {d['valid_until'] or 'no expiry'}")


@credentials_group.command("show")
@click.argument("credential_id", metavar="ID", shell_complete=_complete_ids)
@click.option("--json", "as_json", is_flag=True, help="Print the record entry as JSON (shape: docs/cli.md).")
@record_option
def credentials_show(credential_id: str, as_json: bool, record: str | None) -> None:
    """Show what the record keeps about one credential.

    \b
    Examples:
      vcgate credentials show urn:uuid:3f0c...
      vcgate credentials show --json urn:uuid:3f0c... | jq .status
    """
    issued = _need_record(record)
    d = issued.get(credential_id).to_dict(issued.now())
    if as_json:
        echo_json(d)
        return
    print_fields([
        ("id", d["id"]), ("state", d["state"]), ("subject", d["subject"]), ("types", ", ".join(d["types"])),
        ("format", d["format"]), ("issuer", d["issuer"]), ("valid from", d["valid_from"]),
        ("valid until", d["valid_until"] or "no expiry"), ("issued at", d["issued_at"]),
        ("status", json.dumps(d["status"], separators=(",", ":")) if d["status"] else "none (cannot be revoked)"),
        ("sha256", d["sha256"]), ("key file", d["key_file"]), ("status list", d["status_list"]),
        ("revoked at", d["revoked_at"]),
        *([("claims", json.dumps(d["claims"], separators=(",", ":")))] if "claims" in d else []),
    ])


@credentials_group.command("revoke")
@click.argument("credential_id", metavar="ID", shell_complete=_complete_ids)
@click.option("--publish", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Status list: where to write the re-signed list (the file served at the list URL).")
@click.option("--key", "key_file", default=None, type=EXISTING_FILE, metavar="FILE",
              help="Status list: the issuer key that re-signs it [default: the key file it was issued with].")
@click.option("--status-list", envvar=STATUS_LIST_ENV, default=None, type=EXISTING_FILE, metavar="STATE",
              help=f"Status list: its state file [default: the one it was issued from; env {STATUS_LIST_ENV}].")
@click.option("--valid-for", type=DURATION, default=None,
              help="Status list: validity of the re-signed list [default: no expiry].")
@click.option("--rpc", envvar=RPC_ENV, default=None, metavar="URL", help=f"On chain: JSON-RPC URL [env {RPC_ENV}].")
@click.option("--eth-key", envvar=ETH_KEY_ENV, default=None, type=EXISTING_FILE, metavar="FILE",
              help=f"On chain: ES256K key file of the list's owner or a delegate [env {ETH_KEY_ENV}].")
@click.option("--json", "as_json", is_flag=True, help="Print {status, changes, record} as JSON (as 'vcgate revoke --json').")
@record_option
def credentials_revoke(credential_id: str, publish: Path | None, key_file: Path | None, status_list: Path | None,
                       valid_for: int | None, rpc: str | None, eth_key: Path | None, as_json: bool,
                       record: str | None) -> None:
    """Revoke a recorded credential by its id -- on chain and/or in its status list, as its
    status entry says (the same change as 'vcgate revoke CREDENTIAL') -- and record it.

    \b
    Examples:
      vcgate credentials revoke urn:uuid:3f0c... --publish www/status/1
      vcgate credentials revoke urn:uuid:77aa... --rpc http://127.0.0.1:8545 --eth-key issuer-eth.key
    """
    issued = _need_record(record)
    cred = issued.get(credential_id)
    if not cred.status:
        raise CredentialNotRevocableError(
            f"{credential_id[:100]} was issued without a status entry (no 'vcgate issue --status'), "
            "so no list or registry can say it is revoked")

    def recorded(path: str | None) -> Path | None:
        return Path(path) if path is not None and Path(path).is_file() else None

    opts = {"rpc": rpc, "eth_key": eth_key, "publish": publish, "valid_for": valid_for,
            "status_list": status_list or recorded(cred.status_list), "key_file": key_file or recorded(cred.key_file)}
    results = change_entries(True, [dict(e) for e in cred.status], opts)
    issued.mark(cred.id, revoked=True, changes=results)
    echo_changes(True, results, as_json=as_json, publish=publish,
                 extra={"record": {"id": cred.id, "path": str(issued.path)}})
