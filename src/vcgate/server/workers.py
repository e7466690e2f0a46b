"""``vcgate serve --workers N``: one listening socket, N worker processes, a supervisor.

The auth service's check is CPU-bound Python, so one process uses one core. The supervisor
binds the HTTP socket, forks the workers (each then builds its own gate, mirror and audit log:
nothing with a thread crosses a fork) and lets the kernel spread connections over them. With
``--grpc-port`` each worker also serves gRPC on that port (gRPC sets ``SO_REUSEPORT``).

A worker that dies is restarted (at most :data:`MAX_RESTARTS` times a minute; beyond that the
supervisor stops everything and exits 1, rather than serve at a fraction of its capacity
unnoticed). SIGTERM or SIGINT stop the workers (SIGTERM, then SIGKILL after ``grace``).

What workers share goes through the store: nonces, DPoP replay and sessions need ``--redis``
when N > 1 (a nonce issued by one worker is consumed at another; a proof used at one must be
refused at all). Each worker keeps its own audit log (``audit.jsonl`` -> ``audit.w0.jsonl``,
``audit.w1.jsonl``: each is one hash chain) and mirror checkpoint, and ``/metrics`` is the
metrics of whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["MAX_RESTARTS", "bind", "per_worker_path", "supervise"]

MAX_RESTARTS = 10
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def bind(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """The listening socket the workers share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def per_worker_path(path: str | None, index: int) -> str | None:
    """``audit.jsonl`` -> ``audit.w<index>.jsonl``: one file per worker."""
    if path is None:
        return None
    p = Path(path)
    return str(p.with_name(f"{p.stem}.w{index}{p.suffix}"))


def supervise(
    workers: int,
    run_worker: Callable[[int], None],
    *,
    grace: float = 10.0,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> int:
    """Fork ``workers`` children running ``run_worker(index)``; restart the ones that die.

    Returns the exit status for the supervisor: 0 after a requested stop, 1 when workers kept
    dying. ``run_worker`` runs in the child and must not return until the worker stops.
    """
    children: dict[int, int] = {}  # pid -> index
    restarts: list[float] = []
    stopping = False

    def spawn(index: int) -> None:
        # A stop signal between fork() and recording the child would leave it running untracked.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            raise
        if pid == 0:  # the worker
            for sig in (*_STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            code = 0
            try:
                run_worker(index)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException as exc:  # noqa: BLE001 -- reported, then the supervisor restarts us
                log(f"vcgate serve: worker {index} failed: {type(exc).__name__}: {exc}")
                code = 1
            finally:
                os._exit(code)
        children[pid] = index
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # a pending stop is raised here

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise _Stop  # waitpid() is retried after a signal (PEP 475) unless the handler raises

    old = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
    try:
        try:
            for index in range(workers):
                spawn(index)
            while children and not stopping:
                pid, status = os.waitpid(-1, 0)
                index = children.pop(pid, None)
                if index is None:
                    continue
                now = time.monotonic()
                restarts[:] = [t for t in restarts if now - t < 60] + [now]
                why = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
                if len(restarts) > MAX_RESTARTS:
                    log(f"vcgate serve: worker {index} died ({why}); more than {MAX_RESTARTS} restarts in a minute, "
                        "stopping")
                    for sig in old:
                        signal.signal(sig, signal.SIG_IGN)
                    _stop_all(children, grace)
                    return 1
                log(f"vcgate serve: worker {index} died ({why}); restarting it")
                spawn(index)
        except (_Stop, ChildProcessError):
            pass
        for sig in old:  # a second signal must not interrupt the shutdown
            signal.signal(sig, signal.SIG_IGN)
        _stop_all(children, grace)
        return 0
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class _Stop(Exception):
    pass


def _stop_all(children: dict[int, int], grace: float) -> None:
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            children.pop(pid, None)
    deadline = time.monotonic() + grace
    while children and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
            continue
        children.pop(pid, None)
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        children.pop(pid, None)
