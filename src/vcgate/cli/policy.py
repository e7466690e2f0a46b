"""``vcgate policy``: check a policy file, and explain how it decides a request."""

from __future__ import annotations

from pathlib import Path

import click

from .base import DID_PARAM, EXISTING_FILE, CLIError, cli, echo_json, read_one_token


def _emit(code: int, text: str) -> None:
    if text.startswith("error:") and text.count(":") >= 2:
        # A refusal: 'error: <code>: <message>' and its hint (or, with --json, the JSON error).
        _, error_code, message = text.split(":", 2)
        raise CLIError(error_code.strip(), message.strip())
    click.echo(text)
    click.get_current_context().exit(code)


@cli.group("policy")
def policy_group() -> None:
    """The gateway's policy file: validate it, and see how it decides a request."""


@policy_group.command("check")
@click.argument("file", type=EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True,
              help='Print the summary (or {"valid": false, "error", "problems"}) as JSON on stdout.')
def policy_check(file: Path, as_json: bool) -> None:
    """Validate a policy file; print a summary (rules in order, trusted issuers, notes).

    Errors name the file, line, column and field. Exit 0 valid, 1 invalid.

    \b
    Examples:
      vcgate policy check examples/policy.yaml
      vcgate policy check --json policy.yaml | jq '.rules[].name'
    """
    from .policy_report import check

    code, text = check(file, as_json=as_json)
    if as_json:  # JSON goes to stdout whatever the verdict, like `verify --json`
        click.echo(text)
        click.get_current_context().exit(code)
    _emit(code, text)


@policy_group.command("explain")
@click.option("--policy", "policy_file", required=True, type=EXISTING_FILE, help="The policy file.")
@click.option("--credential", default=None, metavar="FILE|-", help="The credential JWT (a file, '-' or the JWT).")
@click.option(
    "--presentation",
    default=None,
    metavar="FILE|-",
    help="Instead of --credential: a presentation JWT; its signer is the holder and each delegation chain in it is shown hop by hop.",
)
@click.option("--method", required=True, metavar="M", help="The request's HTTP method.")
@click.option("--path", "req_path", required=True, metavar="P", help="The request's raw path (e.g. /v1/chat/completions).")
@click.option("--model", default=None, metavar="X", help="The OpenAI 'model' field of the request body.")
@click.option("--host", default=None, metavar="H", help="The request's Host.")
@click.option("--holder", type=DID_PARAM, default=None, help="The presenter's DID [default: the credential's subject].")
@click.option("--no-body", is_flag=True, help="Decide as a headers-only gateway (NGINX auth_request) would: no body.")
@click.option(
    "--assume-status",
    type=click.Choice(["ok", "revoked", "suspended", "unavailable", "unsupported"]),
    default="ok",
    help="The status outcome to assume for the credential (status is not fetched here).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@click.option("--redis", "redis_url", default=None, envvar="VCGATE_REDIS_URL", metavar="URL",
              help="Show how much of each limit the call touches is used, from this Redis (read only). "
              "[env: VCGATE_REDIS_URL]")
def policy_explain(
    policy_file: Path,
    credential: str | None,
    presentation: str | None,
    method: str,
    req_path: str,
    model: str | None,
    host: str | None,
    holder: str | None,
    no_body: bool,
    assume_status: str,
    as_json: bool,
    redis_url: str | None,
) -> None:
    """Verify a credential (or a presentation) and print the decision for one request: the rule
    that decided it, every reason, and for a delegation chain every hop and why it holds or
    fails. Exit 0 allowed, 1 refused (the code is on the decision line).

    \b
    Examples:
      vcgate policy explain --policy examples/policy.yaml --credential agent.vc.jwt \\
          --method POST --path /v1/chat/completions --model llama-3-70b
      vcgate policy explain --policy policy.yaml --credential - --method GET --path /v1/models --no-body
      vcgate policy explain --policy policy.yaml --presentation vp.jwt \
          --method POST --path /v1/chat/completions --model llama-3-70b
    """
    from .policy_report import explain

    if (credential is None) == (presentation is None):
        raise click.UsageError("give exactly one of --credential and --presentation")
    token = read_one_token(credential, "credential", "--credential") if credential is not None else None
    vp = read_one_token(presentation, "presentation", "--presentation") if presentation is not None else None
    store = None
    if redis_url:
        from ..stores import RedisCounterStore, redis_client

        store = RedisCounterStore(redis_client(redis_url, timeout=2.0))
    _emit(
        *explain(
            policy_file,
            token,
            method,
            req_path,
            model,
            host,
            holder=holder,
            body_available=not no_body,
            assume_status=assume_status,
            as_json=as_json,
            counter_store=store,
            presentation_token=vp,
        )
    )


def nginx_grant_lines(names: tuple[str, ...]) -> list[str]:
    """The NGINX lines that pass each grant header upstream and overwrite a client's copy."""
    sets, puts = [], []
    for name in names:
        var = "$vcgate_" + name.removeprefix("x-vcgate-").replace("-", "_")
        title = "-".join(part.capitalize() for part in name.split("-"))
        sets.append(f"auth_request_set {var} $upstream_http_{name.replace('-', '_')};")
        puts.append(f"proxy_set_header {title} {var};")
    return sets + puts


@policy_group.command("nginx-snippet")
@click.argument("file", type=EXISTING_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print {policy, headers, lines} as JSON.")
def policy_nginx_snippet(file: Path, as_json: bool) -> None:
    """Print the NGINX lines for every grant header of a policy (for `location /`).

    NGINX cannot drop request headers by prefix, so each x-vcgate-* header the policy can
    grant must be set explicitly: the value from the auth service when granted, empty (not
    sent) otherwise -- a client's own copy never reaches the model server. The auth service
    refuses (400 request_invalid) a request that carries any other x-vcgate-* header on
    /nginx/auth. Paste the output over the two "Grants" blocks of plugins/nginx/vcgate.conf
    and regenerate it when the policy's grants change.

    \b
    Examples:
      vcgate policy nginx-snippet policy.yaml
    """
    from ..policy import Policy

    policy = Policy.from_file(file)
    names = policy.grant_header_names
    if as_json:
        echo_json({"policy": str(file), "headers": list(names), "lines": nginx_grant_lines(names)})
        return
    click.echo(f"# vcgate grant headers of {file} ({len(names)}): paste into `location /`")
    for line in nginx_grant_lines(names):
        click.echo(line)
