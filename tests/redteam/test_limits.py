"""Red-team finding: a ``$credential`` limit counted a delegation chain by its *leaf* when the
root credential had no ``id`` (optional in VCDM 2.0, ``jti`` in SD-JWT VC): every new link a
delegate signed (as many as it likes) opened a fresh budget. Through a real ``vcgate serve``.
"""

from __future__ import annotations

import re
import textwrap
import time

import pytest
import requests

from tests.integration.gateway_support import AuthService
from tests.support import make_party
from vcgate.client import Holder
from vcgate.credentials import create_presentation, issue_credential
from vcgate.credentials.jws import parse_jws, sign_jws

AUD = "http://127.0.0.1:9"
CALL = {"X-Original-Method": "GET", "X-Original-URI": "/v1/models", "Host": "127.0.0.1:9"}


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
                challenge = requests.get(svc.url + "/nginx/auth", headers=CALL, timeout=10)
                nonce = re.search(r'nonce="([^"]+)"', challenge.headers["WWW-Authenticate"]).group(1)
                vp = create_presentation(sub.key, holder=sub.did, kid=sub.kid, credentials=list(chain),
                                         audience=AUD, nonce=nonce, issued_at=time.time())
                answer = requests.get(svc.url + "/nginx/auth", headers={**CALL, "Authorization": f"VP {vp}"}, timeout=10)
                if answer.status_code == 200:
                    allowed += 1
                else:
                    assert answer.json()["error"] == "quota_exceeded", answer.text
    assert allowed == 2
