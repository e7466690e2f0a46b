"""The gate, through ``Gate.check`` / ``Gate.token_endpoint`` with framework-neutral views."""

from __future__ import annotations

import json
import logging
import re

import pytest

from tests.middleware.helpers import World, make_world
from tests.support import NOW, make_party
from vcgate.credentials.dcql import challenge_param, dcql_query
from vcgate.gate import Decision, Gate, RequestView
from vcgate.session import create_proof
from vcgate.stores import MemorySessionStore

AUD = "https://gw.example"
CHAT = "/v1/chat/completions"
CHAT_DCQL = dcql_query(vct_values=["ModelAccessCredential"], claims=[["models"]])


@pytest.fixture
def w() -> World:
    return make_world(AUD)


def view(method: str = "POST", path: str = CHAT, *, model: str | None = "gpt-4o", headers=(), host="gw.example",
         scheme="https") -> RequestView:
    return RequestView(method=method, path=path, host=host, scheme=scheme, headers=headers, model=model,
                       body_available=model is not None)


def nonce(w: World) -> str:
    d = w.gate.check(view())
    assert d.status == 401
    return d.body["nonce"]


def direct(w: World, vp: str, **kw) -> Decision:
    return w.gate.check(view(headers=[("Authorization", f"VP {vp}")], **kw))


def get_token(w: World, key=None) -> tuple[int, list, dict]:
    vp = w.presentation(nonce(w))
    url = AUD + "/.well-known/vcgate/token"
    proof = create_proof(key or w.holder.key, htm="POST", htu=url, clock=w.clock)
    return w.gate.token_endpoint(view(path="/.well-known/vcgate/token", headers=[("DPoP", proof)]), {"vp_token": vp})


def session_call(w: World, token: str, *, key=None, proof: str | None = None, path: str = CHAT, model="gpt-4o") -> Decision:
    proof = proof or create_proof(key or w.holder.key, htm="POST", htu=AUD + path, access_token=token, clock=w.clock)
    return w.gate.check(view(path=path, model=model, headers=[("Authorization", f"DPoP {token}"), ("DPoP", proof)]))


# --- challenge ---------------------------------------------------------------------------------


def test_challenge_shape(w):
    d = w.gate.check(view())
    assert (d.allow, d.status, d.code) == (False, 401, "credential_required")
    challenges = [v for k, v in d.headers if k == "WWW-Authenticate"]
    vp, dpop = challenges
    n = d.body["nonce"]
    assert len(n) >= 22 and re.fullmatch(r"[A-Za-z0-9_\-.]+", n)
    assert vp == (f'VP realm="{AUD}", nonce="{n}", token_endpoint="{AUD}/.well-known/vcgate/token", '
                  'algs="EdDSA Ed25519 ES256 ES256K ES384 ES512", dcql="' + challenge_param(CHAT_DCQL) + '"')
    assert d.body["dcql_query"] == CHAT_DCQL  # what the chat rule needs, for SD-JWT VC holders
    assert dpop == 'DPoP algs="EdDSA Ed25519 ES256 ES256K ES384 ES512"'
    assert ("Cache-Control", "no-store") in d.headers
    assert d.body["token_endpoint"] == AUD + "/.well-known/vcgate/token"
    assert d.body["error"] == "credential_required" and d.body["message"]
    assert w.gate.check(view()).body["nonce"] != n  # fresh each time


def test_public_route_and_default_deny(w):
    d = w.gate.check(view("GET", "/healthz", model=None))
    assert d.allow and d.mode == "public"
    d = w.gate.check(view("GET", "/nowhere", model=None))
    assert (d.status, d.code) == (403, "no_matching_rule")
    assert not any(k == "WWW-Authenticate" for k, _ in d.headers)


def test_metadata(w):
    m = w.gate.metadata()
    assert m == {
        "resource": AUD,
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["EdDSA", "Ed25519", "ES256", "ES256K", "ES384", "ES512"],
        "dpop_bound_access_tokens_required": True,
        "vcgate_token_endpoint": AUD + "/.well-known/vcgate/token",
        "vcgate_presentation_formats": ["vp+jwt", "jwt_vp", "dc+sd-jwt"],
    }
    json.dumps(m)


# --- direct mode --------------------------------------------------------------------------------


