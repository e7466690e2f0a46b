"""The Kong plugin inside the real kong-pdk plugin server, driven the way Kong drives it.

Kong cannot run here (not on PyPI, Debian or npm), so this test plays Kong's side of the
plugin-server protocol (Kong's ``kong/runloop/plugin_servers/rpc/mp_rpc.lua``): it starts
``kong-python-pluginserver`` on ``plugins/kong`` as a subprocess, connects to its Unix socket,
sends ``plugin.StartInstance`` and ``plugin.HandleEvent`` as MessagePack-RPC requests, and
answers each PDK call the plugin makes (``kong.request.get_headers`` ...) with
``plugin.Step`` / ``plugin.StepMultiMap`` / ``plugin.StepError`` from a fake request, the way
Kong's bridge loop does (headers as a multi-map of lists, the body as msgpack binary).

An httpx transport turns that into HTTP, so the agent side is vcgate's real ``Holder``: the whole
session (401 challenge -> token endpoint -> DPoP-bound call) goes through the plugin server.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..support import make_party, require_real

try:
    import kong_pdk  # noqa: F401 -- the real plugin server the tests start
    import msgpack
except ImportError:  # pragma: no cover - depends on the environment
    msgpack = None


@pytest.fixture(autouse=True)
def _needs_kong_pdk():
    if msgpack is None:
        require_real("kong-pdk (the Kong Python plugin server)", "pip install -e '.[kong]'")

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "kong"
AUDIENCE = "http://kong.test:8000"

POLICY = """\
version: 1
audience: {audience}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
rules:
  - name: models
    match: {{methods: [GET], paths: [/v1/models]}}
    require: {{types: [ModelAccessCredential]}}
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
"""

# The typed step methods Kong uses for some PDK results (mp_rpc.lua, get_step_method).
_STEP_METHODS = {"kong.request.get_headers": "plugin.StepMultiMap"}


class RPCError(Exception):
    pass


@dataclass
class FakeRequest:
    """One request as Kong's PDK would report it, and what the plugin did to it."""

    method: str
    path: str
    query: str = ""
    scheme: str = "http"
    host: str = "kong.test"
    port: int = 8000
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes | None = b""
    fail: frozenset[str] = frozenset()
    upstream_ops: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def answer(self, method: str, args: list[Any]) -> Any:
        if method in self.fail:
            raise RPCError(f"{method} failed")
        table = {
            "kong.request.get_method": lambda: self.method,
            "kong.request.get_raw_path": lambda: self.path,
            "kong.request.get_raw_query": lambda: self.query,
            "kong.request.get_forwarded_scheme": lambda: self.scheme,
            "kong.request.get_forwarded_host": lambda: self.host,
            "kong.request.get_forwarded_port": lambda: self.port,
            "kong.request.get_headers": lambda: self.headers,
            "kong.request.get_raw_body": lambda: self.body,
        }
        if method in table:
            return table[method]()
        if method in ("kong.service.request.clear_header", "kong.service.request.set_header"):
            self.upstream_ops.append((method.rsplit(".", 1)[1], tuple(args)))
            return None
        raise AssertionError(f"the plugin called a PDK method this test does not expect: {method}")


@dataclass
class Outcome:
    proxied: bool
    status: int | None = None
    body: Any = None
    headers: dict[str, Any] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)


