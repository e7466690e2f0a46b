"""The gate's backstop: it authorises only on credentials whose JSON-LD contexts are all pinned.

The gate's default verifier refuses inline and unknown contexts itself; these tests give the
gate a verifier that only *flags* them (``allow_unpinned_contexts=True``, as the VC-API's
conformance verifier does), so what refuses is the gate's own check, for every credential
format that reaches the policy, in direct mode and at the token endpoint.
"""

from __future__ import annotations

import pytest

from tests.middleware.helpers import STATUS_TYPE, World, make_world
from tests.test_gate import AUD, direct, nonce, view
from vcgate.credentials import Verifier, issue_credential
from vcgate.credentials.models import FORMAT_VC_JOSE, FORMAT_VC_JWT11
from vcgate.credentials.sdjwt import issue_sd_jwt_vc, present_sd_jwt
from vcgate.session import create_proof

# Remaps `models` to another IRI: the signed statement is not the one the JSON seems to make.
INLINE = {"@context": {"models": "https://www.w3.org/ns/credentials/examples#revokedModels"}}
UNKNOWN = "https://contexts.example/not-pinned/v1"


@pytest.fixture
def w() -> World:
    world = make_world(AUD)
    # Flag, do not refuse: the gate itself must refuse.
    world.gate.verifier = Verifier(clock=world.clock, allow_unpinned_contexts=True)
    world.gate.session_records.verifier = world.gate.verifier
    return world


def credential(w: World, fmt: str, contexts: list) -> str:
    return issue_credential(
        w.issuer.key, issuer=w.issuer.did, kid=w.issuer.kid, subject=w.holder.did, types=["ModelAccessCredential"],
        claims={"models": ["gpt-4o"]}, valid_from=w.clock() - 3600, status={"type": STATUS_TYPE, "id": "test:1"},
        format=fmt, contexts=contexts,
    )


UNPINNED = [
    pytest.param(FORMAT_VC_JOSE, [INLINE], id="vc+jwt-inline-context"),
    pytest.param(FORMAT_VC_JOSE, [UNKNOWN], id="vc+jwt-unknown-context"),
    pytest.param(FORMAT_VC_JWT11, [INLINE], id="vc-jwt11-inline-context"),
    pytest.param(FORMAT_VC_JWT11, [UNKNOWN], id="vc-jwt11-unknown-context"),
]


@pytest.mark.parametrize("fmt, contexts", UNPINNED)
def test_direct_mode_refuses_unpinned_contexts(w: World, fmt: str, contexts: list) -> None:
    token = credential(w, fmt, contexts)
    # The verifier accepts it (the signature is fine) and only flags it ...
    assert w.gate.verifier.verify_credential(token).contexts_pinned is False
    # ... and the gate refuses it before the policy sees it.
    d = direct(w, w.presentation(nonce(w), creds=[token]))
    assert (d.allow, d.status, d.code) == (False, 401, "context_not_allowed")


@pytest.mark.parametrize("fmt, contexts", UNPINNED)
def test_token_endpoint_refuses_unpinned_contexts(w: World, fmt: str, contexts: list) -> None:
    url = AUD + "/.well-known/vcgate/token"
    vp = w.presentation(nonce(w), creds=[credential(w, fmt, contexts)])
    proof = create_proof(w.holder.key, htm="POST", htu=url, clock=w.clock)
    status, _, body = w.gate.token_endpoint(view(path="/.well-known/vcgate/token", headers=[("DPoP", proof)]),
                                            {"vp_token": vp})
    assert (status, body["error"]) == (401, "context_not_allowed")


def test_one_unpinned_credential_among_pinned_ones_is_refused(w: World) -> None:
    creds = [credential(w, FORMAT_VC_JOSE, []), credential(w, FORMAT_VC_JOSE, [INLINE])]
    d = direct(w, w.presentation(nonce(w), creds=creds))
    assert (d.allow, d.code) == (False, "context_not_allowed")


@pytest.mark.parametrize(
    "fmt", [pytest.param(FORMAT_VC_JOSE, id="vc+jwt"), pytest.param(FORMAT_VC_JWT11, id="vc-jwt11")]
)
def test_pinned_contexts_pass(w: World, fmt: str) -> None:
    extra = ["https://www.w3.org/ns/credentials/examples/v2"] if fmt == FORMAT_VC_JOSE else []
    d = direct(w, w.presentation(nonce(w), creds=[credential(w, fmt, extra)]))
    assert d.allow, d.body


def test_sd_jwt_vc_has_no_json_ld_contexts_and_passes(w: World) -> None:
    # SD-JWT VC is not JSON-LD: nothing can be remapped, so it is pinned by construction.
    w.status.types = (*w.status.types, "TokenStatusList")
    w.gate.status.register(w.status)
    token = issue_sd_jwt_vc(
        w.issuer.key, issuer=w.issuer.did, kid=w.issuer.kid, vct="ModelAccessCredential",
        claims={"models": ["gpt-4o"]}, valid_from=w.clock() - 3600, holder_kid=w.holder.kid,
        status={"status_list": {"idx": 1, "uri": "https://issuer.example/sl"}},
    )
    vp = present_sd_jwt(token, disclose=[("models",)], holder_key=w.holder.key, audience=AUD, nonce=nonce(w),
                        issued_at=w.clock())
    d = direct(w, vp)
    assert d.allow, d.body


def test_default_gate_verifier_refuses_inline_contexts_itself() -> None:
    world = make_world(AUD)
    token = credential(world, FORMAT_VC_JOSE, [INLINE])
    d = direct(world, world.presentation(nonce(world), creds=[token]))
    assert (d.allow, d.code) == (False, "context_not_allowed")


def test_a_shared_session_record_with_an_unpinned_credential_is_not_restored() -> None:
    """A replica reading a session record from the shared store holds it to the same rule: a
    record carrying an unpinned credential (written by a replica without the check) is not
    restored, and the client presents again."""
    from vcgate.gate.sessions import SessionRecords
    from vcgate.stores import MemorySessionStore

    world = make_world(AUD, session_store=MemorySessionStore())
    gate = world.gate
    gate.verifier = Verifier(clock=world.clock, allow_unpinned_contexts=True)
    gate.session_records.verifier = gate.verifier
    unpinned = gate.verifier.verify_credential(credential(world, FORMAT_VC_JOSE, [INLINE]))
    record = SessionRecords.record(world.holder.did, [unpinned])
    token = gate.token_issuer.issue(subject=world.holder.did, holder_jkt=world.holder.key.public_key.thumbprint(),
                                    scopes=["chat"], audience=AUD, extra=SessionRecords.claims(record))
    jti = gate.sessions.tokens.verify(token).jti
    gate.session_records.store.put(jti, world.holder.did, record, 300)
    proof = create_proof(world.holder.key, htm="POST", htu=AUD + "/v1/chat/completions", access_token=token,
                         clock=world.clock)
    d = gate.check(view(headers=[("Authorization", f"DPoP {token}"), ("DPoP", proof)]))
    assert (d.allow, d.status, d.body["details"]["reason"]) == (False, 401, "session_unknown")