def test_direct_allow(w):
    d = direct(w, w.presentation(nonce(w)))
    assert d.allow and d.status == 200 and d.mode == "direct"
    assert d.rule == "chat" and d.subject == w.holder.did and d.holder == w.holder.did
    assert dict(d.grant_headers) == {"X-Vcgate-Subject": w.holder.did, "X-Vcgate-Issuer": w.issuer.did}
    assert d.scopes == ("chat",)


def _challenge_error(d: Decision) -> str:
    return next(v for k, v in d.headers if k == "WWW-Authenticate" and v.startswith("VP "))


@pytest.mark.parametrize(
    "case, status, code",
    [
        pytest.param("replayed", 401, "nonce_mismatch", id="nonce-reused"),
        pytest.param("unknown_nonce", 401, "nonce_mismatch", id="nonce-never-issued"),
        pytest.param("no_nonce", 401, "nonce_mismatch", id="nonce-missing"),
        pytest.param("audience", 401, "audience_mismatch", id="wrong-audience"),
        pytest.param("untrusted", 403, "issuer_not_trusted", id="untrusted-issuer"),
        pytest.param("model", 403, "claim_mismatch", id="model-not-allowed"),
        pytest.param("revoked", 401, "revoked", id="revoked"),
        pytest.param("holder", 401, "holder_mismatch", id="not-the-subject"),
        pytest.param("garbage", 401, None, id="garbage-presentation"),
    ],
)
def test_direct_refusals(w, case, status, code):
    kw = {}
    if case == "replayed":
        vp = w.presentation(nonce(w))
        assert direct(w, vp).allow
    elif case == "unknown_nonce":
        vp = w.presentation("never-issued-nonce")
    elif case == "no_nonce":
        vp = w.presentation(None)
    elif case == "audience":
        vp = w.presentation(nonce(w), audience="https://other.example")
    elif case == "untrusted":
        vp = w.presentation(nonce(w), creds=[w.credential(issuer=make_party())])
    elif case == "model":
        vp = w.presentation(nonce(w))
        kw["model"] = "gpt-5-secret"
    elif case == "revoked":
        w.status.revoked.add("urn:uuid:revoked-1")
        vp = w.presentation(nonce(w), creds=[w.credential(cid="urn:uuid:revoked-1")])
    elif case == "holder":
        vp = w.presentation(nonce(w), creds=[w.credential(subject=make_party().did)])
    else:
        vp = "not.a.jwt"
    d = direct(w, vp, **kw)
    assert not d.allow and d.status == status
    if code:
        assert d.code == code and d.body["error"] == code
    assert d.body["message"]
    if status == 401:
        assert f'error="{d.code}"' in _challenge_error(d)
        assert d.body["nonce"]
    else:
        assert not any(k == "WWW-Authenticate" for k, _ in d.headers)
    if case == "model":
        reasons = d.body["details"]["reasons"]
        assert any("gpt-5-secret" in r["message"] for r in reasons)


def test_status_unavailable_is_503():
    w = make_world(AUD)
    w.gate.status = None  # nothing can check the credential's status entry: required mode fails closed
    d = direct(w, w.presentation(nonce(w)))
    assert (d.status, d.code) == (503, "status_unavailable")


# --- session mode ---------------------------------------------------------------------------------


def test_token_endpoint_happy_path(w):
    status, headers, body = get_token(w)
    assert status == 200, body
    assert ("Cache-Control", "no-store") in headers
    assert body["token_type"] == "DPoP" and body["expires_in"] == 300
    assert set(body["scope"].split()) == {"models", "chat"}
    at = w.gate.sessions.tokens.verify(body["access_token"])
    assert at.subject == w.holder.did and at.jkt == w.holder.key.public_key.thumbprint()


def test_token_endpoint_refuses_foreign_dpop_key(w):
    n = nonce(w)
    vp = w.presentation(n)
    url = AUD + "/.well-known/vcgate/token"
    tv = view(path="/.well-known/vcgate/token")
    thief = create_proof(make_party().key, htm="POST", htu=url, clock=w.clock)
    status, headers, body = w.gate.token_endpoint(view(path=tv.path, headers=[("DPoP", thief)]), {"vp_token": vp})
    assert status == 401 and body["error"] == "dpop_key_mismatch"
    assert any(k == "WWW-Authenticate" for k, _ in headers)
    # the thief's attempt did not burn the holder's nonce
    own = create_proof(w.holder.key, htm="POST", htu=url, clock=w.clock)
    assert w.gate.token_endpoint(view(path=tv.path, headers=[("DPoP", own)]), {"vp_token": vp})[0] == 200


