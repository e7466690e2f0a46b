"""Benchmark: verifying a VC-JWT and a presentation, against the signature floor and against didkit.

Part 1 -- vcgate against the floor. A credential verification has to do one signature check; a
presentation carrying one credential has to do two. The floor is the fastest well-kept library's
bare verify call of the very same signatures, inputs prepared in advance (libsodium for Ed25519,
libsecp256k1 for secp256k1, OpenSSL for P-256: ``_timing.raw_verifier``). The ratio is vcgate's
cost / the floor's, median of interleaved rounds, in CPU time of the process by default (``--wall`` for wall time: on a
shared machine wall time also counts other processes' turns): everything vcgate adds -- size and syntax
checks, strict base64url and JSON, header policy, DID lookup (cached), claim and window checks,
the result object -- is the part above 1.0. The OpenSSL column is the floor before issue 13.

Part 2 -- side by side with didkit 0.3.3 (spruceid, Rust) on the same VC-JWT (VCDM 1.1: didkit
knows no other; it needs a ``kid``), did:key issuer, no network. didkit runs in a child process
(it crashes the interpreter at exit, see vcgate.did.didkit); parent and child take turns, round
by round, and each round reports wall and CPU time per verification (CPU of the whole child
process: didkit verifies on tokio worker threads). Target: vcgate >= 3x faster. The same with
did-jwt-vc 4.0.16 in Node (tests/integration/node, installed by ``make node-deps``).

    .venv/bin/python benchmarks/verify.py [--seconds 3] [--rounds 7] [--no-didkit]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _timing import (  # a sibling module: this folder is on sys.path when run as a script
    calibrate,
    compare,
    raw_verifier,
    timed,
)

from vcgate.credentials import Verifier, create_presentation, issue_credential
from vcgate.did import did_key_from_public_key
from vcgate.keys import PrivateKey
from vcgate.signatures import backend_name

AUD, NONCE = "https://gateway.example", "n-0123456789"
CURVE = {"EdDSA": "Ed25519", "ES256K": "secp256k1", "ES256": "P-256"}

# The child: stdlib + didkit only. One line in per round ("<n>"), one JSON line out.
DIDKIT_CHILD = r"""
import asyncio, json, os, sys, time
import didkit
token = sys.argv[1]
opts = json.dumps({"proofFormat": "jwt"})
async def main():
    good = json.loads(await didkit.verify_credential(token, opts))
    h, p, s = token.split(".")
    bad = json.loads(await didkit.verify_credential(f"{h}.{p}.{('B' if s[0] == 'A' else 'A') + s[1:]}", opts))
    print(json.dumps({"good": not good["errors"], "bad": not bad["errors"]}), flush=True)
    for line in sys.stdin:
        n = int(line)
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            await didkit.verify_credential(token, opts)
        w, c = time.perf_counter() - w0, time.process_time() - c0
        print(json.dumps({"wall_us": w / n * 1e6, "cpu_us": c / n * 1e6}), flush=True)
