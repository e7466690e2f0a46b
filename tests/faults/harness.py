"""Parts of the fault-injection suite: a JSON-RPC fault proxy, a chain world, a prober.

* :class:`RPCFaultProxy` -- an HTTP proxy on 127.0.0.1 in front of a real anvil that can refuse
  connections (its port closed), reset them, hang, trickle, answer garbage or a huge body, lie
  about the chain id, or forward to another node (a replaced chain).
* :class:`ChainWorld` -- an anvil with the ERC-5539 registry, an issuer (ES256K: its Ethereum
  address is its namespace), an agent, credentials with registry status entries, a policy
  that requires status.
* :class:`Prober` -- presents a credential to a running ``vcgate serve`` (NGINX auth_request
  dialect, direct mode: challenge, then a fresh presentation) and returns (HTTP status, code).

Every wait here is bounded; the tests state their bounds.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

MODES = ("pass", "refuse", "reset", "hang", "trickle", "garbage", "huge", "wrong_chain_id")


class RPCFaultProxy:
    """``mode`` decides what the next request meets; ``upstream`` is the node it forwards to."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.released = threading.Event()  # ends hangs and trickles when the mode changes
        self.requests = 0
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self._listen()

    # --- control ---------------------------------------------------------------------------------

    def set(self, mode: str, upstream: str | None = None) -> None:
        assert mode in MODES, mode
        if upstream is not None:
            self.upstream = upstream
        if mode == "refuse" and self._server is not None:
            self._close()  # connections are refused: nothing listens on the port
        elif mode != "refuse" and self._server is None:
            self._listen()
        self.released.set()
        self.released = threading.Event()
        self.mode = mode

    def close(self) -> None:
        self.released.set()
        if self._server is not None:
            self._close()

    # --- serving ---------------------------------------------------------------------------------

    def _listen(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                proxy.requests += 1
                mode, released = proxy.mode, proxy.released
                if mode in ("reset", "refuse"):  # refuse: a kept-alive connection dies too
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                if mode == "hang":
                    released.wait(30)
                    self.close_connection = True
                    return
                try:
                    with urllib.request.urlopen(
                        urllib.request.Request(proxy.upstream, data=body, headers={"Content-Type": "application/json"}),
                        timeout=5,
                    ) as r:
                        data = r.read()
                except OSError:
                    self.close_connection = True
                    return
                if mode == "wrong_chain_id" and b'"eth_chainId"' in body:
                    data = json.dumps({"jsonrpc": "2.0", "id": json.loads(body)["id"], "result": "0x3e7"}).encode()
                if mode == "garbage":
                    data = b'{"jsonrpc":"2.0","id":' + os.urandom(24).hex().encode() + b"}}\x00not json"
                if mode == "huge":
                    chunk = b" " * (1 << 20)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(96 * len(chunk) + len(data)))
                    self.end_headers()
                    try:
                        for _ in range(96):
                            self.wfile.write(chunk)
                        self.wfile.write(data)
                    except OSError:
                        self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    if mode == "trickle":
                        for i in range(len(data)):
                            if released.wait(0.2):
                                self.wfile.write(data[i:])
                                break
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                    else:
                        self.wfile.write(data)
                except OSError:
                    self.close_connection = True

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def _close(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._server = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpc(url: str, method: str, *params: Any) -> Any:
    """One JSON-RPC call straight to a node (anvil's evm_snapshot, evm_revert, evm_mine...)."""
    r = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=10)
    doc = r.json()
    assert "error" not in doc, doc
    return doc["result"]


# --- the world ---------------------------------------------------------------------------------------

AUDIENCE = "http://127.0.0.1:9"
ORIGINAL = {"X-Original-Method": "GET", "X-Original-URI": "/v1/models", "Host": "127.0.0.1:9"}


