"""Benchmark: the cost of a delegation chain in direct mode, against its raw signature checks.

A Gate (the policy of ``benchmarks/gate.py``'s chat rule, with ``delegation: {max_depth: 2}``)
decides ``POST /v1/chat/completions``. Rows (all EdDSA):

* direct, one credential -- ``Authorization: VP`` by the holder of an org-issued credential:
  2 signatures (VP, VC). Baseline: those two raw verifies.
* direct, depth-2 chain -- the sub-agent presents root + the user's delegation + the agent's
  delegation: 4 signatures (VP, root, 2 links). Baseline: those four raw verifies.
* token endpoint, one credential / depth-2 chain -- a token request (DPoP proof + the
  presentation): 3 / 5 signatures. Baseline: those raw verifies; the endpoint also signs the
  access token and verifies it once (to warm its cache), which the baseline leaves out.
* session call, one credential / depth-2 chain -- ``Authorization: DPoP <token>`` + a fresh
  proof on a warm token: one signature (the proof) either way. Baseline: that raw verify. The
  chain's assembly is memoised per policy (once per session); every hop's validity and status
  are checked per call, so the two rows should differ by a few microseconds only.
* engine per call -- ``Policy.decide`` alone for the same request, with one verified
  credential and with the verified chain.

Ratio = gate.check / raw pyca/cryptography verifies of the very same signatures (the floor);
fresh inputs (nonces, presentations) are made outside the timed loop. Target <= 1.3.

    .venv/bin/python benchmarks/delegation.py [--calls 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _timing import raw_verifier, timed  # sibling modules: this folder is on sys.path as a script
from gate import run_rounds

from vcgate import Gate
from vcgate.credentials import Verifier, create_presentation, issue_credential
from vcgate.credentials.delegation import issue_delegation
from vcgate.did import did_key_from_public_key
from vcgate.gate import RequestView
from vcgate.keys import PrivateKey
from vcgate.policy import RequestFacts
from vcgate.session import create_proof

HOST = "gw.example"
AUD = f"https://{HOST}"
PATH = "/v1/chat/completions"
MODEL = "llama-3-70b"

POLICY = """\
version: 1
audience: {aud}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
delegation: {{max_depth: 2}}
rules:
  - name: health
    match: {{methods: [GET], paths: [/healthz]}}
    public: true
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
        tier: {{one_of: [gold, silver]}}
    grants:
      headers:
        X-Vcgate-Principal: $principal
        X-Vcgate-Actors: $actors
