"""``vcgate init [DIR]``: a working, protected setup in one command.

Writes three keys (issuer, gateway, agent; one passphrase), a policy that trusts the new issuer
for the app's own URL, a credential for the agent, a FastAPI app stub behind the middleware, an
agent script (the OpenAI SDK with the holder's auth), and NGINX / Envoy snippets for running
the same policy with ``vcgate serve`` -- then prints the three commands that run it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..credentials import issue_credential
from ..did import Resolver
from ..keys import PASSPHRASE_ENV, PrivateKey, write_key_file
from .base import cli, did_for_key, echo_json, info, read_passphrase, signing_kid

_FILES = ("issuer.key", "gateway.key", "agent.key", "policy.yaml", "agent.vc.jwt", "app.py", "agent.py",
          "nginx.conf", "envoy.yaml")

POLICY = """\
# vcgate policy made by `vcgate init` (reference: docs/policy.md).
version: 1
audience: {audience}               # the URL agents call: presentations and DPoP proofs name it
trusted_issuers:
  - did: {issuer}
    name: the issuer of issuer.key
    types: [ModelAccessCredential]
rules:
  - name: health
    match: {{methods: [GET], paths: [/healthz]}}
    public: true
  - name: models
    match: {{methods: [GET], paths: [/v1/models]}}
    require: {{types: [ModelAccessCredential]}}
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}     # the credential lists the models its holder may call
    grants:
      headers:
        X-Vcgate-Subject: $subject
"""

APP = '''\
"""A model API stub behind vcgate (made by `vcgate init`): replace the handler with your model.

    uvicorn app:app --port {port}          # VCGATE_PASSPHRASE unlocks gateway.key
"""

from fastapi import FastAPI, Request

from vcgate import Gate
from vcgate.middleware import VCGateMiddleware

api = FastAPI()


@api.get("/healthz")
async def healthz():
    return {{"status": "ok"}}


@api.get("/v1/models")
async def models():
    return {{"object": "list", "data": [{{"id": "llama-3-70b", "object": "model"}}]}}


@api.post("/v1/chat/completions")
async def chat(request: Request):
    body = await request.json()
    caller = request.headers.get("x-vcgate-subject")  # granted by the policy
    text = body["messages"][-1]["content"]
    return {{
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{{"index": 0, "finish_reason": "stop",
                     "message": {{"role": "assistant", "content": f"hello {{caller}}, you said: {{text}}"}}}}],
        "usage": {{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
    }}


app = VCGateMiddleware(api, gate=Gate.from_policy_file("policy.yaml", key_file="gateway.key"))
'''

AGENT = '''\
"""The agent (made by `vcgate init`): the OpenAI SDK, with vcgate's holder auth.

    python agent.py "Say hello"            # VCGATE_PASSPHRASE unlocks agent.key