def test_token_endpoint_refusals(w):
    url = AUD + "/.well-known/vcgate/token"
    tv = view(path="/.well-known/vcgate/token")
    assert w.gate.token_endpoint(tv, {})[0] == 400
    vp = w.presentation(nonce(w))
    status, _, body = w.gate.token_endpoint(tv, {"vp_token": vp})  # no DPoP proof
    assert status == 401 and body["error"] == "dpop_invalid"
    proof = create_proof(w.holder.key, htm="POST", htu=url, clock=w.clock)
    untrusted = w.presentation(nonce(w), creds=[w.credential(issuer=make_party())])
    status, _, body = w.gate.token_endpoint(view(path=tv.path, headers=[("DPoP", proof)]), {"vp_token": untrusted})
    assert status == 403 and body["error"] == "issuer_not_trusted"


def test_session_call_allow_and_replay(w):
    token = get_token(w)[2]["access_token"]
    proof = create_proof(w.holder.key, htm="POST", htu=AUD + CHAT, access_token=token, clock=w.clock)
    d = session_call(w, token, proof=proof)
    assert d.allow and d.mode == "session" and d.subject == w.holder.did and d.rule == "chat"
    d = session_call(w, token, proof=proof)
    assert (d.status, d.code) == (401, "dpop_replayed")
    dpop = next(v for k, v in d.headers if k == "WWW-Authenticate" and v.startswith("DPoP "))
    assert 'error="invalid_dpop_proof"' in dpop
    # the policy still decides each call: another model is refused with a reason
    d = session_call(w, token, model="gpt-5-secret")
    assert (d.status, d.code) == (403, "claim_mismatch")


def test_session_token_without_its_key(w):
    token = get_token(w)[2]["access_token"]
    d = session_call(w, token, key=make_party().key)
    assert (d.status, d.code) == (401, "dpop_key_mismatch")


def test_session_token_expired(w):
    token = get_token(w)[2]["access_token"]
    later = lambda: NOW + 400
    proof = create_proof(w.holder.key, htm="POST", htu=AUD + CHAT, access_token=token, clock=later)
    w.gate.sessions.tokens._clock = later  # the gate's clock moves on
    w.gate.dpop_verifier._clock = later
    d = session_call(w, token, proof=proof)
    assert (d.status, d.code) == (401, "token_expired")
    assert 'error="invalid_token"' in next(v for k, v in d.headers if v.startswith("DPoP "))


def test_session_revocation_takes_effect_per_call(w):
    cred = w.credential(cid="urn:uuid:later-revoked")
    vp = w.presentation(nonce(w), creds=[cred])
    proof = create_proof(w.holder.key, htm="POST", htu=AUD + "/.well-known/vcgate/token", clock=w.clock)
    status, _, body = w.gate.token_endpoint(view(path="/.well-known/vcgate/token", headers=[("DPoP", proof)]),
                                            {"vp_token": vp})
    assert status == 200
    assert session_call(w, body["access_token"]).allow
    w.status.revoked.add("urn:uuid:later-revoked")
    d = session_call(w, body["access_token"])
    assert (d.status, d.code) == (401, "revoked")


def test_session_unknown_to_this_gateway(w):
    token = get_token(w)[2]["access_token"]
    w.gate.session_records.cache = MemorySessionStore()  # a replica that never saw the session
    d = session_call(w, token)
    assert (d.status, d.code) == (401, "token_invalid")
    assert d.body["details"]["reason"] == "session_unknown"


def test_bearer_scheme_refused(w):
    token = get_token(w)[2]["access_token"]
    d = w.gate.check(view(headers=[("Authorization", f"Bearer {token}")]))
    assert (d.status, d.code) == (401, "token_invalid")


# --- headers and reload ------------------------------------------------------------------------------


