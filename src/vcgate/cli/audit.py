"""``vcgate audit``: verify a decision log's hash chain, show its last records and its head."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .base import EXISTING_FILE, EXIT_REFUSED, CLIError, cli, echo_json


def _safe(value: object) -> str:
    # Paths and subjects come from clients: never let one put control characters on a terminal.
    text = value if isinstance(value, str) else str(value)
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _key_from_env(var: str | None) -> bytes | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise click.BadParameter(f"environment variable {var} is not set or empty", param_hint="--key-env")
    key = value.encode("utf-8")
    if len(key) < 16:
        raise click.BadParameter(f"the key in {var} is shorter than 16 bytes", param_hint="--key-env")
    return key


def _parse_anchor(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[int, str]:
    out: dict[int, str] = {}
    for v in values:
        seq, sep, h = v.partition(":")
        if not sep or not seq.isdigit() or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise click.BadParameter(f"{v!r} is not SEQ:HASH (as printed by 'vcgate audit head')")
        out[int(seq)] = h
    return out


@cli.group("audit")
def audit_group() -> None:
    """The hash-chained decision log the gateway writes: verify it, read it."""


@audit_group.command("verify")
@click.argument("file", type=EXISTING_FILE)
@click.option("--key-env", metavar="VAR", default=None, help="Environment variable holding the HMAC key of a keyed log.")
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    callback=_parse_anchor,
    metavar="SEQ:HASH",
    help="A head kept outside the file ('vcgate audit head'); detects records cut off the end. Repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def audit_verify(file: Path, key_env: str | None, anchors: dict[int, str], as_json: bool) -> None:
    """Check every record of FILE: content, order, chain and header.

    Exit 0 when the chain verifies, 1 at the first edited, removed, inserted or reordered
    record (the message names the line), 2 on a usage error.

    \b
    Examples:
      vcgate audit verify /var/log/vcgate/audit.jsonl
      VCGATE_AUDIT_KEY=... vcgate audit verify audit.jsonl --key-env VCGATE_AUDIT_KEY
      vcgate audit verify audit.jsonl --anchor 41872:3f9c...e1
    """
    from ..audit import verify_file

    report = verify_file(file, key=_key_from_env(key_env), anchors=anchors)
    ctx = click.get_current_context()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif report.ok:
        span = f"seq 1..{report.last_seq}" if report.records else "no records"
        click.echo(f"ok: {file}: {report.records} records ({span}), alg {report.alg}, file_id {report.file_id}")
        click.echo(f"head: {report.last_seq}:{report.last_hash}")
    if report.torn_tail and not as_json:
        click.echo("warning: the last line is incomplete (a write cut short by a crash; never acknowledged)", err=True)
    if not report.ok:
        if as_json:  # the report on stdout is the answer, like `verify --json`
            ctx.exit(EXIT_REFUSED)
        where = f"{file}:{report.line}" if report.line else str(file)
        raise CLIError("audit_tampered", f"{where}: {report.reason}: {report.message}")


@audit_group.command("head")
@click.argument("file", type=EXISTING_FILE)
@click.option("--key-env", metavar="VAR", default=None, help="Environment variable holding the HMAC key of a keyed log.")
@click.option("--json", "as_json", is_flag=True, help="Print {seq, hash, anchor} as JSON.")
def audit_head(file: Path, key_env: str | None, as_json: bool) -> None:
    """Verify FILE and print its head as SEQ:HASH, an anchor to keep elsewhere."""
    from ..audit import verify_file

    report = verify_file(file, key=_key_from_env(key_env))
    if not report.ok:
        raise CLIError("audit_tampered", f"{file}:{report.line}: {report.reason}: {report.message}")
    if as_json:
        echo_json({"seq": report.last_seq, "hash": report.last_hash, "anchor": f"{report.last_seq}:{report.last_hash}"})
        return
    click.echo(f"{report.last_seq}:{report.last_hash}")


@audit_group.command("tail")
@click.argument("file", type=EXISTING_FILE)
@click.option("-n", "count", type=click.IntRange(min=0), default=10, show_default=True, help="How many records.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON lines, as stored.")
def audit_tail(file: Path, count: int, as_json: bool) -> None:
    """Print the last N records of FILE (not verified: use 'vcgate audit verify')."""
    from ..audit import tail_records

    for rec in tail_records(file, count):
        if as_json:
            click.echo(json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
            continue
        fields = [
            _safe(rec.get("seq")),
            _safe(rec.get("time", "-")),
            _safe(rec.get("kind") if rec.get("kind") != "decision" else rec.get("outcome", "-")),
            _safe(rec.get("status", "-")),
            _safe(rec.get("code") or "-"),
            f"{_safe(rec.get('method', '-'))} {_safe(rec.get('path', '-'))}",
            f"rule={_safe(rec.get('rule') or '-')}",
            f"subject={_safe(rec.get('subject') or '-')}",
        ]
        click.echo(" ".join(fields))
