"""Red-team finding: a ``$credential`` limit counted a delegation chain by its *leaf* when the
root credential had no ``id`` (optional in VCDM 2.0, ``jti`` in SD-JWT VC): every new link a
delegate signed (as many as it likes) opened a fresh budget. Through a real ``vcgate serve``.
"""

from __future__ import annotations

import textwrap
import time

import pytest

from tests.integration.gateway_support import AuthService
from tests.redteam.nginx import ask, challenge_nonce
from tests.support import make_party
from vcgate.client import Holder
from vcgate.credentials import create_presentation, issue_credential
from vcgate.credentials.jws import parse_jws, sign_jws

AUD = "http://127.0.0.1:9"


@pytest.mark.parametrize("root_id", [pytest.param(False, id="root-without-id"), pytest.param(True, id="root-with-id")])
def test_a_credential_budget_is_shared_by_every_delegate(tmp_path, root_id):
    org, user = make_party(), make_party()
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(f"""\
        version: 1
        audience: {AUD}
        trusted_issuers: [{{did: "{org.did}"}}]
        defaults: {{status: off}}
        delegation: {{max_depth: 1}}
        limits:
          - {{name: per-credential, key: $credential, requests: 2, per: 1h}}
        rules:
          - name: models
            match: {{paths: [/v1/**]}}
            require: {{types: [ModelAccessCredential], holder_binding: true}}
        """))
    now = time.time()
    issued = issue_credential(org.key, issuer=org.did, kid=org.kid, subject=user.did, types=["ModelAccessCredential"],
                              claims={"tier": "gold"}, valid_from=now - 60, valid_until=now + 3600)
    payload = dict(parse_jws(issued, algorithms=["EdDSA"], max_bytes=1 << 20).payload)
    if not root_id:
        del payload["id"]
    root = sign_jws(org.key, payload, typ="vc+jwt", kid=org.kid)
    allowed = 0
    with AuthService(policy) as svc:
        for _ in range(3):  # three sub-agents, each with its own new link, two calls each
            sub = make_party()
            chain = Holder(user.key, credentials=[root]).delegate(subject=str(sub.did))
            for _ in range(2):
                vp = create_presentation(sub.key, holder=sub.did, kid=sub.kid, credentials=list(chain),
                                         audience=AUD, nonce=challenge_nonce(svc.url), issued_at=time.time())
                answer = ask(svc.url, vp)
                if answer.status_code == 200:
                    allowed += 1
                else:
                    assert answer.json()["error"] == "quota_exceeded", answer.text
    assert allowed == 2


@pytest.mark.parametrize("disclose, allowed, refusal", [
    pytest.param([["limits"]], 1, "quota_exceeded", id="limit-disclosed"),
    pytest.param([["org"]], 0, "claim_not_disclosed", id="limit-withheld"),
])
def test_an_sd_jwt_holder_cannot_trade_its_limit_for_the_policy_default(tmp_path, disclose, allowed, refusal):
    """The credential says 1 request; the policy's default (for credentials without the claim)
    is 5. Withholding the claim got the 5: now it is refused, as a rule's missing claim is."""
    from vcgate.credentials.sdjwt import issue_sd_jwt_vc, present_sd_jwt

    org, holder = make_party(), make_party()
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(f"""\
        version: 1
        audience: {AUD}
        trusted_issuers: [{{did: "{org.did}"}}]
        defaults: {{status: off}}
        limits:
          - {{name: rpm, key: $subject, requests: $claims.limits.rpm, default: 5, per: 1h}}
        rules:
          - name: models
            match: {{paths: [/v1/**]}}
            require: {{types: [ModelAccessCredential], holder_binding: true}}
        """))
    now = time.time()
    sd_jwt = issue_sd_jwt_vc(org.key, issuer=str(org.did), kid=org.kid, vct="ModelAccessCredential",
                             claims={"org": "acme", "limits": {"rpm": 1}}, valid_from=now - 60,
                             valid_until=now + 3600, holder_kid=holder.kid)
    outcomes = []
    with AuthService(policy) as svc:
        for _ in range(3):
            vp = present_sd_jwt(sd_jwt, disclose=disclose, holder_key=holder.key, audience=AUD,
                                nonce=challenge_nonce(svc.url), issued_at=time.time())
            answer = ask(svc.url, vp)
            outcomes.append("allowed" if answer.status_code == 200 else answer.json()["error"])
    assert outcomes == ["allowed"] * allowed + [refusal] * (3 - allowed)
