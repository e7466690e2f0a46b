"""The vcgate end-to-end demo, on embedded defaults (an in-process EVM; no network, no servers).

Run it with ``make demo``. Each step prints what happened; the same steps with the CLI are
shown beside them so you can replay them by hand.
"""

from __future__ import annotations

import json
import sys
import time

import os

from vcgate.chain import RegistryClient, connect, deploy_registry, eth_account_from_key, eth_address
from vcgate.credentials import Verifier, create_presentation, issue_credential
from vcgate.did import Resolver, did_key_from_public_key
from vcgate.errors import VCGateError
from vcgate.keys import PrivateKey, b64url_decode, b64url_encode
from vcgate.status import StatusChecker
from vcgate.status.mirror import RevocationMirror
from vcgate.status.registry import OnchainStatusMethod, status_entry

GATEWAY = "https://models.example.com"


def step(n: int, title: str, cli: str | None = None) -> None:
    print(f"\n== {n}. {title}")
    if cli:
        print(f"   (CLI: {cli})")


def main() -> int:
    now = time.time()

    step(1, "The issuer and the agent make their keys; each key is a did:key", "vcgate key new --alg ES256K --out issuer.key")
    # ES256K: the issuer's key is also its Ethereum account, the namespace of its revocations.
    issuer_key = PrivateKey.generate("ES256K")
    agent_key = PrivateKey.generate("ES256")
    issuer = did_key_from_public_key(issuer_key.public_key)
    agent = did_key_from_public_key(agent_key.public_key)
    print(f"   issuer: {issuer}")
    print(f"   agent:  {agent}")

    step(2, "The issuer's DID document, resolved locally", f"vcgate did resolve {issuer[:30]}...")
    doc = Resolver.local().resolve(issuer)
    print("   assertionMethod:", ", ".join(vm.id[-20:] for vm in doc.methods_for("assertionMethod")))

    step(
        3,
        "An ERC-5539 revocation registry is deployed on the embedded chain",
        "vcgate chain dev & vcgate registry deploy --rpc http://127.0.0.1:8545 --eth-key .vcgate-chain/dev.key",
    )
    chain = connect()  # the in-process EVM (eth-tester + py-evm)
    account = eth_account_from_key(issuer_key)
    chain.fund(account.address, 10**18)  # development chains only
    registry = RegistryClient(chain, deploy_registry(chain, account))
    print(f"   registry: {registry.address} on chain {chain.chain_id()}; issuer namespace: {account.address}")
    revocation_list, revocation_key = os.urandom(32), os.urandom(32)
    entry = status_entry(
        registry.address, chain.chain_id(), eth_address(issuer_key.public_key), revocation_list, revocation_key
    )

    step(
        4,
        "The issuer grants the agent a ModelAccessCredential (VCDM 2.0, vc+jwt) with an on-chain status",
        "vcgate issue --key issuer.key --subject <agent-did> --type ModelAccessCredential "
        "--claims '{\"models\": [\"llama-3-70b\"]}' --valid-for 30d --status onchain",
    )
    credential = issue_credential(
        issuer_key,
        issuer=issuer,
        kid=f"{issuer}#{issuer.method_specific_id}",
        subject=agent,
        types=["ModelAccessCredential"],
        claims={"models": ["llama-3-70b"], "tier": "standard"},
        valid_from=now,
        valid_until=now + 30 * 86400,
        status=entry,
    )
    print(f"   credential: {credential[:60]}... ({len(credential)} bytes)")

    step(
        5,
        "The agent presents it to the gateway, bound to the gateway's audience and nonce",
        f"vcgate present --key agent.key --aud {GATEWAY} --nonce n-42 credential.jwt",
    )
    presentation = create_presentation(
        agent_key,
        holder=agent,
        kid=f"{agent}#{agent.method_specific_id}",
        credentials=[credential],
        audience=GATEWAY,
        nonce="n-42",
        issued_at=now,
    )
    print(f"   presentation: {presentation[:60]}... ({len(presentation)} bytes)")

    step(
        6,
        "The gateway verifies: signatures, keys from DIDs, validity, audience, nonce, holder, revocation",
        "vcgate verify --aud ... --nonce n-42 --rpc ... vp.jwt",
    )
    verifier = Verifier()
    # The gateway reads revocations from a local mirror of the registry's events, never from
    # the chain on the request path.
    mirror = RevocationMirror(chain=chain, registry=registry.address, chain_id=chain.chain_id(), confirmations=2)
    mirror.sync_once()
    status = StatusChecker([OnchainStatusMethod([mirror])])
    result = verifier.verify_presentation(presentation, audience=GATEWAY, nonce="n-42")
    cred = result.credentials[0]
    status.check(cred)
    print(f"   ACCEPTED holder={result.holder[:32]}... types={list(cred.types)}")
    print(f"   claims={json.dumps(dict(cred.claims))}; not revoked as of block {mirror.lag().synced_block}")

    step(7, "An attacker edits the credential to grant another model: refused")
    header, payload, signature = credential.split(".")
    body = json.loads(b64url_decode(payload))
    body["credentialSubject"]["models"] = ["gpt-4o"]
    tampered = ".".join([header, b64url_encode(json.dumps(body).encode()), signature])
    refused = 0
    try:
        verifier.verify_credential(tampered)
        print("   ERROR: the tampered credential was accepted")
    except VCGateError as exc:
        refused += 1
        print(f"   REFUSED {exc.code} (HTTP {exc.status}): {exc.message}")

    step(8, "A replay of the presentation at another gateway: refused")
    try:
        verifier.verify_presentation(presentation, audience="https://other.example", nonce="n-42")
        print("   ERROR: the replayed presentation was accepted")
    except VCGateError as exc:
        refused += 1
        print(f"   REFUSED {exc.code} (HTTP {exc.status}): {exc.message}")

    step(9, "The issuer revokes the credential on chain; the mirror sees it; the next presentation is refused", "vcgate revoke --rpc ... --eth-key issuer.key cred.jwt")
    tx = registry.change_status(account, revoked=True, revocation_list=revocation_list, revocation_key=revocation_key)
    print(f"   revoked in block {tx.block_number} (gas {tx.gas_used})")
    mirror.sync_once()  # a running mirror does this every poll interval
    fresh = create_presentation(
        agent_key,
        holder=agent,
        kid=f"{agent}#{agent.method_specific_id}",
        credentials=[credential],
        audience=GATEWAY,
        nonce="n-43",
        issued_at=time.time(),
    )
    try:
        status.check(verifier.verify_presentation(fresh, audience=GATEWAY, nonce="n-43").credentials[0])
        print("   ERROR: the revoked credential was accepted")
    except VCGateError as exc:
        refused += 1
        print(f"   REFUSED {exc.code} (HTTP {exc.status}): {exc.message}")

    ok = refused == 3
    print("\nDemo complete." if ok else "\nDemo FAILED.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
