"""Benchmark: cost of verifying a VC-JWT and a presentation, against raw Ed25519 verifies.

A credential verification has to do one Ed25519 signature check; a presentation carrying one
credential has to do two. The ratio printed is (vcgate's cost) / (the raw checks' cost):
everything vcgate adds -- parsing, header policy, DID lookup (cached), claim checks -- is the
part above 1.0. Target: <= 1.3 for both.

    .venv/bin/python benchmarks/verify.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import time

from _timing import (  # a sibling module: this folder is on sys.path when run as a script
    compare,
    timed,
)

from vcgate.credentials import Verifier, create_presentation, issue_credential
from vcgate.credentials.jws import parse_jws
from vcgate.did import did_key_from_public_key
from vcgate.keys import PrivateKey, b64url_decode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per comparison")
    args = ap.parse_args()

    now = time.time()
    issuer, holder = PrivateKey.generate("EdDSA"), PrivateKey.generate("EdDSA")
    idid, hdid = did_key_from_public_key(issuer.public_key), did_key_from_public_key(holder.public_key)
    vc = issue_credential(
        issuer,
        issuer=idid,
        kid=f"{idid}#{idid.method_specific_id}",
        subject=hdid,
        types=["ModelAccessCredential"],
        claims={"models": ["llama-3-70b", "gpt-4o"], "tier": "gold", "org": "example"},
        valid_from=now - 60,
        valid_until=now + 86400,
    )
    vp = create_presentation(
        holder,
        holder=hdid,
        kid=f"{hdid}#{hdid.method_specific_id}",
        credentials=[vc],
        audience="https://gateway.example",
        nonce="n-0123456789",
        issued_at=now,
    )
    verifier = Verifier()
    verifier.verify_presentation(vp, audience="https://gateway.example", nonce="n-0123456789")  # warm caches

    # Baseline: the raw signature checks alone, with pyca/cryptography.
    sigs = []
    for token, key in ((vc, issuer), (vp, holder)):
        h, p, s = token.split(".")
        sigs.append((key.public_key.key, (h + "." + p).encode(), b64url_decode(s)))
    (k1, m1, s1), (k2, m2, s2) = sigs

    cred, raw1, ratio1 = compare(lambda: verifier.verify_credential(vc), lambda: k1.verify(s1, m1), args.seconds)
    pres, raw2, ratio2 = compare(
        lambda: verifier.verify_presentation(vp, audience="https://gateway.example", nonce="n-0123456789"),
        lambda: (k1.verify(s1, m1), k2.verify(s2, m2)),
        args.seconds,
    )
    parse = timed(lambda: parse_jws(vc, algorithms=("EdDSA",)), 20000)

    print(f"{'case':<46}{'us/op':>9}{'baseline':>10}{'ratio':>8}")
    print(f"{'(a) VC-JWT (1 Ed25519 verify)':<46}{cred:>9.1f}{raw1:>10.1f}{ratio1:>8.2f}")
    print(f"{'(b) presentation + 1 credential (2 verifies)':<46}{pres:>9.1f}{raw2:>10.1f}{ratio2:>8.2f}")
    print(f"{'    of which: strict JWS parse of the VC':<46}{parse:>9.1f}")
    print(f"token sizes: VC {len(vc)} bytes, VP {len(vp)} bytes; target ratio <= 1.3")


if __name__ == "__main__":
    main()
