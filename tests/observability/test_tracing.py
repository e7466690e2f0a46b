"""OpenTelemetry tracing of the gate (vcgate.tracing): off by default and free when off, one
switch (VCGATE_OTEL) for every adapter, spans with the decision's outcome and nothing secret.

The span tests use the SDK's InMemorySpanExporter through a tracer given to the gate (the
global provider is never set in this process); the ``vcgate serve`` test exports over real
OTLP/HTTP to a receiver on 127.0.0.1, configured only by environment variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.middleware.helpers import make_world
from vcgate.gate import Gate, RequestView
from vcgate.session import create_proof
from vcgate.tracing import ENV_VAR, NO_TRACER, OtelTracer, configure_sdk, tracer_from_env

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="pip install -e '.[dev]' (the otel extra)")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
AUD = "https://gw.example"
CHAT = "/v1/chat/completions"
BODY = b'{"model": "gpt-4o", "messages": []}'


class Traced:
    """A gate whose tracer exports to memory."""

    def __init__(self, **gate_args):
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.world = make_world(AUD, tracer=OtelTracer(provider.get_tracer("test")), **gate_args)
        self.gate: Gate = self.world.gate

    def call(self, method: str, path: str, *, headers=(), body: bytes | None = None):
        if not any(name == "content-type" for name, _ in headers):
            headers = [("content-type", "application/json"), *headers]
        view = RequestView(method=method, path=path, host="gw.example", scheme="https", headers=headers)
        self.exporter.clear()
        result = self.gate.run(self.gate.plan(view), view, body)
        return result, self.exporter.get_finished_spans()


def tree(spans) -> tuple[dict, list[str]]:
    """The root span's attributes and its children's names, in order; every span under it."""
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1 and roots[0].name == "vcgate.check", [s.name for s in spans]
    root = roots[0]
    for s in spans:
        if s is not root:
            assert s.parent.span_id == root.context.span_id, f"{s.name} is not a child of vcgate.check"
            assert s.context.trace_id == root.context.trace_id
    children = sorted((s for s in spans if s is not root), key=lambda s: s.start_time)
    return dict(root.attributes), [s.name for s in children]


def all_attribute_values(spans) -> str:
    return json.dumps([{k: str(v) for k, v in (s.attributes or {}).items()} for s in spans])


@pytest.fixture
def traced():
    return Traced()


def test_a_challenge_is_parse_and_policy_under_check(traced):
    result, spans = traced.call("POST", CHAT, body=BODY)
    assert result.status == 401
    attrs, children = tree(spans)
    assert children == ["vcgate.parse", "vcgate.policy"]
    assert attrs == {"vcgate.step": "check", "vcgate.decision": "deny", "vcgate.status_code": 401,
                     "vcgate.code": "credential_required", "vcgate.rule": "chat"}


def test_a_direct_call_has_verify_status_and_policy_spans(traced):
    challenge, _ = traced.call("POST", CHAT, body=BODY)
    nonce = json.loads(challenge.body)["nonce"]
    cred = traced.world.credential()
    vp = traced.world.presentation(nonce, creds=[cred])
    result, spans = traced.call("POST", CHAT, headers=[("authorization", f"VP {vp}")], body=BODY)
    assert result.forward, result.body
    attrs, children = tree(spans)
    assert children == ["vcgate.parse", "vcgate.policy", "vcgate.verify", "vcgate.status", "vcgate.policy"]
    assert attrs == {"vcgate.step": "check", "vcgate.decision": "allow", "vcgate.status_code": 200,
                     "vcgate.mode": "direct", "vcgate.rule": "chat"}
    # Never a token, a presentation, a DID, a nonce or a claim value.
    text = all_attribute_values(spans)
    for secret in (vp, cred, nonce, traced.world.holder.did, traced.world.issuer.did, "gpt-4o"):
        assert secret not in text


def test_a_revoked_credential_is_refused_with_its_code_on_the_span(traced):
    challenge, _ = traced.call("POST", CHAT, body=BODY)
    cred = traced.world.credential(cid="urn:uuid:revoked-1")
    traced.world.status.revoked.add("urn:uuid:revoked-1")
    vp = traced.world.presentation(json.loads(challenge.body)["nonce"], creds=[cred])
    result, spans = traced.call("POST", CHAT, headers=[("authorization", f"VP {vp}")], body=BODY)
    attrs, children = tree(spans)
    assert not result.forward and attrs["vcgate.decision"] == "deny"
    assert attrs["vcgate.code"] == json.loads(result.body)["error"] and "revoked" in attrs["vcgate.code"]
    assert "vcgate.status" in children


def test_a_bad_signature_ends_in_verify_with_no_status_or_policy_after_it(traced):
    challenge, _ = traced.call("POST", CHAT, body=BODY)
    vp = traced.world.presentation(json.loads(challenge.body)["nonce"])
    forged = vp[:-4] + ("AAAA" if not vp.endswith("AAAA") else "BBBB")
    result, spans = traced.call("POST", CHAT, headers=[("authorization", f"VP {forged}")], body=BODY)
    attrs, children = tree(spans)
    assert result.status == 401 and attrs["vcgate.code"] == json.loads(result.body)["error"]
    assert children == ["vcgate.parse", "vcgate.policy", "vcgate.verify"]


def test_token_endpoint_and_session_call_are_traced_with_audit(tmp_path):
    from vcgate.audit import AuditLog

    with AuditLog(tmp_path / "audit.jsonl", fsync=False) as log:
        traced = Traced(audit=log)
        challenge, _ = traced.call("POST", CHAT, body=BODY)
        vp = traced.world.presentation(json.loads(challenge.body)["nonce"])
        proof = create_proof(traced.world.holder.key, htm="POST", htu=AUD + "/.well-known/vcgate/token",
                             clock=traced.world.clock)
        from urllib.parse import urlencode

        token, spans = traced.call("POST", "/.well-known/vcgate/token",
                                   headers=[("content-type", "application/x-www-form-urlencoded"), ("dpop", proof)],
                                   body=urlencode({"vp_token": vp}).encode())
        assert token.status == 200, token.body
        attrs, children = tree(spans)
        assert attrs["vcgate.step"] == "token" and attrs["vcgate.decision"] == "allow" and attrs["vcgate.mode"] == "token"
        assert children == ["vcgate.parse", "vcgate.verify", "vcgate.status", "vcgate.policy", "vcgate.audit"]
        access = json.loads(token.body)["access_token"]
        assert access not in all_attribute_values(spans)

        proof = create_proof(traced.world.holder.key, htm="POST", htu=AUD + CHAT, access_token=access,
                             clock=traced.world.clock)
        result, spans = traced.call("POST", CHAT, headers=[("authorization", f"DPoP {access}"), ("dpop", proof)],
                                    body=BODY)
        assert result.forward
        attrs, children = tree(spans)
        assert attrs["vcgate.mode"] == "session"
        assert children == ["vcgate.parse", "vcgate.policy", "vcgate.verify", "vcgate.status", "vcgate.policy",
                            "vcgate.audit"]


def test_gate_check_is_traced_like_run(traced):
    view = RequestView(method="GET", path="/healthz", host="gw.example", scheme="https")
    traced.exporter.clear()
    assert traced.gate.check(view).allow
    attrs, children = tree(traced.exporter.get_finished_spans())
    assert attrs["vcgate.mode"] == "public" and children == ["vcgate.policy"]


# --- the switch ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "0", "off", "false", "no"])
def test_tracing_is_off_unless_asked(value):
    assert tracer_from_env({ENV_VAR: value}) is NO_TRACER
    assert configure_sdk({ENV_VAR: value}) is None


@pytest.mark.parametrize("value", ["1", "true", "on", "YES"])
def test_vcgate_otel_turns_it_on_for_every_gate(value, monkeypatch):
    assert isinstance(tracer_from_env({ENV_VAR: value}), OtelTracer)
    monkeypatch.setenv(ENV_VAR, value)
    assert isinstance(make_world(AUD).gate.tracer, OtelTracer)  # Gate(...) reads it: library, middleware, serve


@pytest.mark.parametrize("env, names", [
    pytest.param({ENV_VAR: "maybe"}, ENV_VAR, id="bad-switch"),
    pytest.param({ENV_VAR: "1", "OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER", id="unknown-exporter"),
    pytest.param({ENV_VAR: "1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL", id="grpc"),
])
def test_bad_settings_are_refused_naming_the_variable(env, names):
    with pytest.raises(ValueError, match=names):
        configure_sdk(env)


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VCGATE_", "OTEL_"))}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


_DECIDE = """
import sys
from tests.middleware.helpers import make_world
from vcgate.gate import RequestView
import vcgate.middleware.asgi, vcgate.middleware.wsgi, vcgate.server.authservice
gate = make_world("https://gw.example").gate
gate.check(RequestView(method="GET", path="/v1/models", host="gw.example"))
print(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")[:3])
"""


def test_off_means_opentelemetry_is_never_imported():
    r = _run_python(_DECIDE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_on_imports_it():  # the test above would pass vacuously if the probe could not see it
    r = _run_python(_DECIDE, VCGATE_OTEL="1")
    assert r.returncode == 0, r.stderr
    assert "opentelemetry" in r.stdout


# --- vcgate serve exports over OTLP/HTTP, set up by environment variables only -----------------------


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append((self.path, self.headers.get("Content-Type"), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
def test_vcgate_serve_exports_spans_over_otlp(tmp_path):
    pytest.importorskip("flask", reason="pip install -e '.[dev]'")
    otlp = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2",
                               reason="pip install -e '.[dev]' (the otel extra)")
    import time

    import requests

    from tests.integration.gateway_support import AuthService, gateway_world

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    receiver.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}/v1/traces"
    world = gateway_world(tmp_path, AUD)
    env = {"VCGATE_OTEL": "1", "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
           "OTEL_SERVICE_NAME": "vcgate-test", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    try:
        with AuthService(world.policy, args=("--workers", "1"), env=env) as service:
            headers = {"X-Original-Method": "GET", "X-Original-URI": "/v1/models", "Host": "gw.example"}
            assert requests.get(service.url + "/nginx/auth", headers=headers, timeout=10).status_code == 401
            deadline = time.monotonic() + 30
            while not receiver.received and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        receiver.shutdown()
    assert receiver.received, f"no OTLP export reached the receiver; vcgate serve said: {service.output[-2000:]}"
    path, content_type, body = receiver.received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    request = otlp.ExportTraceServiceRequest.FromString(body)
    resource = request.resource_spans[0].resource
    assert {"key": "service.name", "value": "vcgate-test"} in [
        {"key": a.key, "value": a.value.string_value} for a in resource.attributes]
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    check = next(s for s in spans if s.name == "vcgate.check")
    attrs = {a.key: (a.value.string_value or a.value.int_value) for a in check.attributes}
    assert attrs["vcgate.decision"] == "deny" and attrs["vcgate.code"] == "credential_required"
    assert attrs["vcgate.status_code"] == 401
    assert any(s.name == "vcgate.policy" and s.parent_span_id == check.span_id for s in spans)
