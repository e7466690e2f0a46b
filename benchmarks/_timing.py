"""Timing helpers shared by the benchmarks: calibrated loops, timed in interleaved rounds.

The benchmarks run as scripts (``python benchmarks/verify.py``), so Python puts this folder on
``sys.path`` and they import this module as a plain sibling: ``from _timing import compare``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["calibrate", "compare", "timed"]


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
