"""``vcgate conformance jose issue|verify``: the CLI the W3C vc-jose-cose test suite drives."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..strictjson import loads_strict
from .base import EXISTING_FILE, CLIError, alg_name_option, cli


@cli.group("conformance")
def conformance() -> None:
    """Harnesses for the W3C test suites (make conformance; docs/conformance.md)."""


@conformance.group("jose")
def jose() -> None:
    """VC-JOSE-COSE with a key given directly (the vc-jose-cose suite's CLI contract).

    Writes {"result": "success"|"failure", "data": ...} to --output; exit 0 either way
    (the suite reads only the file), 1 when the files cannot be read or written.
    """


_options = [
    click.option("--input", "input_file", required=True, type=EXISTING_FILE, help="Document or compact JWS to process."),
    click.option("--key", "key_file", required=True, type=EXISTING_FILE,
                 help="Verification method JSON (publicKeyJwk, and secretKeyJwk to issue)."),
    click.option("--feature", required=True, type=click.Choice(
        ["credential_jose", "presentation_jose", "credential_sdjwt", "presentation_sdjwt", "credential_cose",
         "presentation_cose"]), help="What the input is; vcgate implements the *_jose features."),
    click.option("--output", "output_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
                 help="Where the result JSON goes."),
]


def _with_options(fn):  # type: ignore[no-untyped-def]
    for option in reversed(_options):
        fn = option(fn)
    return fn


def _read(path: Path, *, json_document: bool) -> object:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CLIError("io_error", f"cannot read {path}: {exc.strerror}") from exc
    return loads_strict(data, max_depth=64, what=str(path.name)) if json_document else data.decode("utf-8", "replace")


def _write(path: Path, result: dict[str, str]) -> None:
    try:
        path.write_text(json.dumps(result) + "\n")
    except OSError as exc:
        raise CLIError("io_error", f"cannot write {path}: {exc.strerror}") from exc


@jose.command("issue")
@_with_options
@click.option("--sd", default=None, help="Selective disclosure paths (SD-JWT only; refused here).")
@alg_name_option
def jose_issue_cmd(input_file: Path, key_file: Path, feature: str, output_file: Path, sd: str | None,
                   alg_name: str) -> None:
    """Secure a credential (vc+jwt) or presentation (vp+jwt) with the key file's secretKeyJwk."""
    from ..conformance import jose_issue

    _write(output_file, jose_issue(_read(input_file, json_document=True), _read(key_file, json_document=True),  # type: ignore[arg-type]
                                   feature=feature, alg_name=alg_name).to_json())


@jose.command("verify")
@_with_options
def jose_verify_cmd(input_file: Path, key_file: Path, feature: str, output_file: Path) -> None:
    """Verify a compact vc+jwt / vp+jwt (and the presentation's credentials) with publicKeyJwk."""
    from ..conformance import jose_verify

    _write(output_file, jose_verify(_read(input_file, json_document=False), _read(key_file, json_document=True),  # type: ignore[arg-type]
                                    feature=feature).to_json())