def test_upstream_headers_strip_spoofed_grants(w):
    client = [("X-Vcgate-Subject", "did:evil"), ("x-vcgate-tier", "gold"), ("X_VCGATE_ROLE", "admin"),
              ("x_Vcgate-Org", "acme"), ("Accept", "*/*")]
    view = RequestView("GET", "/v1/models", host="gw.example", headers=client)
    d = direct(w, w.presentation(nonce(w)))
    result = Gate._result(view, d, None, False)
    out = result.upstream(view.headers)
    assert ("x-vcgate-subject", "did:evil") not in out and not any(k == "x-vcgate-tier" for k, _ in out)
    assert not any(k in ("x_vcgate_role", "x_vcgate-org") for k, _ in out)
    assert ("x-vcgate-subject", w.holder.did) in out and ("accept", "*/*") in out
    assert result.remove == ("x-vcgate-subject", "x-vcgate-tier", "x_vcgate_role", "x_vcgate-org")


def test_request_view_headers_multi_value():
    v = RequestView("GET", "/", headers={"A": ["1", "2"], "b": "3"})
    assert v.get_all("a") == ["1", "2"] and v.get("B") == "3"
    assert RequestView("GET", "/", headers=[(b"X", b"y")]).get("x") == "y"


def test_needs_body_per_route(w):
    assert w.gate.needs_body("POST", CHAT)
    assert not w.gate.needs_body("GET", "/v1/models")


def test_policy_reload(tmp_path, caplog):
    w = make_world(AUD, tmp_path=tmp_path)
    assert w.gate.check(view("GET", "/healthz", model=None)).allow
    text = w.policy_path.read_text()
    w.policy_path.write_text(text.replace("paths: [/healthz]", "paths: [/livez]"))
    assert w.gate.reload_if_changed(force=True)
    assert not w.gate.check(view("GET", "/healthz", model=None)).allow
    assert w.gate.check(view("GET", "/livez", model=None)).allow
    old = w.gate.policy
    w.policy_path.write_text(text + "  - name: broken\n    requir: {}\n")
    with caplog.at_level(logging.ERROR, logger="vcgate.gate"):
        assert not w.gate.reload_if_changed(force=True)
    assert w.gate.policy is old and "not reloaded" in caplog.text
    assert w.gate.check(view("GET", "/livez", model=None)).allow


BAD_EDITS = [
    pytest.param("  - name: broken\n    requir: {}\n", id="schema-error"),
    pytest.param("  - name: ctl\x01\n", id="control-character"),
    pytest.param("  - [unclosed\n", id="yaml-syntax"),
    pytest.param("\x7f", id="del"),
]


@pytest.mark.parametrize("bad", BAD_EDITS)
def test_a_failed_reload_is_visible_and_never_reaches_a_request(tmp_path, caplog, bad):
    w = make_world(AUD, tmp_path=tmp_path)
    first = w.gate.policy_state
    assert first.sha256 and not first.stale and first.reload_failures == 0
    text = w.policy_path.read_text()
    w.policy_path.write_text(text + bad)
    with caplog.at_level(logging.ERROR, logger="vcgate.gate"):
        assert not w.gate.reload_if_changed(force=True)
        d = w.gate.check(view("GET", "/healthz", model=None))  # answered by the policy in force
    assert d.allow
    state = w.gate.policy_state
    assert state.stale and state.reload_failures == 1 and state.sha256 == first.sha256 and state.last_error
    assert "not reloaded" in caplog.text and first.sha256[:16] in caplog.text
    # A good edit recovers, says so, and keeps the count of failures.
    w.policy_path.write_text(text.replace("/healthz", "/livez"))
    with caplog.at_level(logging.INFO, logger="vcgate.gate"):
        assert w.gate.reload_if_changed(force=True)
    state = w.gate.policy_state
    assert not state.stale and state.reload_failures == 1 and state.sha256 != first.sha256
    assert "reloaded" in caplog.text and w.gate.check(view("GET", "/livez", model=None)).allow


def test_reload_is_rate_limited(tmp_path):
    w = make_world(AUD, tmp_path=tmp_path, reload_interval=3600)
    w.policy_path.write_text(w.policy_path.read_text().replace("/healthz", "/livez"))
    assert not w.gate.reload_if_changed()  # checked within the interval: no stat, no reload
    assert w.gate.reload_if_changed(force=True)


def test_from_policy_file_warns_without_key(tmp_path):
    w = make_world(AUD, tmp_path=tmp_path)
    with pytest.warns(RuntimeWarning, match="replicas"):
        gate = Gate.from_policy_file(w.policy_path)
    assert gate.policy.audience == AUD