@dataclass
class ChainWorld:
    """An issuer with a registry on ``chain_url``, an agent, and a policy requiring status."""

    chain_url: str
    tmp: Path
    credentials: dict[str, tuple[str, bytes, bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from tests.support import make_party
        from vcgate.chain import RegistryClient, connect, deploy_registry, eth_account_from_key
        from vcgate.did import did_key_from_public_key
        from vcgate.keys import PrivateKey

        self.chain = connect(self.chain_url, timeout=5)
        self.issuer_key = PrivateKey.generate("ES256K")
        self.issuer = eth_account_from_key(self.issuer_key)
        self.chain.fund(self.issuer.address, 10**18)
        self.registry = RegistryClient(self.chain, deploy_registry(self.chain, self.issuer))
        self.did = did_key_from_public_key(self.issuer_key.public_key)
        self.agent = make_party("EdDSA")
        self.policy = self.tmp / "policy.yaml"
        self.policy.write_text(
            f"version: 1\naudience: {AUDIENCE}\ntrusted_issuers:\n  - did: {self.did}\n"
            "defaults:\n  status: required\n"
            "rules:\n  - name: models\n    match: {methods: [GET], paths: [/v1/models]}\n"
            "    require: {types: [ModelAccessCredential]}\n"
        )

    def issue(self, name: str) -> str:
        from vcgate.chain import eth_address
        from vcgate.credentials import issue_credential
        from vcgate.status.registry import status_entry

        lst, key = os.urandom(32), os.urandom(32)
        now = time.time()
        entry = status_entry(
            self.registry.address, self.chain.chain_id(), eth_address(self.issuer_key.public_key), lst, key
        )
        vc = issue_credential(
            self.issuer_key,
            issuer=self.did,
            kid=f"{self.did}#{self.did.method_specific_id}",
            subject=self.agent.did,
            types=["ModelAccessCredential"],
            claims={"models": ["llama-3-70b"]},
            valid_from=now - 60,
            valid_until=now + 3600,
            status=entry,
        )
        self.credentials[name] = (vc, lst, key)
        return vc

    def revoke(self, name: str, revoked: bool = True) -> None:
        _vc, lst, key = self.credentials[name]
        self.registry.change_status(self.issuer, revoked=revoked, revocation_list=lst, revocation_key=key)

    def serve_args(self, rpc_url: str, *extra: str) -> tuple[str, ...]:
        return ("--rpc", rpc_url, "--registry", self.registry.address, *extra)


class Prober:
    """Asks a running auth service about one credential; (HTTP status, vcgate error code)."""

    def __init__(self, world: ChainWorld, service_url: str) -> None:
        self.world, self.url = world, service_url
        self.session = requests.Session()

    def __call__(self, name: str) -> tuple[int, str | None]:
        from vcgate.credentials import create_presentation

        agent = self.world.agent
        try:
            challenge = self.session.get(self.url + "/nginx/auth", headers=ORIGINAL, timeout=5)
            if challenge.status_code != 401:
                return challenge.status_code, challenge.headers.get("X-Vcgate-Error")
            vp = create_presentation(
                agent.key, holder=agent.did, kid=agent.kid, credentials=[self.world.credentials[name][0]],
                audience=AUDIENCE, nonce=challenge.json()["nonce"], issued_at=time.time(),
            )
            r = self.session.get(self.url + "/nginx/auth", headers={**ORIGINAL, "Authorization": f"VP {vp}"}, timeout=5)
        except requests.RequestException as exc:
            return 0, type(exc).__name__
        # NGINX passes on only 401/403: the real status of other refusals is in X-Vcgate-Status.
        return int(r.headers.get("X-Vcgate-Status", r.status_code)), r.headers.get("X-Vcgate-Error")

    # --- what the fault tests assert about the service ----------------------------------------------

    def never_accepts_revoked(self) -> None:
        """The invariant checked on every round: the revoked credential is refused (or unanswered)."""
        status, code = self("revoked")
        assert status != 200, "a revoked credential was accepted"
        assert code in ("revoked", "status_unavailable", "ConnectionError"), (status, code)

    def healthy(self) -> bool:
        return self("good") == (200, None) and self("revoked") == (401, "revoked") and self.ready() == 200

    def refusing(self) -> bool:
        """Closed: the good credential refused status_unavailable, /readyz 503."""
        return self("good") == (503, "status_unavailable") and self.ready() == 503

    def state(self) -> object:
        return self("good"), self("revoked"), requests.get(self.url + "/readyz", timeout=5).text

    def ready(self) -> int:
        try:
            return requests.get(self.url + "/readyz", timeout=5).status_code
        except requests.RequestException:
            return 0


def until(what: str, predicate: Callable[[], bool], bound: float, *, every: float = 0.05,
          invariant: Callable[[], None] | None = None, show: Callable[[], object] | None = None) -> float:
    """Seconds until ``predicate`` holds, checking ``invariant`` on every round; fails past ``bound``."""
    t0 = time.monotonic()
    while True:
        if invariant is not None:
            invariant()
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > bound:
            raise AssertionError(f"{what}: not within {bound} s" + (f" (last: {show()})" if show else ""))
        time.sleep(every)


def serve(policy: Path, args: tuple[str, ...], env: dict[str, str] | None = None) -> Any:
    """A ``vcgate serve`` process (tests.integration.gateway_support.AuthService) given up to
    60 s to start: the machine may be busy, and the mirror's first sync is part of the start."""
    from tests.integration.gateway_support import AuthService, stop_process, wait_http

    class SlowStart(AuthService):
        def __enter__(self) -> AuthService:
            import subprocess

            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
            try:
                wait_http(self.url + "/healthz", proc=self.proc, timeout=60)
            except BaseException:
                self.output = stop_process(self.proc)
                raise
            return self

    return SlowStart(policy, args=args, env=env)