"""


class Party:
    def __init__(self) -> None:
        self.key = PrivateKey.generate("EdDSA")
        self.did = did_key_from_public_key(self.key.public_key)
        self.kid = f"{self.did}#{self.did.method_specific_id}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    org, user, agent, sub = Party(), Party(), Party(), Party()
    now = time.time()
    root = issue_credential(org.key, issuer=org.did, kid=org.kid, subject=user.did, types=["ModelAccessCredential"],
                            claims={"models": [MODEL, "gpt-4o"], "tier": "gold", "limits": {"rpm": 100}},
                            valid_from=now - 60, valid_until=now + 86400)
    link1 = issue_delegation(user.key, kid=user.kid, chain=[root], subject=agent.did, claims={"models": [MODEL]},
                             valid_from=now - 60, valid_until=now + 3600)
    link2 = issue_delegation(agent.key, kid=agent.kid, chain=[root, link1], subject=sub.did,
                             claims={"limits": {"rpm": 10}}, valid_from=now - 60, valid_until=now + 1800)
    single = issue_credential(org.key, issuer=org.did, kid=org.kid, subject=sub.did, types=["ModelAccessCredential"],
                              claims={"models": [MODEL], "tier": "gold"}, valid_from=now - 60, valid_until=now + 86400)
    with tempfile.TemporaryDirectory() as tmp:
        policy_file = Path(tmp) / "policy.yaml"
        policy_file.write_text(POLICY.format(aud=AUD, issuer=org.did))
        gate = Gate.from_policy_file(policy_file, gateway_key=PrivateKey.generate("EdDSA"))

        def presentations(creds: list[str]) -> Callable[[int], list[str]]:
            def make(n: int) -> list[str]:
                return [create_presentation(sub.key, holder=sub.did, kid=sub.kid, credentials=creds, audience=AUD,
                                            nonce=gate.nonce_store.issue(gate.nonce_ttl), issued_at=time.time())
                        for _ in range(n)]
            return make

        def direct(vp: str) -> None:
            d = gate.check(RequestView("POST", PATH, host=HOST, scheme="https", model=MODEL, body_available=True,
                                       headers=[("authorization", f"VP {vp}")]))
            if not d.allow:
                raise SystemExit(f"refused: {d.code} {d.message}")

        raw_single = raw_verifier(org.key, single)
        raw_chain = [raw_verifier(org.key, root), raw_verifier(user.key, link1), raw_verifier(agent.key, link2)]

        def base_single(vp: str) -> Callable[[], object]:
            rv = raw_verifier(sub.key, vp)
            return lambda: (rv(), raw_single())

        def base_chain(vp: str) -> Callable[[], object]:
            rv = raw_verifier(sub.key, vp)
            r0, r1, r2 = raw_chain
            return lambda: (rv(), r0(), r1(), r2())

        print(f"{'case':<52}{'us/op':>9}{'baseline':>10}{'over':>8}{'ratio':>8}")
        for name, creds, base in (("direct, one credential (2 verifies)", [single], base_single),
                                  ("direct, depth-2 chain (4 verifies)", [root, link1, link2], base_chain)):
            us, raw, ratio = run_rounds(presentations(creds), direct, base, args.calls, args.rounds)
            print(f"{name:<52}{us:>9.1f}{raw:>10.1f}{us - raw:>8.1f}{ratio:>8.2f}")

        def token_requests(creds: list[str]) -> Callable[[int], list[tuple[str, str]]]:
            make_vp = presentations(creds)
            return lambda n: [(vp, create_proof(sub.key, htm="POST", htu=gate.token_endpoint_url)) for vp in make_vp(n)]

        def token(item: tuple[str, str]) -> str:
            vp, proof = item
            view = RequestView("POST", gate.token_path, host=HOST, scheme="https", headers={"dpop": proof})
            status, _, body = gate.token_endpoint(view, {"vp_token": vp})
            if status != 200:
                raise SystemExit(f"token refused: {body}")
            return str(body["access_token"])

        def token_base(raws: list[Callable[[], object]]) -> Callable[[tuple[str, str]], Callable[[], object]]:
            def base(item: tuple[str, str]) -> Callable[[], object]:
                rv, rp = raw_verifier(sub.key, item[0]), raw_verifier(sub.key, item[1])
                return lambda: (rv(), rp(), *(r() for r in raws))
            return base

        for name, creds, raws in (("token endpoint, one credential (3 verifies)", [single], [raw_single]),
                                  ("token endpoint, depth-2 chain (5 verifies)", [root, link1, link2], raw_chain)):
            us, raw, ratio = run_rounds(token_requests(creds), token, token_base(raws), args.calls // 2, args.rounds)
            print(f"{name:<52}{us:>9.1f}{raw:>10.1f}{us - raw:>8.1f}{ratio:>8.2f}")

        for name, creds in (("session call, one credential (1 verify)", [single]),
                            ("session call, depth-2 chain (1 verify)", [root, link1, link2])):
            access = token(token_requests(creds)(1)[0])

            def proofs(n: int, access: str = access) -> list[str]:
                return [create_proof(sub.key, htm="POST", htu=AUD + PATH, access_token=access) for _ in range(n)]

            def session(proof: str, access: str = access) -> None:
                d = gate.check(RequestView("POST", PATH, host=HOST, scheme="https", model=MODEL, body_available=True,
                                           headers=[("authorization", f"DPoP {access}"), ("dpop", proof)]))
                if not d.allow:
                    raise SystemExit(f"session call refused: {d.code} {d.message}")

            us, raw, ratio = run_rounds(proofs, session, lambda proof: raw_verifier(sub.key, proof), args.calls, args.rounds)
            print(f"{name:<52}{us:>9.1f}{raw:>10.1f}{us - raw:>8.1f}{ratio:>8.2f}")

        verifier = Verifier()
        policy = gate.policy
        facts = RequestFacts("POST", PATH, host=HOST, model=MODEL, body_available=True)
        chain_creds = [verifier.verify_credential(t) for t in (root, link1, link2)]
        one = [verifier.verify_credential(single)]
        assert policy.decide(facts, chain_creds, now=now, holder=sub.did).allow
        assert policy.decide(facts, one, now=now, holder=sub.did).allow
        for name, creds in (("engine per call, one credential", one), ("engine per call, depth-2 chain (memoised)", chain_creds)):
            us = statistics.median(timed(lambda: policy.decide(facts, creds, now=now, holder=sub.did), 5000)
                                   for _ in range(args.rounds))
            print(f"{name:<52}{us:>9.1f}")
    print("target ratio <= 1.3 (direct, token endpoint); a session call with a chain should cost what one without does")


if __name__ == "__main__":
    main()