# --- audit -------------------------------------------------------------------------------------


def test_audit_sync_record_is_durable_before_the_decision(tmp_path):
    from vcgate.audit import AuditLog, read_records

    path = tmp_path / "audit.jsonl"
    with AuditLog(path, fsync=False) as log:
        w = make_world(AUD, audit=log)
        d = w.gate.check(view())
        # Nothing flushed by hand: the record is already on disk when check() returns.
        recs = [r for r in read_records(path) if r["kind"] == "decision"]
        assert len(recs) == 1 and recs[0]["code"] == "credential_required" and recs[0]["status"] == d.status == 401
        assert recs[0]["method"] == "POST" and recs[0]["path"] == CHAT and recs[0]["outcome"] == "deny"


def test_audit_queue_full_fails_closed(tmp_path):
    import threading

    from vcgate.audit import AuditLog

    release = threading.Event()
    opened = threading.Event()

    def stalled_fsync(fd):
        if opened.is_set():  # the header's fsync at open passes; every later batch stalls
            release.wait(5)

    log = AuditLog(tmp_path / "audit.jsonl", fsync=stalled_fsync, max_queue=1, block_timeout=0.01)
    opened.set()
    try:
        w = make_world(AUD, audit=log, audit_durability="async")
        seen = [w.gate.check(view("GET", "/healthz", model=None)) for _ in range(4)]
        refused = [d for d in seen if not d.allow]
        assert refused, [d.status for d in seen]
        d = refused[0]
        assert (d.status, d.code, d.body["details"]["reason"]) == (503, "audit_unavailable", "queue_full")
        assert not any(k == "WWW-Authenticate" for k, _ in d.headers)
    finally:
        release.set()
        log.close()


def test_audit_sync_slow_disk_times_out_503(tmp_path):
    import threading

    from vcgate.audit import AuditLog

    release = threading.Event()
    calls = []

    def slow_fsync(fd):
        calls.append(fd)
        if len(calls) > 1:  # the header's fsync at open passes
            release.wait(5)

    log = AuditLog(tmp_path / "audit.jsonl", fsync=slow_fsync)
    try:
        w = make_world(AUD, audit=log, audit_timeout=0.05)
        d = w.gate.check(view("GET", "/healthz", model=None))
        assert (d.allow, d.status, d.code, d.body["details"]["reason"]) == (False, 503, "audit_unavailable", "timeout")
    finally:
        release.set()
        log.close()


def test_audit_durability_is_validated():
    with pytest.raises(ValueError):
        make_world(AUD, audit_durability="later")


def test_no_audit_by_default(w):
    assert w.gate.audit is None and not w.gate.audit_waits
    v = view("GET", "/healthz", model=None)
    r = w.gate.run(w.gate.plan(v), v, None, wait=False)
    assert r.forward and r.decision.allow and r.ticket is None


def test_token_endpoint_records_the_proof_only_when_the_presentation_holds(w):
    """A proof sent with a bad presentation is not recorded (no one can fill the replay store
    with self-signed proofs); once a request succeeds, its proof is spent."""
    url = AUD + "/.well-known/vcgate/token"
    proof = create_proof(w.holder.key, htm="POST", htu=url, clock=w.clock)
    tv = view(path="/.well-known/vcgate/token", headers=[("DPoP", proof)])
    status, _, body = w.gate.token_endpoint(tv, {"vp_token": "not-a-presentation"})
    assert status == 401 and body["error"] != "dpop_replayed"
    status, _, body = w.gate.token_endpoint(tv, {"vp_token": w.presentation(nonce(w))})
    assert status == 200, body  # the same proof: it was never recorded
    status, _, body = w.gate.token_endpoint(tv, {"vp_token": w.presentation(nonce(w))})
    assert (status, body["error"]) == (401, "dpop_replayed")


def test_needs_body_for_a_path_in_other_capitals(w):
    # /v1/chat/Completions is also decided as /v1/chat/completions (docs/policy.md), whose
    # rules read the model: the body is needed; /v1/Models has no model rule either way.
    assert w.gate.needs_body("POST", "/v1/chat/Completions")
    assert not w.gate.needs_body("GET", "/v1/Models")
