"""The client flow passes a challenge's DCQL query (``dcql``: base64url JSON) to the holder."""

from __future__ import annotations

import json

import pytest

from tests.support import NOW, make_party
from vcgate.client import Holder, ProtocolError
from vcgate.client.flow import AuthState, ResponseView, Send
from vcgate.credentials import Verifier
from vcgate.credentials.dcql import dcql_query
from vcgate.credentials.sdjwt import issue_sd_jwt_vc
from vcgate.keys import b64url_encode

GW = "https://gw.example"


def _challenge(dcql: str | None) -> ResponseView:
    value = f'VP realm="{GW}", nonce="n-1"' + (f', dcql="{dcql}"' if dcql is not None else "")
    return ResponseView(401, lambda name: [value] if name.lower() == "www-authenticate" else [], lambda: {})


def _answer(holder: Holder, response: ResponseView) -> str:
    flow = AuthState(holder, mode="direct", audience=None, refresh_margin=30).flow("POST", GW + "/v1/chat")
    next(flow)
    step = flow.send(response)
    assert isinstance(step, Send)
    return step.headers["Authorization"].removeprefix("VP ")


@pytest.fixture
def holder(clock) -> Holder:
    issuer, agent = make_party(), make_party()
    cred = issue_sd_jwt_vc(issuer.key, issuer=issuer.did, kid=issuer.kid, vct="ModelAccessCredential",
                           claims={"models": ["gpt-4o"], "org": "acme"}, valid_from=NOW - 60, holder_kid=agent.kid)
    return Holder(agent.key, credentials=[cred], clock=clock)


def test_the_challenge_query_decides_what_is_disclosed(holder, clock):
    query = b64url_encode(json.dumps(dcql_query(vct_values=["ModelAccessCredential"], claims=[["org"]])).encode())
    pres = Verifier(clock=clock).verify_presentation(_answer(holder, _challenge(query)), audience=GW, nonce="n-1")
    assert dict(pres.credentials[0].claims) == {"org": "acme"}
    plain = Verifier(clock=clock).verify_presentation(_answer(holder, _challenge(None)), audience=GW, nonce="n-1")
    assert dict(plain.credentials[0].claims) == {"models": ["gpt-4o"], "org": "acme"}  # Holder(disclose=None)


def test_a_query_that_is_not_base64url_json_is_a_protocol_error(holder):
    with pytest.raises(ProtocolError, match="DCQL"):
        _answer(holder, _challenge("not*base64"))
