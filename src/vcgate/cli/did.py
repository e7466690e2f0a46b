"""``vcgate did``: resolve DIDs."""

from __future__ import annotations

import click

from .base import NetworkOptions, cli, did_web_ports_option, echo_json, make_resolver, resolver_option

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
@click.option("--json", "as_json", is_flag=True,
              help="Accepted for uniformity: the output is always the DID document as JSON (errors then JSON too).")
@resolver_option
@did_web_ports_option
def did_resolve(did_value: str, compact: bool, as_json: bool, resolver: str, did_web_ports: tuple[int, ...]) -> None:
    """Resolve a DID and print its DID document as JSON.

    An issuer that is an https URL prints its controller document (docs/dids.md).

    \b
    Examples:
      vcgate did resolve did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK
      vcgate did resolve --compact did:web:example.com | jq .verificationMethod
      vcgate did resolve https://issuer.example/issuers/1
    """
    doc = make_resolver(resolver, NetworkOptions(did_web_ports=did_web_ports)).resolve(did_value)
    echo_json(doc.raw, compact=compact)

