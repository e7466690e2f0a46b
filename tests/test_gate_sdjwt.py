"""SD-JWT VC presentations through the unchanged gate: direct mode and the token endpoint.

The KB-JWT plays the presentation's part (audience, the gate's single-use nonce), its key is
the holder key the DPoP proof must match, and ``vct`` is matched like ``type``.
"""

from __future__ import annotations

import pytest

from tests.middleware.helpers import World, make_world
from tests.test_gate import AUD, direct, nonce, view
from vcgate.credentials.sdjwt import issue_sd_jwt_vc, present_sd_jwt
from vcgate.session import create_proof

CLAIMS = {"models": ["gpt-4o"], "org": "acme", "email": "ada@acme.example", "clearance": "secret"}


@pytest.fixture
def w() -> World:
    return make_world(AUD)


def sd_jwt(w: World, *, bind_did: bool = True) -> str:
    return issue_sd_jwt_vc(
        w.issuer.key, issuer=w.issuer.did, kid=w.issuer.kid, vct="ModelAccessCredential", claims=CLAIMS,
        valid_from=w.clock() - 3600, status={"status_list": {"idx": 1, "uri": "https://issuer.example/sl"}},
        **({"holder_kid": w.holder.kid} if bind_did else {"holder_key": w.holder.key.public_key}),
    )


def present(w: World, n: str, disclose=(("models",),), **kw) -> str:
    return present_sd_jwt(sd_jwt(w, **kw), disclose=disclose, holder_key=w.holder.key, audience=AUD, nonce=n,
                          issued_at=w.clock())


@pytest.fixture(autouse=True)
def _token_status_is_checked_elsewhere(w):
    # The world's status checker knows only its test type; the Token Status List method has its
    # own tests (tests/status/test_tokenlist.py). Route the entry to the fake method.
    w.status.types = (*w.status.types, "TokenStatusList")
    w.gate.status.register(w.status)


def test_direct_mode_allows_with_only_the_needed_claim_disclosed(w):
    d = direct(w, present(w, nonce(w)))
    assert d.allow and d.mode == "direct" and d.holder == w.holder.did
    assert dict(d.grant_headers)["X-Vcgate-Subject"] == w.holder.did


def test_direct_mode_refuses_when_the_needed_claim_is_withheld(w):
    d = direct(w, present(w, nonce(w), disclose=[("org",)]))
    assert (d.allow, d.status, d.code) == (False, 403, "claim_not_disclosed")
    assert "models" in d.body["message"]


def test_nonce_is_single_use_and_key_binding_is_required(w):
    n = nonce(w)
    vp = present(w, n)
    assert direct(w, vp).allow
    assert direct(w, vp).code == "nonce_mismatch"
    without_kb = vp.rsplit("~", 1)[0] + "~"
    assert direct(w, without_kb).code == "key_binding_required"


def test_token_endpoint_binds_the_session_to_the_cnf_key(w):
    url = AUD + "/.well-known/vcgate/token"
    vp = present(w, nonce(w), bind_did=False)
    proof = create_proof(w.holder.key, htm="POST", htu=url, clock=w.clock)
    status, _, body = w.gate.token_endpoint(view(path="/.well-known/vcgate/token", headers=[("DPoP", proof)]),
                                            {"vp_token": vp})
    assert status == 200 and body["token_type"] == "DPoP", body
    other = create_proof(make_other_key(), htm="POST", htu=url, clock=w.clock)
    status, _, body = w.gate.token_endpoint(view(path="/.well-known/vcgate/token", headers=[("DPoP", other)]),
                                            {"vp_token": present(w, nonce(w), bind_did=False)})
    assert status == 401 and body["error"] == "dpop_key_mismatch"


def make_other_key():
    from vcgate.keys import PrivateKey

    return PrivateKey.generate("EdDSA")