class FakeKong:
    """Kong's side of the plugin-server socket."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.msg_id = 0

    def call(self, method: str, arg: Any) -> Any:
        # As Kong does: one connection per call, request [0, id, method, [arg]].
        self.msg_id += 1
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(20)
            s.connect(self.socket_path)
            s.sendall(msgpack.packb([0, self.msg_id, method, [arg]]))
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    raise RPCError("the plugin server closed the connection")
                unpacker.feed(chunk)
                for kind, msg_id, error, result in unpacker:
                    assert kind == 1 and msg_id == self.msg_id
                    if error is not None:
                        raise RPCError(error)
                    return result

    def start_instance(self, name: str, config: dict[str, Any]) -> int:
        status = self.call("plugin.StartInstance", {"Name": name, "Config": json.dumps(config)})
        return status["Id"]

    def access(self, instance_id: int, request: FakeRequest) -> Outcome:
        step = self.call("plugin.HandleEvent", {"InstanceId": instance_id, "EventName": "access"})
        event_id = step["EventId"]
        calls: list[str] = []
        while True:
            data = step["Data"]
            if data == "ret":
                return Outcome(proxied=True, calls=calls)
            method, args = data["Method"], data["Args"] or []
            calls.append(method)
            if method == "kong.response.exit":
                status, body, headers = (list(args) + [None, None, None])[:3]
                return Outcome(proxied=False, status=status, body=json.loads(body) if body else None,
                               headers=headers or {}, calls=calls)
            try:
                value = request.answer(method, args)
            except RPCError as exc:
                step = self.call("plugin.StepError", {"EventId": event_id, "Data": str(exc)})
                continue
            step = self.call(_STEP_METHODS.get(method, "plugin.Step"), {"EventId": event_id, "Data": value})


def _server_command(socket_dir: str, style: str) -> list[str]:
    exe = Path(sys.executable).with_name("kong-python-pluginserver")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from kong_pdk.cli import start_server; start_server()"]
    cmd += ["-p", socket_dir, "-d", str(PLUGIN_DIR)]
    if style == "python":
        cmd.append("--no-lua-style")
    return cmd


@pytest.fixture
def world(tmp_path):
    from vcgate.credentials import issue_credential

    issuer, agent = make_party("EdDSA"), make_party("ES256")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(audience=AUDIENCE, issuer=issuer.did))
    now = time.time()
    vc = issue_credential(
        issuer.key, issuer=issuer.did, kid=issuer.kid, subject=agent.did, types=["ModelAccessCredential"],
        claims={"models": ["llama-3-70b"]}, valid_from=now - 60, valid_until=now + 3600,
    )
    return {"agent": agent, "vc": vc, "policy": policy}


@pytest.fixture(params=["lua", "python"], ids=["lua-style", "no-lua-style"])
def kong(request, world, tmp_path):
    """The real plugin server on a Unix socket, an instance of vcgate_kong started in it."""
    socket_dir = tempfile.mkdtemp(prefix="vck")  # short: AF_UNIX paths are limited to ~107 bytes
    log_path = tmp_path / "pluginserver.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCGATE_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(_server_command(socket_dir, request.param), stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=tmp_path)
    sock = os.path.join(socket_dir, "python_pluginserver.sock")
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the plugin server did not start:\n" + log_path.read_text(errors="replace"))
            time.sleep(0.05)
        fake = FakeKong(sock)
        instance = fake.start_instance("vcgate_kong", {"policy": str(world["policy"]), "key_file": None,
                                                       "redis_url": None, "audit_log": None})
        yield fake, instance, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(socket_dir, ignore_errors=True)


def _transport(fake: FakeKong, instance: int, seen: list[FakeRequest]):
    """HTTP through the plugin: an exit becomes the response, a proxied request reaches a fake
    upstream that echoes the headers Kong would forward after the plugin's changes."""
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.multi_items():
            headers.setdefault(name.lower(), []).append(value)
        req = FakeRequest(method=request.method, path=request.url.raw_path.decode().split("?", 1)[0],
                          query=request.url.query.decode(), scheme=request.url.scheme, host=request.url.host,
                          port=request.url.port or 80, headers=headers, body=request.read())
        seen.append(req)
        out = fake.access(instance, req)
        if not out.proxied:
            pairs = [(k, v) for k, vs in out.headers.items() for v in (vs if isinstance(vs, list) else [vs])]
            return httpx.Response(out.status, headers=pairs, content=json.dumps(out.body).encode())
        forwarded = {k: v for k, v in headers.items()}
        for op, args in req.upstream_ops:
            if op == "clear_header":
                forwarded.pop(args[0].lower(), None)
            else:
                forwarded[args[0].lower()] = [args[1]]
        return httpx.Response(200, json={"upstream_headers": forwarded})

    return httpx.MockTransport(handle)


def test_a_full_session_through_the_plugin_server(world, kong):
    import httpx

    from vcgate.client import Holder

    fake, instance, _log = kong
    seen: list[FakeRequest] = []
    holder = Holder(world["agent"].key, credentials=[world["vc"]])
    with httpx.Client(auth=holder.httpx_auth(), transport=_transport(fake, instance, seen), timeout=20) as http:
        body = {"model": "llama-3-70b", "messages": [{"role": "user", "content": "hi"}]}
        r = http.post(AUDIENCE + "/v1/chat/completions", json=body, headers={"X-Vcgate-Subject": "did:example:admin"})
        assert r.status_code == 200, r.text
        forwarded = r.json()["upstream_headers"]
        # Challenge, token endpoint (answered by the plugin), then the DPoP call proxied.
        assert [q.path for q in seen] == ["/v1/chat/completions", "/.well-known/vcgate/token", "/v1/chat/completions"]
        assert seen[-1].headers["authorization"][0].startswith("DPoP ")
        # The client's grant header was cleared before the gate's own was set.
        assert seen[-1].upstream_ops == [("clear_header", ("x-vcgate-subject",)),
                                         ("set_header", ("X-Vcgate-Subject", str(world["agent"].did)))]
        assert forwarded["x-vcgate-subject"] == [str(world["agent"].did)]

        again = http.post(AUDIENCE + "/v1/chat/completions", json=body)
        assert again.status_code == 200 and len(seen) == 4  # the token is reused: no new challenge

        denied = http.post(AUDIENCE + "/v1/chat/completions", json={**body, "model": "gpt-4o"})
        assert denied.status_code == 403
        assert denied.json()["error"] == "claim_mismatch"
        assert "www-authenticate" not in denied.headers