"""

import sys

import httpx
import openai

from vcgate.client import Holder

holder = Holder.from_key_file("agent.key", credentials=["agent.vc.jwt"])
client = openai.OpenAI(base_url="{audience}/v1", api_key="unused", max_retries=0,
                       http_client=httpx.Client(auth=holder.httpx_auth()))
reply = client.chat.completions.create(
    model="llama-3-70b", messages=[{{"role": "user", "content": " ".join(sys.argv[1:]) or "hello"}}]
)
print(reply.choices[0].message.content)
'''

NGINX = """\
# NGINX in front of the app, with `vcgate serve --policy policy.yaml --key-file gateway.key --port 8181`
# deciding each request (auth_request). The full, tested file is plugins/nginx/vcgate.conf
# (docs/plugins/nginx.md); these are the lines that matter. Set the policy's audience to the
# URL clients use for NGINX.
location / {{
    auth_request /_vcgate_auth;
    auth_request_set $vcgate_subject $upstream_http_x_vcgate_subject;
    proxy_set_header X-Vcgate-Subject $vcgate_subject;
    proxy_pass http://127.0.0.1:{port};
}}
location = /_vcgate_auth {{
    internal;
    proxy_pass http://127.0.0.1:8181/nginx/auth;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header X-Original-Method $request_method;
    proxy_set_header X-Original-URI $request_uri;
    proxy_set_header Host $http_host;
    proxy_set_header X-Original-Host $http_host;
    proxy_set_header X-Forwarded-Proto $scheme;
}}
location = /.well-known/vcgate/token {{ proxy_pass http://127.0.0.1:8181; proxy_set_header Host $http_host; }}
"""

ENVOY = """\
# Envoy's ext_authz HTTP filter asking `vcgate serve --port 8181` (docs/plugins/envoy.md has the
# full, tested configuration, incl. the gRPC variant and with_request_body for `model` rules).
http_filters:
  - name: envoy.filters.http.ext_authz
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
      transport_api_version: V3
      http_service:
        server_uri: {uri: http://127.0.0.1:8181, cluster: vcgate, timeout: 1s}
        path_prefix: /envoy
        authorization_request:
          allowed_headers:
            patterns: [{exact: authorization}, {exact: dpop}, {exact: content-type}]
        authorization_response:
          allowed_upstream_headers:
            patterns: [{prefix: x-vcgate-}]
          allowed_client_headers:
            patterns: [{exact: www-authenticate}, {exact: dpop-nonce}, {exact: content-type}]
      with_request_body: {max_request_bytes: 1048576, allow_partial_message: false}
  - name: envoy.filters.http.router
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""


@cli.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="vcgate-app")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, help="The port the app stub listens on.")
@click.option("--audience", metavar="URL", default=None,
              help="The URL agents call (the policy's audience) [default: http://127.0.0.1:PORT].")
@click.option("--force", is_flag=True, help="Overwrite files vcgate init wrote before.")
@click.option("--json", "as_json", is_flag=True, help="Print what was made (DIDs, files, commands) as JSON.")
def init(directory: Path, port: int, audience: str | None, force: bool, as_json: bool) -> None:
    """Make a protected model API in DIRECTORY, ready to run: keys, policy, credential, app, agent.

    Three keys (issuer, gateway, agent) share one passphrase ($VCGATE_PASSPHRASE, or asked
    for); the policy trusts the new issuer; agent.vc.jwt lets the agent call llama-3-70b for
    30 days. Then it prints the three commands that start the app and call it as the agent.

    \b
    Examples:
      vcgate init my-app
      vcgate init --port 9000 --json my-app | jq .commands
    """
    audience = (audience or f"http://127.0.0.1:{port}").rstrip("/")
    directory.mkdir(parents=True, exist_ok=True)
    taken = [name for name in _FILES if (directory / name).exists()]
    if taken and not force:
        raise click.UsageError(f"{directory} already has {', '.join(taken)}: choose another DIR or pass --force")
    passphrase = read_passphrase(prompt="Passphrase for the three new keys", confirm=True)
    keys = {name: PrivateKey.generate(alg) for name, alg in (("issuer", "EdDSA"), ("gateway", "EdDSA"), ("agent", "ES256"))}
    dids = {name: did_for_key(key.public_key, "key") for name, key in keys.items()}
    for name, key in keys.items():
        write_key_file(directory / f"{name}.key", key, passphrase=passphrase, extra={"did": str(dids[name])},
                       overwrite=force)
    now = float(int(time.time()))
    credential = issue_credential(
        keys["issuer"], issuer=dids["issuer"],
        kid=signing_kid(dids["issuer"], keys["issuer"].public_key, "assertionMethod", Resolver.local()),
        subject=dids["agent"], types=["ModelAccessCredential"], claims={"models": ["llama-3-70b"]},
        valid_from=now, valid_until=now + 30 * 86400,
    )
    texts = {
        "policy.yaml": POLICY.format(audience=audience, issuer=dids["issuer"]),
        "agent.vc.jwt": credential + "\n",
        "app.py": APP.format(port=port),
        "agent.py": AGENT.format(audience=audience),
        "nginx.conf": NGINX.format(port=port),
        "envoy.yaml": ENVOY,
    }
    for name, text in texts.items():
        (directory / name).write_text(text)
    commands = [f"cd {directory}", f"uvicorn app:app --port {port} &", 'python agent.py "Say hello"']
    if as_json:
        echo_json({"directory": str(directory), "audience": audience, "dids": {k: str(v) for k, v in dids.items()},
                   "files": list(_FILES), "commands": commands})
        return
    info(f"wrote {', '.join(_FILES)} to {directory}")
    click.echo(f"issuer {dids['issuer']}\nagent  {dids['agent']}\n")
    click.echo(f"Run it (with {PASSPHRASE_ENV} set to the passphrase; the app needs pip install 'vcgate[demo]'):")
    for command in commands:
        click.echo(f"  {command}")
