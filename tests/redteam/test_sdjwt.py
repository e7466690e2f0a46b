"""Red-team findings on SD-JWT VC presentations, through a real ``vcgate serve`` (NGINX dialect).

An SD-JWT VC from another issuer may put registered claims in Disclosures, which the SD-JWT VC
draft (3.2.2.2) forbids: the holder can then withhold ``exp`` or ``status``, and no verifier can
tell. Presented in full, such a credential used to be accepted as if the claims were visible;
now the Disclosure itself is refused, as the draft says.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from tests.integration.gateway_support import AuthService, gateway_world
from tests.redteam.nginx import ask, challenge_nonce
from vcgate.credentials.jws import sign_jws
from vcgate.credentials.sdjwt import SD_ALG, TYP_SD_JWT_VC, disclosure_digest, present_sd_jwt
from vcgate.keys import b64url_encode


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AuthService, object]]:
    world = gateway_world(tmp_path_factory.mktemp("sdjwt"), "http://127.0.0.1:9")
    world.policy.write_text(world.policy.read_text().replace("rules:\n", "defaults: {status: off}\nrules:\n", 1))
    with AuthService(world.policy) as svc:
        yield svc, world


def _disclosure(name: str, value: object) -> str:
    return b64url_encode(json.dumps([f"salt-{name}", name, value]).encode())


def _present(svc: AuthService, world, top: list[str], *, more: tuple[str, ...] = (),
             payload: dict | None = None) -> requests.Response:
    """Present an SD-JWT VC whose top-level ``_sd`` references ``top`` (``more``: Disclosures
    referenced from ``payload``'s claims), every Disclosure shown, to the gate."""
    now = time.time()
    claims = {"iss": str(world.issuer.did), "vct": "ModelAccessCredential", "iat": int(now - 60),
              "nbf": int(now - 60), "cnf": {"kid": world.agent.kid}, "_sd_alg": SD_ALG,
              "_sd": sorted(disclosure_digest(d) for d in top), **(payload or {})}
    jwt = sign_jws(world.issuer.key, claims, typ=TYP_SD_JWT_VC, kid=world.issuer.kid)
    vp = present_sd_jwt("".join(f"{p}~" for p in (jwt, *top, *more)), disclose=None, holder_key=world.agent.key,
                        audience=world.audience, nonce=challenge_nonce(svc.url), issued_at=now)
    return ask(svc.url, vp)


@pytest.mark.parametrize("name, value", [
    pytest.param("exp", 4_000_000_000, id="exp"),
    pytest.param("nbf", 1, id="nbf"),
    pytest.param("status", {"status_list": {"idx": 3, "uri": "https://issuer.example/status/1"}}, id="status"),
    pytest.param("vct", "ModelAccessCredential", id="vct"),
    pytest.param("iss", "did:example:someone-else", id="iss"),
])
def test_registered_claims_in_disclosures_are_refused(gate, name, value):
    svc, world = gate
    answer = _present(svc, world, [_disclosure(name, value), _disclosure("org", "acme")])
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "disclosure_invalid" and name in answer.json()["message"]


def test_ordinary_and_nested_disclosures_still_pass(gate):
    """The rule is about top-level registered claims: ``exp`` inside a claim object is data."""
    svc, world = gate
    inner = _disclosure("exp", 5)
    answer = _present(svc, world, [_disclosure("org", "acme")], more=(inner,),
                      payload={"contract": {"_sd": [disclosure_digest(inner)]}})
    assert answer.status_code == 200, answer.text
