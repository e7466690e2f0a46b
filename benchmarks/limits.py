"""Benchmark: the added cost per call of a request limit and of a token budget, in memory and
on Redis (loopback), next to the cost of the call itself without limits.

The call without limits is a warm session-mode check: the access token found in the token
cache, the DPoP proof's signature verified, the policy decided (the replay store is a stub
here, so its round trip is not in the baseline; see benchmarks/session.py for it). The added
cost is what the gate does on top for limits:

* request limit -- resolve the limit for the decision, reserve one request (one round trip);
  settling it needs no second round trip;
* token budget -- also estimate the call from its body, rewrite the body (output cap), read
  ``usage`` from the JSON answer and commit it (two round trips: reserve and commit).

The ratio printed is (added cost) / (call without limits).

    .venv/bin/python benchmarks/limits.py [--seconds 2] [--redis-url redis://127.0.0.1:6379/0]

Without --redis-url a redis-server from PATH is started on a free loopback port, if there is one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable

from _timing import compare  # a sibling module: this folder is on sys.path when run as a script

from vcgate.credentials import Verifier, issue_credential
from vcgate.did import did_key_from_public_key
from vcgate.keys import PrivateKey
from vcgate.policy import Policy, RequestFacts
from vcgate.policy.limits import Caller, plan_limits
from vcgate.session import DPoPVerifier, SessionVerifier, TokenIssuer, TokenVerifier, create_proof
from vcgate.stores import CounterStore, MemoryCounterStore, RedisCounterStore, redis_client
from vcgate.usage import Meter, estimate_call, rewrite_body, usage_from_json

GW = "https://gw.example"
URL = GW + "/v1/chat/completions"
BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello. " * 20}]}).encode()
ANSWER = json.dumps({"choices": [{"message": {"content": "hello"}}],
                     "usage": {"prompt_tokens": 60, "completion_tokens": 7, "total_tokens": 67}}).encode()


class _AcceptAll:
    """A replay store stub: the baseline measures the check, not a store round trip."""

    def add_if_absent(self, key: str, ttl: float) -> bool:
        return True


def _policy(issuer: str, limits: str) -> Policy:
    return Policy.from_yaml(f"""version: 1
audience: {GW}
trusted_issuers: [{{did: {issuer}}}]
rules:
  - name: chat
    match: {{paths: [/v1/chat/completions]}}
    require: {{types: [ModelAccessCredential]}}
{limits}""")


REQUEST_LIMIT = "limits:\n  - {name: rpm, key: $subject, requests: 1000000000, per: 1d}\n"
TOKEN_BUDGET = "limits:\n  - {name: tokens, key: $subject, tokens: 1000000000000, per: 30d, reserve: 256}\n"


def bench(store: CounterStore, seconds: float) -> list[tuple[str, float, float, float]]:
    now = time.time()
    clock = lambda: now  # noqa: E731
    issuer_key, holder_key, gw = PrivateKey.generate("EdDSA"), PrivateKey.generate("EdDSA"), PrivateKey.generate("EdDSA")
    issuer, holder = did_key_from_public_key(issuer_key.public_key), did_key_from_public_key(holder_key.public_key)
    vc = issue_credential(issuer_key, issuer=str(issuer), kid=f"{issuer}#{issuer.method_specific_id}", subject=str(holder),
                          types=["ModelAccessCredential"], claims={"limits": {"rpm": 60}}, valid_from=now - 60)
    cred = Verifier(clock=clock).verify_credential(vc)
    token = TokenIssuer(key=gw, issuer=GW, clock=clock).issue(subject=str(holder), holder_jkt=holder_key.public_key.thumbprint(),
                                                              scopes=[], audience=GW)
    proof = create_proof(holder_key, htm="POST", htu=URL, access_token=token, clock=clock)
    sessions = SessionVerifier(tokens=TokenVerifier(keys=[gw.public_key], issuer=GW, audience=GW, clock=clock),
                               proofs=DPoPVerifier(algorithms=["EdDSA"], replay_store=_AcceptAll(), clock=clock))
    plain = _policy(str(issuer), "")
    facts = RequestFacts("POST", "/v1/chat/completions", model="gpt-4o", body_available=True)

    def call(policy: Policy = plain):
        sessions.verify(authorization="DPoP " + token, dpop=proof, htm="POST", htu=URL)
        return policy.decide(facts, [cred], now=now, holder=str(holder))

    meter = Meter(store=store)
    rpm, budget = _policy(str(issuer), REQUEST_LIMIT), _policy(str(issuer), TOKEN_BUDGET)
    decision = call(rpm)
    assert decision.allow, decision

    def request_limit() -> None:
        specs = rpm.limits_for(decision)
        admission = meter.admit(plan_limits(specs, rpm.prices, Caller.from_decision(decision), estimate_call(None)))
        meter.settle(admission, None)

    data = json.loads(BODY)  # the gate has parsed the body already, for its model

    def token_budget() -> None:
        specs = budget.limits_for(decision)
        estimate = estimate_call(BODY, specs=specs, data=data)
        admission = meter.admit(plan_limits(specs, budget.prices, Caller.from_decision(decision), estimate))
        rewrite_body(BODY, max_output=estimate.max_output, data=data)
        meter.settle(admission, usage_from_json(ANSWER))

    rows = []
    for name, fn in (("request limit", request_limit), ("token budget", token_budget)):
        fn()
        us, base, ratio = compare(fn, call, seconds)
        rows.append((name, us, base, ratio))
    return rows


def _start_redis(tmp: str) -> tuple[subprocess.Popen | None, str | None]:
    exe = shutil.which("redis-server")
    if exe is None:
        return None, None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis_client(url).ping()
            return proc, url
        except Exception:  # noqa: BLE001 -- not up yet
            time.sleep(0.05)
    proc.terminate()
    return None, None


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per comparison")
    ap.add_argument("--redis-url", default=None, help="Redis to measure on (default: start one on loopback)")
    args = ap.parse_args()
    stores: list[tuple[str, Callable[[], CounterStore]]] = [("memory", MemoryCounterStore)]
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        url = args.redis_url
        if url is None:
            proc, url = _start_redis(tmp)
        if url is not None:
            stores.append(("redis", lambda: RedisCounterStore(redis_client(url), prefix=f"bench:{time.monotonic_ns()}:")))
        try:
            print(f"{'case':<32}{'added us':>10}{'call us':>10}{'ratio':>8}")
            for store_name, make in stores:
                for name, us, base, ratio in bench(make(), args.seconds):
                    print(f"{name + ', ' + store_name:<32}{us:>10.1f}{base:>10.1f}{ratio:>8.2f}")
            if url is None:
                print("(no redis-server on PATH: Redis not measured)")
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=5)


if __name__ == "__main__":
    main()
