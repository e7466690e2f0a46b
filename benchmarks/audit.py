"""Benchmark: the audit log's cost on the request path, durable (fsync) and async, with group commit.

Rows, each for N threads appending gateway-decision records for ``--seconds``:

* durable, group commit -- ``append_sync``: the caller waits until its record is written and
  fdatasync'ed; one flush covers every record queued meanwhile (the default ``AuditLog``);
* durable, one fsync per record -- the same with ``max_batch=1``: the baseline group commit is
  measured against (the ratio printed is appends/s over this baseline's appends/s);
* async -- ``append`` only (enqueue; the writer still flushes in batches): the request-path cost,
  compared with a bare ``json.dumps`` of the record as its baseline; throughput counts only
  records that reached the disk by the end (``flush()`` inside the timed region);
* raw -- a hand-written write()+fdatasync() per record in the calling thread, no queue, no
  chain: what a naive synchronous logger costs.

Latency columns are per append as the calling thread sees it (p50 / p99, microseconds).

    .venv/bin/python benchmarks/audit.py [--seconds 2] [--threads 1,4,16,64] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence

from vcgate.audit import AuditLog

RECORD = {
    "subject": "did:key:z6MkpTHR8VNsBxYAAWHut2Geadd9jSwuBV8xRoAnwWsdvktH",
    "issuer": "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
    "rule": "frontier-models",
    "outcome": "allow",
    "code": None,
    "status": 200,
    "method": "POST",
    "path": "/v1/chat/completions",
}


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def run_threads(threads: int, seconds: float, op: Callable[[], object]) -> tuple[int, list[float], float]:
    """Run ``op`` in a loop on ``threads`` threads; return (ops, latencies in us, elapsed s)."""
    stop = threading.Event()
    start = threading.Barrier(threads + 1)
    lats: list[list[float]] = [[] for _ in range(threads)]

    def work(i: int) -> None:
        mine = lats[i]
        start.wait()
        pc = time.perf_counter
        while not stop.is_set():
            t0 = pc()
            op()
            mine.append((pc() - t0) * 1e6)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [x for m in lats for x in m]
    return len(flat), flat, elapsed


def bench_log(directory: str, threads: int, seconds: float, *, durable: bool, max_batch: int) -> tuple[float, float, float, int]:
    fd, path = tempfile.mkstemp(suffix=".jsonl", dir=directory)
    os.close(fd)
    os.unlink(path)
    log = AuditLog(path, fsync=True, max_batch=max_batch, max_queue=1 << 20, block_timeout=5.0)
    try:
        op: Callable[[], object] = (lambda: log.append_sync(RECORD, timeout=30)) if durable else (lambda: log.append(RECORD))
        t0 = time.perf_counter()
        n, lats, _ = run_threads(threads, seconds, op)
        log.flush(60)  # async rows: count only what reached the disk
        elapsed = time.perf_counter() - t0
        batches = log.batches
    finally:
        log.close()
        os.unlink(path)
    return n / elapsed, percentile(lats, 0.5), percentile(lats, 0.99), batches


def bench_raw(directory: str, threads: int, seconds: float) -> tuple[float, float, float]:
    fd, path = tempfile.mkstemp(suffix=".jsonl", dir=directory)
    lock = threading.Lock()
    line = (json.dumps(RECORD, sort_keys=True, separators=(",", ":")) + "\n").encode()

    def op() -> None:
        with lock:  # one file, one writer at a time, as a naive logger does
            os.write(fd, line)
            os.fdatasync(fd)

    try:
        n, lats, elapsed = run_threads(threads, seconds, op)
    finally:
        os.close(fd)
        os.unlink(path)
    return n / elapsed, percentile(lats, 0.5), percentile(lats, 0.99)


def bench_dumps(seconds: float) -> float:
    _, lats, _ = run_threads(1, seconds, lambda: json.dumps(RECORD, sort_keys=True, separators=(",", ":")))
    return statistics.median(lats)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", default="1,4,16,64")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the log files go (pick the disk you log to)")
    args = ap.parse_args(argv)
    threads = [int(x) for x in args.threads.split(",")]

    print(f"audit log benchmark: {args.seconds}s per row, files in {args.dir}, {os.cpu_count()} CPUs")
    print(f"{'row':<44} {'appends/s':>10} {'p50 us':>9} {'p99 us':>9} {'rec/batch':>9} {'ratio':>8}")
    dumps_us = bench_dumps(min(args.seconds, 0.5))
    for n in threads:
        base, b50, b99, bb = bench_log(args.dir, n, args.seconds, durable=True, max_batch=1)
        rate, p50, p99, batches = bench_log(args.dir, n, args.seconds, durable=True, max_batch=1024)
        arate, a50, a99, abatches = bench_log(args.dir, n, args.seconds, durable=False, max_batch=1024)
        raw, r50, r99 = bench_raw(args.dir, n, args.seconds)
        per = lambda r, b: r * args.seconds / max(b, 1)  # approximate records per batch
        print(f"{f'{n:>3} thr durable, group commit':<44} {rate:>10.0f} {p50:>9.0f} {p99:>9.0f} {per(rate, batches):>9.1f} {rate / base:>7.1f}x")
        print(f"{f'{n:>3} thr durable, one fsync per record (base)':<44} {base:>10.0f} {b50:>9.0f} {b99:>9.0f} {per(base, bb):>9.1f} {1.0:>7.1f}x")
        print(f"{f'{n:>3} thr async (enqueue only)':<44} {arate:>10.0f} {a50:>9.1f} {a99:>9.1f} {per(arate, abatches):>9.1f} {rate and arate / base:>7.1f}x")
        print(f"{f'{n:>3} thr raw write+fdatasync per record':<44} {raw:>10.0f} {r50:>9.0f} {r99:>9.0f} {1.0:>9.1f} {raw / base:>7.1f}x")
    print(f"async append p50 vs json.dumps of the record ({dumps_us:.1f} us): see the async rows' p50 / {dumps_us:.1f}")
    print("ratio = appends/s over the one-fsync-per-record baseline with the same threads")


if __name__ == "__main__":
    main()
