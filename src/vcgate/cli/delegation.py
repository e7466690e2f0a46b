"""``vcgate delegate``: hand a narrower slice of a credential to an agent (docs/delegation.md)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..credentials.delegation import chain_tokens, issue_delegation
from ..did import DID
from .base import (
    DID_PARAM,
    DURATION,
    EXISTING_FILE,
    cli,
    echo_json,
    load_key,
    make_resolver,
    read_claims,
    read_tokens,
    resolver_option,
    signing_kid,
)
from .status import StatusOptions, build_status_entry


@cli.command(short_help="Delegate a narrower part of a credential to another DID; print the delegation credential.")
@click.option("--key", "key_file", required=True, type=EXISTING_FILE, help="Key file of the parent credential's subject.")
@click.option(
    "--credential",
    "credential_source",
    required=True,
    metavar="FILE|-",
    help="The parent credential, or the chain that ends in it (root first, one JWT a line).",
)
@click.option("--subject", required=True, type=DID_PARAM, help="DID of the delegate (the agent or sub-agent).")
@click.option(
    "--claims",
    metavar="JSON|@FILE",
    help="Capabilities passed on, with the root's claim names: narrower or equal; the rest is inherited.",
)
@click.option("--valid-for", type=DURATION, default="1h", show_default=True, help="Validity (clamped to the parent's end).")
@click.option("--max-depth", type=click.IntRange(0, 8), default=None, metavar="N", help="How many further delegations the delegate may make.")
@click.option(
    "--status-list",
    envvar="VCGATE_STATUS_LIST",
    default=None,
    type=EXISTING_FILE,
    metavar="STATE",
    help="Embed an entry of your Bitstring Status List (its state file), so you can revoke this delegation [env VCGATE_STATUS_LIST].",
)
@click.option("--chain", "print_chain", is_flag=True, help="Print the delegate's whole chain (root first), not just the new credential.")
@click.option("--json", "as_json", is_flag=True,
              help="Print {credential, chain, subject} as JSON (chain: the whole chain, root first).")
@resolver_option
def delegate(
    key_file: Path,
    credential_source: str,
    subject: DID,
    claims: str | None,
    valid_for: int,
    max_depth: int | None,
    status_list: Path | None,
    print_chain: bool,
    as_json: bool,
    resolver: str,
) -> None:
    """Sign a delegation credential: the subject of --credential hands the capabilities in
    --claims (a subset of its own) to --subject, for --valid-for. A delegation that would widen
    anything is refused here with the code the gateway would answer.

    \b
    Examples:
      vcgate delegate --key user.key --credential root.vc.jwt --subject "$AGENT" \\
          --claims '{"models": ["llama-3-70b"], "limits": {"rpm": 30}}' --max-depth 1 > agent.vc.jwt
      cat root.vc.jwt agent.vc.jwt > agent.chain
      vcgate delegate --key agent.key --credential agent.chain --subject "$SUBAGENT" \\
          --claims '{"limits": {"rpm": 10}}' --valid-for 15m --chain > subagent.chain
    """
    chain = chain_tokens(read_tokens(credential_source, "credential", "--credential"))
    if not chain:
        raise click.UsageError("no parent credential in --credential")
    restated = read_claims(claims)
    if "id" in restated:
        raise click.BadParameter("claims must not set 'id': the delegate is --subject", param_hint="--claims")
    loaded = load_key(key_file)
    kid = signing_kid(loaded.did, loaded.key.public_key, "assertionMethod", make_resolver(resolver))
    status = None
    if status_list is not None:
        status = build_status_entry(StatusOptions(method="bitstring", status_list=status_list), issuer_key=loaded.key)
    now = float(int(time.time()))
    token = issue_delegation(
        loaded.key,
        kid=kid,
        chain=chain,
        subject=subject,
        claims=restated,
        valid_from=now,
        valid_until=now + valid_for,
        max_depth=max_depth,
        status=status,
    )
    if as_json:
        echo_json({"credential": token, "chain": [*chain, token], "subject": str(subject)})
        return
    for line in ([*chain, token] if print_chain else [token]):
        click.echo(line)
