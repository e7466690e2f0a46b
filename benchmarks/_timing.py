"""Timing helpers shared by the benchmarks: calibrated loops, timed in interleaved rounds.

The benchmarks run as scripts (``python benchmarks/verify.py``), so Python puts this folder on
``sys.path`` and they import this module as a plain sibling: ``from _timing import compare``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import coincurve
import nacl.bindings
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from vcgate.keys import PrivateKey, b64url_decode

__all__ = ["calibrate", "compare", "raw_verifier", "timed"]


Clock = Callable[[], float]


def calibrate(fn: Callable[[], object], seconds: float, clock: Clock = time.perf_counter) -> int:
    """How many calls of ``fn`` take about ``seconds``."""
    n = 1
    while True:
        t0 = clock()
        for _ in range(n):
            fn()
        elapsed = clock() - t0
        if elapsed > 0.05:
            return max(1, int(n * seconds / elapsed))
        n *= 2


def timed(fn: Callable[[], object], n: int, clock: Clock = time.perf_counter) -> float:
    """Microseconds per call of ``fn``, over ``n`` calls."""
    t0 = clock()
    for _ in range(n):
        fn()
    return (clock() - t0) / n * 1e6


def compare(
    fn: Callable[[], object],
    base: Callable[[], object],
    seconds: float,
    rounds: int = 7,
    clock: Clock = time.perf_counter,
) -> tuple[float, float, float]:
    """Median us/op of ``fn`` and ``base`` and the median of their per-round ratios.

    The two are timed alternately, round after round, so background load hits both alike.
    ``clock=time.process_time`` measures the CPU time of this process instead of wall time
    (on a shared machine, wall time also counts the time other processes had the core).
    """
    n_fn, n_base = calibrate(fn, seconds / rounds / 2, clock), calibrate(base, seconds / rounds / 2, clock)
    a, b, r = [], [], []
    for _ in range(rounds):
        ta, tb = timed(fn, n_fn, clock), timed(base, n_base, clock)
        a.append(ta)
        b.append(tb)
        r.append(ta / tb)
    return statistics.median(a), statistics.median(b), statistics.median(r)


def raw_verifier(key: PrivateKey, token: str, *, backend: str = "fast") -> Callable[[], None]:
    """The bare library call that checks ``token``'s signature, inputs prepared in advance.

    The floor a gate is measured against: no base64, no JSON, no DER conversion, no vcgate code
    in the call. ``backend="fast"`` (the floor) is the library vcgate verifies with
    (:mod:`vcgate.signatures`): libsodium for Ed25519, libsecp256k1 for secp256k1, OpenSSL for
    P-256; ``"openssl"`` is pyca/cryptography for every curve (the floor before issue 13).
    """
    h, p, s = token.split(".")
    message, sig = f"{h}.{p}".encode(), b64url_decode(s)
    pub = key.public_key.key
    if key.alg == "EdDSA":
        if backend == "fast":
            signed, raw = sig + message, key.public_key.raw()
            return lambda: nacl.bindings.crypto_sign_open(signed, raw) and None
        return lambda: pub.verify(sig, message)  # type: ignore[call-arg]
    r, s_ = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if key.alg == "ES256K" and backend == "fast":
        n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
        der_low = encode_dss_signature(r, min(s_, n - s_))  # libsecp256k1 verifies low S only
        point = coincurve.PublicKey(key.public_key.raw())
        return lambda: point.verify(der_low, message) and None
    der = encode_dss_signature(r, s_)
    algo = ec.ECDSA(hashes.SHA256())
    return lambda: pub.verify(der, message, algo)  # type: ignore[call-arg]
