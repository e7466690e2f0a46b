"""Property: whatever the body, Content-Type, path and headers, every adapter answers without a
5xx, decides on the model the upstream will read, and lets no client ``x-vcgate-*`` spelling
through."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .adapters import ALL, World

IN_PROCESS = ["asgi", "wsgi", "envoy_grpc", "litellm"]

models = st.sampled_from(["llama-3", "gpt-4o", "gpt-4-secret-1", "", "Gpt-4o", "gpt-4o\u0000"]) | st.text(max_size=12)
json_bodies = st.builds(
    lambda model, extra, dup: (
        json.dumps({"model": model, **extra}).encode() if not dup
        else ('{"model": %s, "model": "gpt-4o"}' % json.dumps(model)).encode()
    ),
    models, st.dictionaries(st.sampled_from(["messages", "stream", "x"]), st.integers() | st.text(max_size=5), max_size=2),
    st.booleans(),
)
bodies = (
    json_bodies
    | st.binary(max_size=64)
    | st.builds(lambda n: b"[" * n + b"]" * n, st.integers(1, 3000))
    | st.builds(lambda m: ('{"model": "%s"}' % m).encode("utf-16"), models)
    | st.just(b"")
)
content_types = st.sampled_from([None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/json; charset=utf-16", ""])
segment = st.sampled_from(["v1", "chat", "completions", "admin", "models", "users", ";x=1", "%3B", "%2F", "%2e%2e",
                           "..", "", "%23", "%3F", "%41", "a;b"])
paths = st.sampled_from(["/v1/chat/completions", "/v1/models", "/v1/admin/users"]) | st.lists(segment, min_size=1,
                                                                                              max_size=5).map(
    lambda parts: "/" + "/".join(parts))
spoof_names = st.sampled_from(["X-Vcgate-Subject", "x_vcgate_subject", "X_VCGATE_MODEL", "x-Vcgate_Model",
                               "x-vcgate-model", "X-VCGATE-ROLE"])


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.mark.parametrize("adapter", IN_PROCESS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["POST", "GET"]), path=paths, ctype=content_types, body=bodies,
       spoofs=st.lists(spoof_names, max_size=3))
def test_no_5xx_same_model_no_spoofed_header(world, adapter, method, path, ctype, body, spoofs):
    headers = [world.auth()] + [(name, "forged") for name in spoofs]
    if ctype is not None:
        headers.append(("Content-Type", ctype))
    out = ALL[adapter](world, method, path, headers, body)
    assert out.status < 500, out
    if out.upstream is None:
        assert out.code, out  # every refusal is coded
        return
    upstream = dict(out.upstream)
    assert not any(v == "forged" for k, v in out.upstream if k.replace("_", "-").lower().startswith("x-vcgate-")), out
    granted = upstream.get("x-vcgate-model")
    if granted is not None:
        assert granted == out.model, out  # the gate decided on the model the upstream reads
    if method == "POST" and path == "/v1/chat/completions":
        # Model rules apply here: a forwarded call must have been decided on its model.
        assert granted == out.model, out
