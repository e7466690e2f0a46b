"""Benchmark: verifying an SD-JWT VC presentation (10 Disclosures + KB-JWT) against its 2 raw verifies.

An SD-JWT+KB costs two signature checks (the issuer's JWT, the holder's KB-JWT); everything
else vcgate does -- splitting, strict JSON, 10 SHA-256 digests and their lookups, the recursive
payload walk, ``sd_hash``, ``cnf`` key import, the DID lookup (cached) -- is the part above 1.0.
Target: the same as for JWT presentations (<= 1.3).

    .venv/bin/python benchmarks/sdjwt.py [--seconds 3] [--alg EdDSA|ES256]
"""

from __future__ import annotations

import argparse
import time

from _timing import compare, raw_verifier, timed  # a sibling module: this folder is on sys.path

from vcgate.credentials import Verifier
from vcgate.credentials import sdjwt as sdjwt_module
from vcgate.credentials.sdjwt import issue_sd_jwt_vc, present_sd_jwt
from vcgate.did import did_key_from_public_key
from vcgate.keys import PrivateKey

AUD, NONCE = "https://gateway.example", "n-0123456789"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per comparison")
    ap.add_argument("--alg", default="EdDSA", choices=["EdDSA", "ES256"])
    args = ap.parse_args()

    now = time.time()
    issuer, holder = PrivateKey.generate(args.alg), PrivateKey.generate(args.alg)
    idid = did_key_from_public_key(issuer.public_key)
    claims = {f"claim_{i}": f"value {i}" for i in range(10)}
    sd_jwt = issue_sd_jwt_vc(issuer, issuer=idid, kid=f"{idid}#{idid.method_specific_id}", vct="ModelAccessCredential",
                             claims=claims, valid_from=now - 60, valid_until=now + 86400,
                             holder_key=holder.public_key, decoys=3)
    pres = present_sd_jwt(sd_jwt, disclose=None, holder_key=holder, audience=AUD, nonce=NONCE, issued_at=now)
    verifier = Verifier()
    verified = verifier.verify_presentation(pres, audience=AUD, nonce=NONCE)  # warms the DID cache
    assert len(verified.credentials[0].claims) == 10

    jwt, kb = pres.split("~")[0], pres.rsplit("~", 1)[1]
    issuer_check, kb_check = raw_verifier(issuer, jwt), raw_verifier(holder, kb)
    ours, raw, ratio = compare(lambda: verifier.verify_presentation(pres, audience=AUD, nonce=NONCE),
                               lambda: (issuer_check(), kb_check()), args.seconds)
    cred = timed(lambda: verifier.verify_credential(sd_jwt), 2000)
    # The Disclosure memo (digests and decoding) is warm above, as for an agent presenting the
    # same credential again; here it is emptied before each call (a credential seen first).
    memo = sdjwt_module._digested_memo

    def cold() -> None:
        memo.cache_clear()
        verifier.verify_presentation(pres, audience=AUD, nonce=NONCE)

    cold_us, raw2, cold_ratio = compare(cold, lambda: (issuer_check(), kb_check()), args.seconds)

    print(f"{'case':<58}{'us/op':>9}{'baseline':>10}{'ratio':>8}")
    print(f"{f'(a) SD-JWT VC + 10 Disclosures + KB-JWT ({args.alg}, 2 verifies)':<58}{ours:>9.1f}{raw:>10.1f}{ratio:>8.2f}")
    print(f"{'(b) the same, Disclosures never seen before (memo cold)':<58}{cold_us:>9.1f}{raw2:>10.1f}{cold_ratio:>8.2f}")
    print(f"{'    the issued SD-JWT VC alone (1 verify, 10 Disclosures)':<58}{cred:>9.1f}")
    print(f"presentation size {len(pres)} bytes; target ratio <= 1.3")


if __name__ == "__main__":
    main()