asyncio.run(main())
sys.stdout.flush()
os._exit(0)  # before finalization: didkit's tokio threads crash it
"""


# The same protocol in Node for did-jwt-vc (tests/integration/node: did-jwt-vc 4.0.16,
# key-did-resolver 4.0.0), run from that folder so its node_modules resolve.
DID_JWT_VC_CHILD = r"""
import { createInterface } from 'node:readline'
import { verifyCredential } from 'did-jwt-vc'
import { Resolver } from 'did-resolver'
import { getResolver } from 'key-did-resolver'
const token = process.argv[1]
const resolver = new Resolver({ ...getResolver() }, { cache: true })
const ok = async (t) => { try { await verifyCredential(t, resolver); return true } catch { return false } }
const [h, p, s] = token.split('.')
const good = await ok(token)
const bad = await ok(`${h}.${p}.${(s[0] === 'A' ? 'B' : 'A') + s.slice(1)}`)
console.log(JSON.stringify({ good, bad }))
for await (const line of createInterface({ input: process.stdin })) {
  const n = parseInt(line, 10)
  const w0 = process.hrtime.bigint(), c0 = process.cpuUsage()
  for (let i = 0; i < n; i++) await verifyCredential(token, resolver)
  const w = Number(process.hrtime.bigint() - w0) / 1e3, c = process.cpuUsage(c0)
  console.log(JSON.stringify({ wall_us: w / n, cpu_us: (c.user + c.system) / n }))
}
"""
NODE_DIR = Path(__file__).resolve().parents[1] / "tests" / "integration" / "node"


def credential(issuer: PrivateKey, subject: str, fmt: str) -> str:
    idid = did_key_from_public_key(issuer.public_key)
    now = time.time()
    return issue_credential(
        issuer,
        issuer=idid,
        kid=f"{idid}#{idid.method_specific_id}",
        subject=subject,
        types=["ModelAccessCredential"],
        claims={"models": ["llama-3-70b", "gpt-4o"], "tier": "gold", "org": "example"},
        valid_from=now - 60,
        valid_until=now + 86400,
        format=fmt,
    )


def interleaved(fn: Callable[[], object], seconds: float, rounds: int) -> tuple[int, Callable[[], tuple[float, float]]]:
    """(calls per round, one timed round -> (wall us/op, cpu us/op))."""
    n = calibrate(fn, seconds / rounds / 2)

    def round_() -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        return (time.perf_counter() - w0) / n * 1e6, (time.process_time() - c0) / n * 1e6

    return n, round_


def side_by_side(
    verifier: Verifier, token: str, seconds: float, rounds: int, *, name: str, argv: list[str], cwd: Path | None, hint: str
) -> tuple[float, float, float, float] | None:
    """Median (our wall, our cpu, their wall, their cpu) per verification, alternating rounds."""
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=cwd,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    except OSError:
        print(f"{name}: cannot start ({hint})")
        return None
    assert proc.stdin is not None and proc.stdout is not None
    try:
        first = proc.stdout.readline()
        if not first:
            print(f"{name}: the child did not start ({hint})")
            return None
        check = json.loads(first)
        # Both must actually verify: the token passes, a flipped signature fails.
        if not check["good"] or check["bad"]:
            raise SystemExit(f"{name} does not verify as expected: {check}")
        verifier.verify_credential(token)
        _, ours = interleaved(lambda: verifier.verify_credential(token), seconds, rounds)
        # didkit is slower: fewer calls per round, about the same time.
        t0 = time.perf_counter()
        proc.stdin.write("20\n")
        proc.stdin.flush()
        json.loads(proc.stdout.readline())
        n_dk = max(20, int(20 * seconds / rounds / 2 / max(time.perf_counter() - t0, 1e-3)))
        rows = []
        for _ in range(rounds):
            wall, cpu = ours()
            proc.stdin.write(f"{n_dk}\n")
            proc.stdin.flush()
            theirs = json.loads(proc.stdout.readline())
            rows.append((wall, cpu, theirs["wall_us"], theirs["cpu_us"]))
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=30)
    med = [statistics.median(col) for col in zip(*rows)]
    speed_wall = statistics.median(r[2] / r[0] for r in rows)
    speed_cpu = statistics.median(r[3] / r[1] for r in rows)
    print(f"{'  vcgate Verifier.verify_credential':<52}{med[0]:>9.1f}{med[1]:>9.1f}")
    print(f"{'  ' + name + ' (child process)':<52}{med[2]:>9.1f}{med[3]:>9.1f}")
    print(f"{'  vcgate faster by (median of rounds)':<52}{speed_wall:>8.2f}x{speed_cpu:>8.2f}x")
    return med[0], med[1], med[2], med[3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per comparison")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-didkit", action="store_true", help="skip the side-by-side runs (didkit, did-jwt-vc)")
    ap.add_argument("--wall", action="store_true", help="time part 1 in wall time (default: CPU time of this process)")
    args = ap.parse_args()
    clock = time.perf_counter if args.wall else time.process_time

    holder = PrivateKey.generate("EdDSA")
    hdid = did_key_from_public_key(holder.public_key)
    verifier = Verifier()
    print(f"{'case (floor backend)':<52}{'us/op':>9}{'floor':>9}{'ratio':>8}{'openssl':>9}")

    def row(name: str, fn: Callable[[], object], raws: list[Callable[[], object]], olds: list[Callable[[], object]]) -> None:
        fn()
        us, floor, ratio = compare(fn, lambda: [r() for r in raws], args.seconds, args.rounds, clock)
        old_fn = lambda: [r() for r in olds]  # noqa: E731
        n_old = calibrate(old_fn, 0.2, clock)
        old = statistics.median(timed(old_fn, n_old, clock) for _ in range(3))
        print(f"{name:<52}{us:>9.1f}{floor:>9.1f}{ratio:>8.2f}{old:>9.1f}")

    tokens: dict[str, tuple[PrivateKey, str]] = {}
    for alg in ("EdDSA", "ES256K", "ES256"):
        issuer = PrivateKey.generate(alg)
        vc = credential(issuer, hdid, "vc-jwt11")
        tokens[alg] = (issuer, vc)
        row(
            f"(a) VC-JWT 1.1, {alg} issuer ({backend_name(CURVE[alg])})",
            lambda vc=vc: verifier.verify_credential(vc),
            [raw_verifier(issuer, vc)],
            [raw_verifier(issuer, vc, backend="openssl")],
        )
    issuer, _ = tokens["EdDSA"]
    vc2 = credential(issuer, hdid, "vc-jose")
    row(
        "(b) VC-JOSE 2.0 vc+jwt, EdDSA issuer (libsodium)",
        lambda: verifier.verify_credential(vc2),
        [raw_verifier(issuer, vc2)],
        [raw_verifier(issuer, vc2, backend="openssl")],
    )
    vp = create_presentation(
        holder, holder=hdid, kid=f"{hdid}#{hdid.method_specific_id}", credentials=[vc2],
        audience=AUD, nonce=NONCE, issued_at=time.time(),
    )
    row(
        "(c) vp+jwt + 1 credential, EdDSA (2 verifies)",
        lambda: verifier.verify_presentation(vp, audience=AUD, nonce=NONCE),
        [raw_verifier(holder, vp), raw_verifier(issuer, vc2)],
        [raw_verifier(holder, vp, backend="openssl"), raw_verifier(issuer, vc2, backend="openssl")],
    )
    print("ratio = us/op / floor (the fastest backend's bare verify of the same signatures), median of")
    print("interleaved rounds; 'openssl' = the same bare verifies in pyca/cryptography (the old floor);")
    print(f"times are {'wall' if args.wall else 'CPU (time.process_time)'} microseconds per call; load: {os.getloadavg()[0]:.2f}")
    if not args.no_didkit:
        token = tokens["EdDSA"][1]
        print()
        print(f"{'same VC-JWT 1.1 (Ed25519 did:key issuer)':<52}{'wall us':>9}{'cpu us':>9}")
        side_by_side(verifier, token, args.seconds, args.rounds, name="didkit 0.3.3 verify_credential",
                     argv=[sys.executable, "-c", DIDKIT_CHILD, token], cwd=None, hint="pip install 'vcgate[didkit]'")
        print("  target: vcgate >= 3x faster than didkit")
        side_by_side(verifier, token, args.seconds, args.rounds, name="did-jwt-vc 4.0.16 verifyCredential (Node)",
                     argv=["node", "--input-type=module", "-e", DID_JWT_VC_CHILD, token], cwd=NODE_DIR,
                     hint="make node-deps")


if __name__ == "__main__":
    main()
