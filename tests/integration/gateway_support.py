"""Shared parts of the gateway integration tests (NGINX, Envoy, Traefik contract, benchmark).

* :class:`EchoUpstream` -- the model server behind the gateway: an OpenAI-shaped
  ``/v1/chat/completions`` and ``/v1/models`` that record every request they receive (method,
  path, headers, body), so a test can prove what reached upstream and what did not.
* :func:`gateway_world` -- an issuer, an agent with a ModelAccessCredential for
  ``llama-3-70b``, and a policy file whose audience is the gateway's public origin.
* :class:`AuthService` -- a real ``vcgate serve`` process (HTTP and optionally gRPC) on free
  ports, waited for on ``/healthz`` and killed (process group) at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from tests.support import Party, make_party

POLICY = """\
version: 1
audience: {audience}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
rules:
  - name: health
    match: {{methods: [GET], paths: [/healthz]}}
    public: true
  - name: models
    match: {{methods: [GET], paths: [/v1/models]}}
    require: {{types: [ModelAccessCredential]}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
        X-Vcgate-Issuer: $issuer
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
        X-Vcgate-Issuer: $issuer
"""

# The same rules without the body-dependent model claim: what a headers-only gateway
# (NGINX auth_request, Traefik ForwardAuth) can decide.
HEADERS_ONLY_POLICY = POLICY.replace("      claims:\n        models: {{contains: $model}}\n", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, *, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers anything; fail with the process' output if it died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered:\n{out[-4000:]}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s ({last})")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> str:
    """SIGTERM the process group, then SIGKILL; return what it printed."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    return proc.stdout.read().decode(errors="replace") if proc.stdout else ""


# --- the upstream --------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


class EchoUpstream:
    """A threaded HTTP server standing in for the model server; records what it receives."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers: dict[str, list[str]] = {}
                for k, v in self.headers.items():
                    headers.setdefault(k.lower(), []).append(v)
                seen = Seen(self.command, self.path, headers, body)
                with outer._lock:
                    outer.seen.append(seen)
                path = self.path.split("?", 1)[0]
                if path == "/v1/chat/completions":
                    try:
                        model = json.loads(body or b"{}").get("model", "?")
                    except ValueError:
                        model = "?"
                    who = seen.header("x-vcgate-subject") or "anonymous"
                    payload: dict[str, Any] = {
                        "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": model,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": f"[{model} for {who}]"}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                elif path == "/v1/models":
                    payload = {"object": "list", "data": [{"id": "llama-3-70b", "object": "model", "owned_by": "x"}]}
                else:
                    payload = {"ok": True, "path": self.path}
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EchoUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()

    def last(self) -> Seen:
        with self._lock:
            assert self.seen, "the upstream received nothing"
            return self.seen[-1]


# --- the parties and the policy ---------------------------------------------------------------------


@dataclass
class GatewayWorld:
    issuer: Party
    agent: Party
    stranger: Party
    audience: str
    policy: Path
    vc: str
    untrusted_vc: str
    tmp: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def holder(self, *, credentials: list[str] | None = None) -> Any:
        from vcgate.client import Holder

        return Holder(self.agent.key, credentials=credentials if credentials is not None else [self.vc])


def gateway_world(tmp: Path, audience: str, *, headers_only: bool = False) -> GatewayWorld:
    from vcgate.credentials import issue_credential

    issuer, agent, stranger = make_party("EdDSA"), make_party("EdDSA"), make_party("EdDSA")
    policy = tmp / "policy.yaml"
    policy.write_text((HEADERS_ONLY_POLICY if headers_only else POLICY).format(audience=audience, issuer=issuer.did))
    now = time.time()
    common = {"subject": agent.did, "types": ["ModelAccessCredential"], "claims": {"models": ["llama-3-70b"]},
              "valid_from": now - 60, "valid_until": now + 3600}
    vc = issue_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, **common)
    untrusted = issue_credential(stranger.key, issuer=stranger.did, kid=stranger.kid, **common)
    return GatewayWorld(issuer, agent, stranger, audience, policy, vc, untrusted, tmp)


# --- the auth service process ------------------------------------------------------------------------


class AuthService:
    """``vcgate serve`` in a child process on free ports (HTTP, and gRPC when asked)."""

    def __init__(self, policy: Path, *, grpc: bool = False, args: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.port = free_port()
        self.grpc_port = free_port() if grpc else None
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "vcgate", "serve", "--policy", str(policy), "--port", str(self.port), *args]
        if self.grpc_port is not None:
            cmd += ["--grpc-port", str(self.grpc_port)]
        self.cmd = cmd
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.output = ""

    def __enter__(self) -> AuthService:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        try:
            wait_http(self.url + "/healthz", proc=self.proc)
        except BaseException:
            self.output = stop_process(self.proc)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.output = stop_process(self.proc)

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", timeout=5).text