def test_without_a_credential_the_challenge(world, kong):
    fake, instance, _log = kong
    out = fake.access(instance, FakeRequest(method="GET", path="/v1/models"))
    assert not out.proxied and out.status == 401
    assert out.body["error"] == "credential_required" and out.body["nonce"]
    challenges = out.headers["WWW-Authenticate"]
    assert isinstance(challenges, list) and len(challenges) == 2
    assert challenges[0].startswith("VP ") and f'realm="{AUDIENCE}"' in challenges[0]
    assert challenges[1].startswith("DPoP ")
    # Headers-only route: the body is not asked for.
    assert "kong.request.get_raw_body" not in out.calls


def test_the_model_is_read_from_the_body_only_where_the_policy_needs_it(world, kong):
    fake, instance, _log = kong
    out = fake.access(instance, FakeRequest(method="POST", path="/v1/chat/completions",
                                            headers={"content-type": ["application/json"]},
                                            body=b'{"model": "llama-3-70b"}'))
    assert out.status == 401 and "kong.request.get_raw_body" in out.calls
    # A body Kong could not hand over (spooled to disk past client_body_buffer_size) is 413.
    out = fake.access(instance, FakeRequest(method="POST", path="/v1/chat/completions",
                                            headers={"content-type": ["application/json"]}, body=None))
    assert out.status == 413 and out.body["error"] == "too_large"


def test_metadata_is_answered_by_the_plugin(world, kong):
    fake, instance, _log = kong
    out = fake.access(instance, FakeRequest(method="GET", path="/.well-known/oauth-protected-resource"))
    assert out.status == 200
    assert out.body["resource"] == AUDIENCE
    assert out.body["vcgate_token_endpoint"] == AUDIENCE + "/.well-known/vcgate/token"


def test_a_failing_pdk_call_is_refused_not_hung(world, kong):
    fake, instance, _log = kong
    out = fake.access(instance, FakeRequest(method="GET", path="/v1/models", fail=frozenset({"kong.request.get_headers"})))
    assert out.status == 503 and out.body["error"] == "internal_error"
    # The server still serves the next request.
    assert fake.access(instance, FakeRequest(method="GET", path="/v1/models")).status == 401


def test_too_many_headers_are_refused(world, kong):
    fake, instance, _log = kong
    headers = {f"x-h{i}": ["v"] for i in range(1000)}
    out = fake.access(instance, FakeRequest(method="GET", path="/v1/models", headers=headers))
    assert out.status == 400 and out.body["error"] == "request_invalid"


def test_instances_with_the_same_settings_share_one_gate(world, kong):
    """A token issued through one plugin entry's instance works at another's (one gate)."""
    import httpx

    from vcgate.client import Holder

    fake, first, _log = kong
    second = fake.start_instance("vcgate_kong", {"policy": str(world["policy"])})
    assert second != first
    routes = {"/.well-known/vcgate/token": first}
    seen: list[FakeRequest] = []

    def route(request: httpx.Request) -> httpx.Response:
        instance = routes.get(request.url.path, second)
        return _transport(fake, instance, seen).handle_request(request)

    holder = Holder(world["agent"].key, credentials=[world["vc"]])
    with httpx.Client(auth=holder.httpx_auth(), transport=httpx.MockTransport(route), timeout=20) as http:
        r = http.get(AUDIENCE + "/v1/models")
    assert r.status_code == 200, r.text


def test_plugin_info_as_kong_queries_it(world, tmp_path):
    cmd = _server_command(str(tmp_path), "lua") + ["--dump-all-plugins"]
    out = subprocess.run(cmd, capture_output=True, timeout=60, cwd=tmp_path, check=True)
    (info,) = json.loads(out.stdout)
    assert info["Name"] == "vcgate_kong"
    assert info["Phases"] == ["access"]
    assert info["Priority"] == 1400
    fields = [next(iter(f)) for f in info["Schema"]["fields"][0]["config"]["fields"]]
    assert fields == ["policy", "key_file", "redis_url", "audit_log"]


def test_the_plugin_refuses_multiprocessing_mode(world):
    sys.path.insert(0, str(PLUGIN_DIR))
    try:
        import vcgate_kong
    finally:
        sys.path.remove(str(PLUGIN_DIR))
    plugin = vcgate_kong.Plugin({"policy": str(world["policy"])})
    try:
        with pytest.raises(TypeError, match="multiprocessing"):
            pickle.dumps(plugin)
    finally:
        vcgate_kong.Plugin.close_all()


def test_the_shipped_kong_configuration_names_the_plugin():
    import yaml

    config = yaml.safe_load((PLUGIN_DIR / "kong.yml").read_text())
    assert [p["name"] for p in config["plugins"]] == ["vcgate_kong"]
    from vcgate.integrations.kong import SCHEMA

    fields = {next(iter(f)) for f in SCHEMA}
    assert set(config["plugins"][0]["config"]) <= fields
    conf = (PLUGIN_DIR / "kong.conf").read_text()
    assert "plugins = bundled,vcgate_kong" in conf and "--dump-all-plugins" in conf
