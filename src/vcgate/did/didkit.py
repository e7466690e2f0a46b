"""DID methods served by didkit (did:pkh, did:ethr, did:tz, ...), run in a child process.

didkit 0.3.3 (PyPI) is a Rust extension whose async calls leave tokio worker threads behind;
when the interpreter finalizes they touch Python and the process dies (SIGSEGV, or SIGABRT
with "PyGILState_Release: thread state ... must be current"), in a fraction of runs. So vcgate
never imports didkit: each resolution runs a short stdlib-only script in a fresh interpreter
that resolves, writes one JSON line, flushes and leaves with ``os._exit`` before finalization.
The parent bounds the child's time and output, accepts a complete result even if the child
crashed after writing it, and turns everything else into a typed ``DIDError``.

A resolution costs a fresh interpreter (about 0.1 s here), so these methods belong behind the
:class:`~vcgate.did.resolver.Resolver` cache, never on the hot path.

What didkit 0.3.3 resolves without network: did:pkh (eip155, btc, doge, tz, sol, ...),
did:ethr (derived from the address or public key alone: didkit does not read the ERC-1056
registry, so owner changes and delegates made on chain are not seen), did:key, did:jwk.
did:tz needs the TzKT indexer over the network. Only some documents carry keys vcgate can
verify with: did:key, did:jwk, did:pkh:sol (Ed25519 ``publicKeyJwk``) and did:ethr in its
public-key form (secp256k1 ``publicKeyJwk``); did:pkh for eip155/btc/doge/tz and did:ethr for
an address list only ``blockchainAccountId`` (signature recovery), which vcgate skips.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import IO, Any

from ..errors import (
    DIDMethodNotSupportedError,
    DIDNotFoundError,
    DIDResolutionError,
    InvalidDIDError,
)
from .document import DID

__all__ = ["DidkitMethod", "didkit_methods"]

log = logging.getLogger(__name__)

#: The pip extra that installs didkit, quoted in error messages.
INSTALL_HINT = "pip install 'vcgate[didkit]'"

# didkit fetches these documents from a host named in the DID itself, with no address filter
# and no size limit: an SSRF path around vcgate's own did:web fetcher.
_REFUSED_METHODS = {
    "web": "use vcgate's WebMethod (it refuses private addresses and bounds the response)",
    "onion": "didkit would fetch from a host named by the DID, without vcgate's address checks",
    "webkey": "didkit would fetch from a host named by the DID, without vcgate's address checks",
}
# Documents of these methods are a pure function of the DID in didkit 0.3.3.
_PURE_METHODS = frozenset({"key", "jwk", "pkh"})

_POSIX = os.name == "posix"
_METHOD_RE = re.compile(r"[a-z0-9]{1,64}")
_MARKER = "vcgate-didkit/1"
_STDERR_KEEP = 2048

# The child: stdlib only, so it does not depend on vcgate being importable by ``python``.
# The DID is the last argument (a wrapper interpreter may add its own in front).
# os._exit skips interpreter finalization, where didkit's leftover threads crash it.
_CHILD_SCRIPT = f"""
import asyncio, json, os, sys

def out(obj):
    obj["marker"] = {_MARKER!r}
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\\n")
    sys.stdout.flush()
    os._exit(0)

try:
    import didkit
except ImportError as exc:
    out({{"status": "missing", "error": type(exc).__name__}})

async def resolve(did):
    return await didkit.resolve_did(did, "{{}}")

try:
    text = asyncio.run(resolve(sys.argv[-1]))
except Exception as exc:
    out({{"status": "error", "error": str(exc)[:500]}})
try:
    doc = json.loads(text)
except Exception:
    out({{"status": "error", "error": "didkit returned a document that is not JSON"}})
