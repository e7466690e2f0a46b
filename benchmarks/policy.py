"""Measure Policy.decide() on a 20-rule policy: ``.venv/bin/python tests/policy/bench_decide.py``.

Not a test (no timing asserts): it prints microseconds per call for a few request shapes.
"""

from __future__ import annotations

import sys
import timeit

from vcgate.credentials.models import VerifiedCredential
from vcgate.policy import Policy, RequestFacts, StatusOutcome

ISSUER = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
HOLDER = "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH"
NOW = 1_780_272_000.0


def policy_text() -> str:
    rules = []
    # 17 route rules that the chat request does not match (different paths / methods).
    for i in range(17):
        rules.append(
            f"""
  - name: route-{i}
    match:
      methods: [{"GET" if i % 2 else "POST"}]
      paths: [/api/v{i}/items/*, /api/v{i}/things/**]
    require:
      types: [ModelAccessCredential]
      claims:
        tier: {{one_of: [gold, silver]}}
"""
        )
    rules.append(
        """
  - name: no-admin
    match: {paths: [/v1/admin/**]}
    allow: false
  - name: frontier
    match:
      methods: [POST]
      paths: [/v1/chat/completions, /v1/completions]
      models: [gpt-4*, "o[0-9]*"]
    require:
      types: [ModelAccessCredential]
      claims:
        tier: {equals: gold}
        models: {contains: $model}
        limits.rpm: {min: 60, max: 10000}
      max_age: 30d
    grants:
      headers:
        X-Vcgate-Subject: $subject
        X-Vcgate-Issuer: $issuer
        X-Vcgate-Tier: $claims.tier
      scopes: [chat, frontier]
  - name: chat
    match:
      methods: [POST]
      paths: [/v1/chat/completions]
    require:
      types: [ModelAccessCredential]
      claims:
        models: {contains: $model}
"""
    )
    return f"""
version: 1
audience: https://gw.example
trusted_issuers:
  - did: {ISSUER}
    types: [ModelAccessCredential]
defaults:
  status: required
rules:{"".join(rules)}"""


def main() -> None:
    policy = Policy.from_yaml(policy_text())
    assert len(policy.rules) == 20
    cred = VerifiedCredential(
        format="vc-jose",
        issuer=ISSUER,
        subject=HOLDER,
        types=("VerifiableCredential", "ModelAccessCredential"),
        claims={"tier": "gold", "models": ["gpt-4o", "llama-3"], "limits": {"rpm": 600}},
        valid_from=NOW - 86400,
        valid_until=NOW + 86400 * 30,
        status=({"type": "BitstringStatusListEntry"},),
        id="urn:uuid:1",
        kid=ISSUER + "#k",
        issuer_key=None,  # type: ignore[arg-type]
        payload={},
        token="tok",
    )
    status = {"tok": StatusOutcome.OK}
    cases = {
        "allow frontier (gpt-4o)": RequestFacts("POST", "/v1/chat/completions", model="gpt-4o"),
        "allow chat (llama-3, 20th rule)": RequestFacts("POST", "/v1/chat/completions", model="llama-3"),
        "deny claim (model not listed)": RequestFacts("POST", "/v1/chat/completions", model="gpt-4-turbo"),
        "explicit deny": RequestFacts("GET", "/v1/admin/users"),
        "default deny": RequestFacts("GET", "/nowhere"),
    }
    # Baseline: one raw Ed25519 verification -- the floor of any credential check the decision
    # sits next to. The ratio says how much of that a policy decision adds.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    sk = Ed25519PrivateKey.generate()
    pk, msg = sk.public_key(), b"x" * 800
    sig = sk.sign(msg)
    raw = min(timeit.repeat(lambda: pk.verify(sig, msg), number=2000, repeat=5)) / 2000 * 1e6
    print(f"baseline: one Ed25519 verify {raw:.1f} us; ratio = decide / verify")
    n = 100_000
    for label, request in cases.items():
        decision = policy.decide(request, [cred], now=NOW, holder=HOLDER, status_results=status)
        best = min(
            timeit.repeat(
                lambda: policy.decide(request, [cred], now=NOW, holder=HOLDER, status_results=status),
                number=n,
                repeat=5,
            )
        )
        outcome = "allow" if decision.allow else decision.code
        us = best / n * 1e6
        print(f"{label:34s} {us:6.2f} us/decide  ratio {us / raw:5.3f}  ({outcome}, rule {decision.rule})")
    request = cases["allow frontier (gpt-4o)"]

    def cold() -> None:
        policy._routes.clear()  # what a path seen for the first time costs (routing not memoised)
        policy.decide(request, [cred], now=NOW, holder=HOLDER, status_results=status)

    best = min(timeit.repeat(cold, number=n, repeat=5))
    print(f"{'allow frontier, route not memoised':34s} {best / n * 1e6:6.2f} us/decide")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
