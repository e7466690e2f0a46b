"""A local anvil node (npm ``@foundry-rs/anvil``, pinned in ``tools/chain``) as a child process.

Used by the integration tests and meant for ``vcgate chain dev``: it listens on 127.0.0.1 only
(a development node's accounts are funded and unlocked: anyone who can reach it can spend
from them), optionally persists its state to a file across restarts (anvil ``--state``), and
exposes the development keys anvil generated, read from its ``--config-out`` file rather than
copied into vcgate.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from ..errors import ChainUnavailableError

__all__ = ["ANVIL_INSTALL_HINT", "AnvilNode", "find_anvil"]

ANVIL_INSTALL_HINT = (
    "install the pinned anvil with: npm ci --prefix tools/chain (or set VCGATE_ANVIL to its path)"
)

# tools/chain/node_modules of a source checkout (src/vcgate/chain/anvil.py -> repository root).
_CHECKOUT_MODULES = Path(__file__).resolve().parents[3] / "tools" / "chain" / "node_modules"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def find_anvil(binary: str | os.PathLike[str] | None = None) -> Path | None:
    """Locate anvil: ``binary``, else ``$VCGATE_ANVIL``, else the pinned npm package of this
    checkout (its native binary, so that signals reach anvil itself and not a node wrapper),
    else ``anvil`` on ``PATH``. ``None`` when there is none."""
    for explicit in (binary, os.environ.get("VCGATE_ANVIL")):
        if explicit:
            path = Path(explicit)
            return path if path.is_file() else None
    plat = {"linux": "linux", "darwin": "darwin", "win32": "win32"}.get(sys.platform)
    arch = _ARCH.get(platform.machine().lower())
    exe = "anvil.exe" if sys.platform == "win32" else "anvil"
    candidates = []
    if plat and arch:
        candidates.append(_CHECKOUT_MODULES / "@foundry-rs" / f"anvil-{plat}-{arch}" / "bin" / exe)
    candidates.append(_CHECKOUT_MODULES / ".bin" / "anvil")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = shutil.which("anvil")
    return Path(found) if found else None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class AnvilNode:
    """One anvil process. ``with AnvilNode() as node: connect(node.url)``.

    ``port`` ``None`` picks a free one; ``state`` is a file anvil loads at start and writes at
    a clean stop; ``block_time`` ``None`` mines each transaction at once (automine).
    """

    def __init__(
        self,
        *,
        binary: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        state: str | os.PathLike[str] | None = None,
        chain_id: int | None = None,
        block_time: float | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.binary = find_anvil(binary)
        self.host = host
        self.port = port
        self.state = Path(state) if state is not None else None
        self.chain_id = chain_id
        self.block_time = block_time
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._private_keys: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def dev_private_keys(self) -> tuple[str, ...]:
        """The funded development accounts' private keys (hex), as anvil reported them."""
        return self._private_keys

    def start(self) -> Self:
        if self.running:
            return self
        if self.binary is None:
            raise ChainUnavailableError(f"anvil not found: {ANVIL_INSTALL_HINT}")
        if self.port is None:
            self.port = _free_port(self.host)
        self._workdir = tempfile.TemporaryDirectory(prefix="vcgate-anvil-")
        work = Path(self._workdir.name)
        config_out = work / "config.json"
        args = [
            str(self.binary),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--config-out",
            str(config_out),
        ]
        if self.state is not None:
            self.state.parent.mkdir(parents=True, exist_ok=True)
            args += ["--state", str(self.state)]
        if self.chain_id is not None:
            args += ["--chain-id", str(self.chain_id)]
        if self.block_time is not None:
            args += ["--block-time", f"{self.block_time:g}"]
        log = open(work / "anvil.log", "wb")  # noqa: SIM115 - the child keeps writing to it
        try:
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        except OSError as exc:
            log.close()
            raise ChainUnavailableError(f"cannot start anvil ({self.binary}): {exc}") from exc
        log.close()
        self._wait_ready(config_out)
        return self

    def _wait_ready(self, config_out: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        while True:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                tail = self._log_tail()  # anvil's own words, e.g. "Address already in use"
                self.stop()
                raise ChainUnavailableError(
                    f"anvil exited at start (code {code}) on {self.url}: {tail or 'no output'}",
                    endpoint=self.url,
                    exit_code=code,
                )
            try:
                request = urllib.request.Request(
                    self.url, data=body, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=1.0) as response:
                    if response.status == 200 and config_out.is_file():
                        self._private_keys = tuple(json.loads(config_out.read_text())["private_keys"])
                        return
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ChainUnavailableError(
                    f"anvil did not answer on {self.url} within {self.startup_timeout:g} s"
                )
            time.sleep(0.05)

    def _log_tail(self) -> str:
        if self._workdir is None:
            return ""
        try:
            return (Path(self._workdir.name) / "anvil.log").read_text(errors="replace")[-500:].strip()
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop anvil (SIGTERM, so it writes ``state``; SIGKILL if it does not exit in time)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
