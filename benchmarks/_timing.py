"""Timing helpers shared by the benchmarks: calibrated loops, timed in interleaved rounds.

The benchmarks run as scripts (``python benchmarks/verify.py``), so Python puts this folder on
``sys.path`` and they import this module as a plain sibling: ``from _timing import compare``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from vcgate.keys import PrivateKey, b64url_decode

__all__ = ["calibrate", "compare", "raw_verifier", "timed"]


def calibrate(fn: Callable[[], object], seconds: float) -> int:
    """How many calls of ``fn`` take about ``seconds``."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed > 0.05:
            return max(1, int(n * seconds / elapsed))
        n *= 2


def timed(fn: Callable[[], object], n: int) -> float:
    """Microseconds per call of ``fn``, over ``n`` calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def compare(fn: Callable[[], object], base: Callable[[], object], seconds: float, rounds: int = 7) -> tuple[float, float, float]:
    """Median us/op of ``fn`` and ``base`` and the median of their per-round ratios.

    The two are timed alternately, round after round, so background load hits both alike.
    """
    n_fn, n_base = calibrate(fn, seconds / rounds / 2), calibrate(base, seconds / rounds / 2)
    a, b, r = [], [], []
    for _ in range(rounds):
        ta, tb = timed(fn, n_fn), timed(base, n_base)
        a.append(ta)
        b.append(tb)
        r.append(ta / tb)
    return statistics.median(a), statistics.median(b), statistics.median(r)


def raw_verifier(key: PrivateKey, token: str) -> Callable[[], None]:
    """The bare pyca/cryptography check of ``token``'s signature, inputs prepared in advance.

    The floor a gate is measured against: no base64, no JSON, no DER conversion in the call.
    """
    h, p, s = token.split(".")
    message, sig = f"{h}.{p}".encode(), b64url_decode(s)
    pub = key.public_key.key
    if key.alg == "EdDSA":
        return lambda: pub.verify(sig, message)  # type: ignore[call-arg]
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    algo = ec.ECDSA(hashes.SHA256())
    return lambda: pub.verify(der, message, algo)  # type: ignore[call-arg]
