"""The vcgate end-to-end demo, on embedded defaults: an in-process EVM, a model server on
127.0.0.1, no outside network.

Run it with ``make demo``. The story, step by step:

 1. the issuer's key and DID (its key is also its Ethereum account);
 2. the ERC-5539 revocation registry deployed on the embedded chain;
 3. a ModelAccessCredential for llama-3-70b issued to an agent, with an on-chain status;
 4. the model server (the FastAPI example) behind the vcgate middleware, one policy file;
 5. the agent calls the allowed model with the OpenAI SDK -> 200;
 6. the agent asks for a model its credential does not cover -> 403 with the reason;
 7. a tampered credential and a spoofed grant header get nowhere;
 8. the agent hands its sub-agent a narrower slice (one smaller model, 2 calls a minute): the
    sub-agent's calls inside it pass, acting for the agent; a third call -> 429; the bigger model -> 403;
 9. the issuer revokes on chain, the gateway's mirror sees it -> the agent and its sub-agent are refused;
10. the gateway's audit log verifies.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import httpx  # noqa: E402
import openai  # noqa: E402
import uvicorn  # noqa: E402

from vcgate import Gate  # noqa: E402
from vcgate.audit import AuditLog, verify_file  # noqa: E402
from vcgate.chain import RegistryClient, connect, deploy_registry, eth_account_from_key, eth_address  # noqa: E402
from vcgate.client import Holder  # noqa: E402
from vcgate.credentials import Verifier, issue_credential  # noqa: E402
from vcgate.did import did_key_from_public_key  # noqa: E402
from vcgate.errors import VCGateError  # noqa: E402
from vcgate.keys import PrivateKey, b64url_decode, b64url_encode  # noqa: E402
from vcgate.status import StatusChecker  # noqa: E402
from vcgate.status.mirror import RevocationMirror  # noqa: E402
from vcgate.status.registry import OnchainStatusMethod, status_entry  # noqa: E402

POLICY = """\
version: 1
audience: {audience}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
defaults:
  status: required
delegation:
  max_depth: 1
limits:
  - name: calls-per-minute
    key: $chain
    requests: $claims.limits.rpm
    per: 1m