out({{"status": "ok", "document": doc}})
"""

def _error_for(did: DID, reason: str) -> Exception:
    """Map didkit's error string: ssi's resolution codes, or free text (network errors...)."""
    short = did[:80]
    if reason == "invalidDid":
        return InvalidDIDError(f"didkit: not a valid {did.method} DID: {short!r}")
    if reason == "notFound":
        return DIDNotFoundError(f"didkit: no DID document for {short!r}")
    if reason == "methodNotSupported":
        return DIDMethodNotSupportedError(f"didkit does not support did:{did.method}")
    # Free text may carry URLs and OS messages: keep it in the log, not in the refusal.
    log.warning("didkit failed to resolve %r: %r", short, reason[:300])
    return DIDResolutionError(f"didkit could not resolve {short!r} (see the vcgate.did.didkit log)")


class DidkitMethod:
    """A DID method plug-in that resolves ``did:<method>`` with didkit in a child process.

    One instance serves one method: ``Resolver([DidkitMethod("pkh"), DidkitMethod("ethr")])``.
    ``timeout`` (seconds) bounds each child from start to exit, ``max_bytes`` its output;
    ``python`` is the interpreter that has didkit installed (by default this one).
    ``max_concurrent`` bounds how many children this instance runs at once, so a burst of
    unknown DIDs cannot fork without limit; waiting for a slot counts against ``timeout``.

    did:web, did:onion and did:webkey are refused: didkit would fetch from a host the DID
    names, without vcgate's address checks or size limit.
    """

    def __init__(
        self,
        method: str,
        *,
        timeout: float = 10.0,
        max_bytes: int = 256 * 1024,
        python: str = sys.executable,
        max_concurrent: int = 4,
    ) -> None:
        if not isinstance(method, str) or not _METHOD_RE.fullmatch(method):
            raise ValueError(f"not a DID method name: {method!r}")
        if method in _REFUSED_METHODS:
            raise ValueError(f"DidkitMethod will not serve did:{method}: {_REFUSED_METHODS[method]}")
        if timeout <= 0 or max_bytes <= 0 or max_concurrent <= 0:
            raise ValueError("timeout, max_bytes and max_concurrent must be positive")
        if not python:
            raise ValueError("python must name an interpreter")
        self.name = method
        self.cacheable_forever = method in _PURE_METHODS
        self.timeout = float(timeout)
        self.max_bytes = int(max_bytes)
        self.python = python
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def __repr__(self) -> str:
        return f"DidkitMethod({self.name!r}, timeout={self.timeout}, python={self.python!r})"

    def resolve(self, did: DID | str) -> dict[str, Any]:
        """The DID document didkit returns for ``did`` (the ``didDocument``), as a dict.

        Raises ``InvalidDIDError``, ``DIDNotFoundError``, ``DIDMethodNotSupportedError``
        (also when didkit is not installed) or ``DIDResolutionError`` (timeout, crash,
        oversized or garbled output, network failure inside didkit).
        """
        value = DID(did)
        if value.method != self.name:
            raise DIDMethodNotSupportedError(f"this didkit handler serves did:{self.name}, not did:{value.method}")
        deadline = time.monotonic() + self.timeout
        if not self._slots.acquire(timeout=self.timeout):
            raise DIDResolutionError(f"too many didkit resolutions in flight for did:{self.name}")
        try:
            out = self._run(value, deadline)
        finally:
            self._slots.release()
        status = out.get("status")
        if status == "ok":
            doc = out.get("document")
            if not isinstance(doc, dict):
                raise DIDResolutionError(f"didkit returned no DID document for {value[:80]!r}")
            return doc
        if status == "missing":
            raise DIDMethodNotSupportedError(
                f"did:{self.name} needs didkit, which {self.python!r} cannot import: {INSTALL_HINT}"
            )
        if status == "error" and isinstance(out.get("error"), str):
            raise _error_for(value, out["error"])
        raise DIDResolutionError("the didkit child answered with an unknown status")

    # --- the child process -------------------------------------------------------------

    def _run(self, did: DID, deadline: float) -> dict[str, Any]:
        argv = [self.python, "-I", "-c", _CHILD_SCRIPT, str(did)]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
                # Its own process group, so a timeout also ends anything the child started.
                start_new_session=_POSIX,
            )
        except OSError as exc:
            raise DIDResolutionError(f"could not start the didkit child ({type(exc).__name__})") from exc
        stdout = _BoundedReader(proc.stdout, self.max_bytes, on_overflow=proc.kill)  # type: ignore[arg-type]
        stderr = _BoundedReader(proc.stderr, _STDERR_KEEP)  # type: ignore[arg-type]
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            raise DIDResolutionError(f"didkit did not resolve {did[:80]!r} within {self.timeout:g} s") from exc
        except BaseException:  # KeyboardInterrupt and the like: leave no child behind
            _kill_group(proc)
            raise
        finally:
            # The pipes close when the child dies; a grandchild holding them open must not
            # hang the caller, hence the bounded joins.
            stdout.join(1.0)
            stderr.join(1.0)
        if stdout.overflow:
            raise DIDResolutionError(f"the didkit answer for {did[:80]!r} exceeds {self.max_bytes} bytes")
        result = _parse_answer(stdout.data)
        if proc.returncode != 0:
            # didkit's leftover threads can kill the child after it wrote a complete answer;
            # that answer is good. Without one, the crash is the story.
            log.debug(
                "didkit child for %r exited with %s; stderr starts %r",
                did[:80],
                proc.returncode,
                stderr.data[:300],
            )
            if result is None:
                raise DIDResolutionError(
                    f"the didkit child failed ({_describe_exit(proc.returncode)}) without an answer"
                )
        if result is None:
            raise DIDResolutionError("the didkit child gave no well-formed answer")
        return result


class _BoundedReader:
    """Drains a pipe in a thread, keeping at most ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int, on_overflow: Any = None) -> None:
        self._stream = stream
        self._limit = limit
        self._on_overflow = on_overflow
        self._chunks: list[bytes] = []
        self._size = 0
        self.overflow = False
        self._thread = threading.Thread(target=self._pump, name="vcgate-didkit-pipe", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while True:
                chunk = self._stream.read1(65536)  # type: ignore[attr-defined]
                if not chunk:
                    return
                room = self._limit - self._size
                if len(chunk) > room:
                    self._chunks.append(chunk[: max(room, 0)])
                    self._size = self._limit
                    if not self.overflow:
                        self.overflow = True
                        if self._on_overflow is not None:
                            self._on_overflow()
                            return
                    continue  # keep draining (and discarding) so the child never blocks
                self._chunks.append(chunk)
                self._size += len(chunk)
        except (OSError, ValueError):
            return
        finally:
            try:
                self._stream.close()
            except OSError:
                pass

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def data(self) -> bytes:
        return b"".join(self._chunks)


def _parse_answer(data: bytes) -> dict[str, Any] | None:
    """The child's answer line, or None if it is missing, cut short or not ours."""
    # A complete answer ends with a newline; a child killed mid-write leaves no newline.
    if not data.endswith(b"\n"):
        return None
    line = data.rstrip(b"\n")
    if b"\n" in line:
        return None
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("marker") != _MARKER:
        return None
    return obj


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child and its process group; only called while the child is not yet reaped,
    so its pid (the group id) cannot have been reused."""
    if _POSIX:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
    else:
        proc.kill()
    proc.wait()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def didkit_methods(names: Iterable[str], **options: Any) -> list[DidkitMethod]:
    """One :class:`DidkitMethod` per name, sharing ``options`` (timeout, max_bytes, python)."""
    return [DidkitMethod(name, **options) for name in names]
