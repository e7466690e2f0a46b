"""Benchmark: sessions shared by every replica -- a record in the shared store, or the
credentials carried in a self-contained access token? (docs/limits.md, "Sessions").

For 1, 4 and 16 credentials per session it prints:

* the access token's size with the credentials inside it (what the client would send on
  every call, in a header) next to the plain token;
* the cost at a replica that has not seen the session yet: re-verifying the credentials
  (both designs pay it once per replica and session, then the session is cached locally);
* the store design's extra: one Redis ``GET`` of the record (loopback) on that first sight;
* the token design's extra on every call: checking the larger token (signature over all of it).

    .venv/bin/python benchmarks/session_store.py [--seconds 1] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from _timing import calibrate, timed
from limits import _start_redis  # a sibling module: the loopback Redis starter

from vcgate.credentials import Verifier, issue_credential
from vcgate.did import did_key_from_public_key
from vcgate.errors import VCGateError
from vcgate.keys import PrivateKey
from vcgate.session import TokenIssuer, TokenVerifier
from vcgate.stores import RedisSessionStore, redis_client

GW = "https://gw.example"


def _us(fn, seconds: float) -> float:
    return timed(fn, calibrate(fn, seconds))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--redis-url", default=None)
    args = ap.parse_args()
    now = time.time()
    clock = lambda: now  # noqa: E731
    issuer_key, holder_key, gw = PrivateKey.generate("EdDSA"), PrivateKey.generate("EdDSA"), PrivateKey.generate("EdDSA")
    issuer, holder = did_key_from_public_key(issuer_key.public_key), did_key_from_public_key(holder_key.public_key)
    verifier = Verifier(clock=clock)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = (None, args.redis_url) if args.redis_url else _start_redis(tmp)
        store = RedisSessionStore(redis_client(url)) if url else None
        try:
            print(f"{'credentials':>11}{'plain token B':>15}{'token with creds B':>20}{'verify creds us':>17}"
                  f"{'store GET us':>14}{'big token check us':>20}{'plain check us':>16}")
            for n in (1, 4, 16):
                creds = [issue_credential(issuer_key, issuer=str(issuer), kid=f"{issuer}#{issuer.method_specific_id}",
                                          subject=str(holder), types=["ModelAccessCredential"],
                                          claims={"models": ["gpt-4o", "llama-3-70b"], "limits": {"rpm": 60, "tokens_per_month": 10**6},
                                                  "team": f"team-{i}"}, valid_from=now - 60, credential_id=f"urn:uuid:{i:08d}")
                         for i in range(n)]
                issuer_obj = TokenIssuer(key=gw, issuer=GW, clock=clock)
                plain = issuer_obj.issue(subject=str(holder), holder_jkt=holder_key.public_key.thumbprint(), scopes=[], audience=GW)
                big = issuer_obj.issue(subject=str(holder), holder_jkt=holder_key.public_key.thumbprint(), scopes=[], audience=GW,
                                       extra={"vcs": creds})
                uncached = TokenVerifier(keys=[gw.public_key], issuer=GW, audience=GW, clock=clock, cache_size=0)
                verify_all = lambda creds=creds: [verifier.verify_credential(c) for c in creds]  # noqa: E731
                record = json.dumps({"holder": str(holder), "credentials": creds}).encode()
                get_us = float("nan")
                if store is not None:
                    store.put("jti-bench", str(holder), record, 300)
                    get_us = _us(lambda: store.get("jti-bench"), args.seconds)
                try:
                    big_us = f"{_us(lambda big=big: uncached.verify(big), args.seconds):.1f}"
                except VCGateError as exc:  # the verifier's size cap (8 KiB, like common header limits)
                    big_us = exc.details.get("reason", exc.code)
                print(f"{n:>11}{len(plain):>15}{len(big):>20}{_us(verify_all, args.seconds):>17.1f}{get_us:>14.1f}"
                      f"{big_us:>20}{_us(lambda plain=plain: uncached.verify(plain), args.seconds):>16.1f}")
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=5)


if __name__ == "__main__":
    main()