rules:
  - name: health
    match: {{methods: [GET], paths: [/healthz, /.well-known/**]}}
    public: true
  - name: list-models
    match: {{methods: [GET], paths: [/v1/models]}}
    require: {{types: [ModelAccessCredential]}}
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
        X-Vcgate-Issuer: $issuer
        X-Vcgate-Actors: $actors
"""


def step(n: int, title: str, cli: str | None = None) -> None:
    print(f"\n== {n}. {title}")
    if cli:
        print(f"   (CLI: {cli})")


def refused(client: openai.OpenAI, model: str, label: str, *wanted: tuple[int, str]) -> bool:
    """Call ``model``; True if the gateway refused with one of ``wanted`` (status, code)."""
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "again"}])
    except openai.APIStatusError as exc:
        body = exc.response.json()
        print(f"   {label}{exc.status_code} {body['error']}: {body['message'][:100]}")
        return (exc.status_code, body["error"]) in wanted
    print(f"   ERROR: {label}allowed")
    return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="vcgate-demo-"))
    outcomes: list[bool] = []

    step(1, "The issuer's key and DID (an ES256K key: also its Ethereum account)", "vcgate key new --alg ES256K --out issuer.key")
    issuer_key, agent_key = PrivateKey.generate("ES256K"), PrivateKey.generate("ES256")
    issuer = did_key_from_public_key(issuer_key.public_key)
    agent = did_key_from_public_key(agent_key.public_key)
    print(f"   issuer: {issuer}\n   agent:  {agent}")

    step(2, "The ERC-5539 revocation registry, deployed on the embedded chain", "vcgate registry deploy --rpc ... --eth-key ...")
    chain = connect()  # in-process EVM (eth-tester + py-evm)
    account = eth_account_from_key(issuer_key)
    chain.fund(account.address, 10**18)  # development chains only
    registry = RegistryClient(chain, deploy_registry(chain, account))
    print(f"   registry {registry.address}, chain {chain.chain_id()}, issuer namespace {account.address}")

    step(
        3,
        "A ModelAccessCredential for two llama models, 60 calls a minute, issued to the agent with an on-chain status",
        "vcgate issue --key issuer.key --subject <agent> --type ModelAccessCredential --claims '{\"models\": [...]}' --status onchain",
    )
    revocation_list, revocation_key = os.urandom(32), os.urandom(32)
    now = time.time()
    credential = issue_credential(
        issuer_key,
        issuer=issuer,
        kid=f"{issuer}#{issuer.method_specific_id}",
        subject=agent,
        types=["ModelAccessCredential"],
        claims={"models": ["llama-3-70b", "llama-3-8b"], "limits": {"rpm": 60}},
        valid_from=now - 60,
        valid_until=now + 30 * 86400,
        status=status_entry(registry.address, chain.chain_id(), eth_address(issuer_key.public_key), revocation_list, revocation_key),
    )
    print(f"   credential: {credential[:48]}... ({len(credential)} bytes)")

    step(4, "The model server (examples/server_fastapi.py) behind the vcgate middleware, one policy file")
    port = free_port()
    audience = f"http://127.0.0.1:{port}"
    policy = work / "policy.yaml"
    policy.write_text(POLICY.format(audience=audience, issuer=issuer))
    # The gateway reads revocations from a local mirror of the registry's events: the request
    # path never calls the chain. (A deployed gateway runs mirror.start(); here each sync is
    # explicit so the story is deterministic.)
    mirror = RevocationMirror(chain=chain, registry=registry.address, chain_id=chain.chain_id(), confirmations=2)
    mirror.sync_once()
    audit_path = work / "audit.jsonl"
    audit = AuditLog(audit_path)
    import server_fastapi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the demo's gateway key lives in memory
        app = server_fastapi.build(str(policy), status=StatusChecker([OnchainStatusMethod([mirror])]), audit=audit)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    print(f"   gateway + model server on {audience}; policy {policy}")

    holder = Holder(agent_key, credentials=[credential])
    client = openai.OpenAI(
        base_url=audience + "/v1", api_key="unused", http_client=httpx.Client(auth=holder.httpx_auth()), max_retries=0
    )
    try:
        step(5, "The agent calls the allowed model with the OpenAI SDK (challenge -> presentation -> DPoP token)")
        reply = client.chat.completions.create(model="llama-3-70b", messages=[{"role": "user", "content": "hello"}])
        print(f"   200: {reply.choices[0].message.content[:90]}")
        outcomes.append(agent in reply.choices[0].message.content)

        step(6, "The agent asks for a model its credential does not cover")
        outcomes.append(refused(client, "gpt-4o", "", (403, "claim_mismatch")))

        step(7, "An attacker edits the credential to add gpt-4o, and spoofs the subject header")
        header, payload, signature = credential.split(".")
        body = json.loads(b64url_decode(payload))
        body["credentialSubject"]["models"] = ["gpt-4o"]
        forged = ".".join([header, b64url_encode(json.dumps(body).encode()), signature])
        try:
            Verifier().verify_credential(forged)
            outcomes.append(False)
        except VCGateError as exc:
            print(f"   forged credential refused: {exc.code}")
            outcomes.append(exc.code == "signature_invalid")
        spoof = client.chat.completions.with_raw_response.create(
            model="llama-3-70b", messages=[{"role": "user", "content": "who am I?"}],
            extra_headers={"X-Vcgate-Subject": "did:example:admin"},
        )
        content = spoof.parse().choices[0].message.content
        print(f"   spoofed X-Vcgate-Subject stripped; the app saw: {content[:60]}")
        outcomes.append("did:example:admin" not in content)

        step(
            8,
            "The agent hands its sub-agent a narrower slice: llama-3-8b only, 2 calls a minute",
            "vcgate delegate --key agent.key --credential cred.jwt --subject <sub-agent> --claims '{...}' --chain",
        )
        sub_key = PrivateKey.generate("EdDSA")
        sub_agent = did_key_from_public_key(sub_key.public_key)
        chain_for_sub = holder.delegate(subject=sub_agent, claims={"models": ["llama-3-8b"], "limits": {"rpm": 2}}, valid_for=3600)
        sub_client = openai.OpenAI(
            base_url=audience + "/v1", api_key="unused", max_retries=0,
            http_client=httpx.Client(auth=Holder(sub_key, credentials=chain_for_sub).httpx_auth()),
        )
        print(f"   sub-agent {sub_agent[:32]}... holds the chain agent -> sub-agent ({len(chain_for_sub)} credentials)")
        for n in (1, 2):
            reply = sub_client.chat.completions.create(model="llama-3-8b", messages=[{"role": "user", "content": f"call {n}"}])
            print(f"   call {n}: 200 {reply.choices[0].message.content[:80]}")
            outcomes.append(agent in reply.choices[0].message.content)
        outcomes.append(refused(sub_client, "llama-3-8b", "llama-3-8b: ", (429, "quota_exceeded")))
        outcomes.append(refused(sub_client, "llama-3-70b", "llama-3-70b: ", (403, "claim_mismatch")))

        step(9, "The issuer revokes the credential on chain; the mirror sees it; the agent is refused", "vcgate revoke --rpc ... cred.jwt")
        tx = registry.change_status(account, revoked=True, revocation_list=revocation_list, revocation_key=revocation_key)
        mirror.sync_once()  # a running mirror does this every poll interval
        print(f"   revoked in block {tx.block_number}; mirror at block {mirror.lag().synced_block}")
        outcomes.append(refused(client, "llama-3-70b", "", (401, "revoked")))
        outcomes.append(refused(sub_client, "llama-3-8b", "sub-agent: ", (401, "delegation_revoked"), (401, "revoked")))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        audit.close()

    step(10, "The gateway's audit log verifies", f"vcgate audit verify {audit_path}")
    report = verify_file(audit_path)
    print(f"   {report.records} records, chain intact: {report.ok}")
    outcomes.append(report.ok and report.records >= 5)

    ok = all(outcomes)
    print("\nDemo complete." if ok else f"\nDemo FAILED: {outcomes}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
