"""SD-JWT VC interoperability, both ways, with the reference implementations, presentations included.

* PyPI ``sd-jwt`` (the RFC's reference implementation): it issues and presents (with a KB-JWT)
  and vcgate verifies; vcgate issues and presents and it verifies, key binding included.
* npm ``@sd-jwt/sd-jwt-vc`` + ``@sd-jwt/crypto-nodejs`` (``node/sdjwt.mjs``, pinned in
  ``node/package.json``): the same both ways, and its verifier refuses a vcgate presentation
  whose KB-JWT carries another nonce.

ES256 throughout (both libraries' default); the issuer is a did:jwk, which vcgate resolves.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import require_real
from vcgate.credentials import Verifier
from vcgate.credentials.sdjwt import holder_id_of_jwk, issue_sd_jwt_vc, present_sd_jwt
from vcgate.did.jwk import did_jwk_from_public_key
from vcgate.errors import VCGateError
from vcgate.keys import PrivateKey, b64url_encode

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).parent / "node"
AUD = "https://gateway.example"
NONCE = "interop-nonce-4711"
VCT = "https://vcgate.example/credentials/model-access"
CLAIMS = {"org": "acme", "cost_centre": "cc-7", "email": "ada@acme.example"}


def private_jwk(key: PrivateKey) -> dict[str, str]:
    return {**key.public_key.jwk(), "d": b64url_encode(key.private_bytes_raw())}


@pytest.fixture
def parties() -> dict[str, Any]:
    issuer, holder = PrivateKey.generate("ES256"), PrivateKey.generate("ES256")
    did = did_jwk_from_public_key(issuer.public_key)
    return {"issuer": issuer, "holder": holder, "did": str(did), "kid": f"{did}#0"}


def vcgate_issue(p: dict[str, Any], now: float) -> str:
    return issue_sd_jwt_vc(p["issuer"], issuer=p["did"], kid=p["kid"], vct=VCT, claims=CLAIMS,
                           valid_from=now - 60, valid_until=now + 3600, holder_key=p["holder"].public_key)


def vcgate_present(p: dict[str, Any], sd_jwt: str, now: float, nonce: str = NONCE) -> str:
    return present_sd_jwt(sd_jwt, disclose=[("org",)], holder_key=p["holder"], audience=AUD, nonce=nonce, issued_at=now)


# --- PyPI sd-jwt ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pypi():
    try:
        from jwcrypto.jwk import JWK
        from sd_jwt.common import SDObj
        from sd_jwt.holder import SDJWTHolder
        from sd_jwt.issuer import SDJWTIssuer
        from sd_jwt.verifier import SDJWTVerifier
    except ImportError:
        require_real("PyPI sd-jwt", "pip install sd-jwt==0.10.4 (it is in the dev extra)")
    return JWK, SDObj, SDJWTIssuer, SDJWTHolder, SDJWTVerifier


def test_pypi_issues_and_presents_vcgate_verifies(pypi, parties):
    JWK, SDObj, SDJWTIssuer, SDJWTHolder, _ = pypi
    now = time.time()  # the library stamps the KB-JWT with the real clock
    claims = {"iss": parties["did"], "vct": VCT, "iat": int(now), "exp": int(now) + 3600,
              **{SDObj(k): v for k, v in CLAIMS.items()}}
    issued = SDJWTIssuer(
        claims, JWK.from_json(json.dumps(private_jwk(parties["issuer"]))),
        holder_key=JWK.from_json(json.dumps(private_jwk(parties["holder"]))), sign_alg="ES256",
        add_decoy_claims=True, extra_header_parameters={"typ": "dc+sd-jwt", "kid": parties["kid"]},
    ).sd_jwt_issuance
    holder = SDJWTHolder(issued)
    holder.create_presentation({"org": True}, NONCE, AUD, JWK.from_json(json.dumps(private_jwk(parties["holder"]))), "ES256")
    pres = Verifier(clock=time.time).verify_presentation(holder.sd_jwt_presentation, audience=AUD, nonce=NONCE)
    assert dict(pres.credentials[0].claims) == {"org": "acme"}
    assert pres.holder == holder_id_of_jwk(parties["holder"].public_key) == pres.credentials[0].subject
    with pytest.raises(VCGateError) as exc:
        Verifier(clock=time.time).verify_presentation(holder.sd_jwt_presentation, audience=AUD, nonce="other")
    assert exc.value.code == "nonce_mismatch"


def test_vcgate_issues_and_presents_pypi_verifies(pypi, parties):
    JWK, _, _, _, SDJWTVerifier = pypi
    now = time.time()
    pres = vcgate_present(parties, vcgate_issue(parties, now), now)
    issuer_jwk = JWK.from_json(json.dumps(parties["issuer"].public_key.jwk()))
    verified = SDJWTVerifier(pres, lambda iss, header: issuer_jwk, expected_aud=AUD, expected_nonce=NONCE)
    payload = verified.get_verified_payload()
    assert payload["org"] == "acme" and "email" not in payload and payload["vct"] == VCT
    with pytest.raises(Exception, match="nonce"):
        SDJWTVerifier(pres, lambda iss, header: issuer_jwk, expected_aud=AUD, expected_nonce="other")


# --- npm @sd-jwt/* -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node():
    exe = shutil.which("node")
    if exe is None:
        require_real("node", "install Node.js 20 or newer with npm")
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    for name in ("@sd-jwt/sd-jwt-vc", "@sd-jwt/crypto-nodejs", "@sd-jwt/jwt-status-list"):
        manifest = NODE_DIR / "node_modules" / name / "package.json"
        if not manifest.is_file() or json.loads(manifest.read_text()).get("version") != pinned[name]:
            require_real(f"npm package {name}@{pinned[name]}", "run `make node-deps`")

    def run(command: str, request: dict[str, Any]) -> dict[str, Any]:
        proc = subprocess.run([exe, str(NODE_DIR / "sdjwt.mjs"), command], input=json.dumps(request),
                              capture_output=True, text=True, timeout=30, cwd=NODE_DIR)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run


def test_npm_issues_and_presents_vcgate_verifies(node, parties):
    now = int(time.time())
    payload = {"iss": parties["did"], "vct": VCT, "iat": now, "exp": now + 3600,
               "cnf": {"jwk": parties["holder"].public_key.jwk()}, **CLAIMS}
    issued = node("issue", {"issuerJwk": private_jwk(parties["issuer"]), "kid": parties["kid"], "payload": payload,
                            "disclosable": list(CLAIMS)})["sdjwt"]
    full = Verifier(clock=lambda: now).verify_credential(issued)
    assert dict(full.claims) == CLAIMS and full.types == (VCT,)
    pres = node("present", {"sdjwt": issued, "frame": {"email": True}, "holderJwk": private_jwk(parties["holder"]),
                            "aud": AUD, "nonce": NONCE, "iat": now})["presentation"]
    verified = Verifier(clock=lambda: now).verify_presentation(pres, audience=AUD, nonce=NONCE)
    assert dict(verified.credentials[0].claims) == {"email": "ada@acme.example"}
    assert verified.holder_key == parties["holder"].public_key


def test_vcgate_issues_and_presents_npm_verifies(node, parties):
    now = int(time.time())
    pres = vcgate_present(parties, vcgate_issue(parties, now), now)
    out = node("verify", {"token": pres, "issuerJwk": parties["issuer"].public_key.jwk(), "nonce": NONCE, "now": now,
                          "requireKb": True})
    assert out["ok"], out
    assert out["payload"]["org"] == "acme" and "email" not in out["payload"]
    assert out["kb"]["aud"] == AUD and out["kb"]["nonce"] == NONCE
    wrong = node("verify", {"token": vcgate_present(parties, vcgate_issue(parties, now), now, nonce="other"),
                            "issuerJwk": parties["issuer"].public_key.jwk(), "nonce": NONCE, "now": now, "requireKb": True})
    assert not wrong["ok"]


# --- Token Status List with npm @sd-jwt/jwt-status-list ------------------------------------------


def test_npm_status_list_token_is_read_by_vcgate(node, parties):
    from vcgate.status.tokenlist import TokenStatusListMethod

    now = int(time.time())
    uri = "https://issuer.example/statuslists/1"
    statuses = [0] * 64
    statuses[5], statuses[9] = 1, 2
    jwt = node("statuslist", {"issuerJwk": private_jwk(parties["issuer"]), "kid": parties["kid"], "bits": 2,
                              "statuses": statuses, "payload": {"iss": parties["did"], "sub": uri, "iat": now}})["jwt"]
    verifier = Verifier(clock=lambda: now)
    method = TokenStatusListMethod(verifier=verifier, fetch=lambda url: jwt.encode())
    sd_jwt = issue_sd_jwt_vc(parties["issuer"], issuer=parties["did"], kid=parties["kid"], vct=VCT, claims=CLAIMS,
                             valid_from=now - 60, holder_key=parties["holder"].public_key,
                             status={"status_list": {"idx": 5, "uri": uri}})
    cred = verifier.verify_credential(sd_jwt)
    codes = {}
    for idx in (0, 5, 9):
        try:
            method.check(cred, {"type": "TokenStatusList", "idx": idx, "uri": uri})
            codes[idx] = "valid"
        except VCGateError as exc:
            codes[idx] = exc.code
    assert codes == {0: "valid", 5: "revoked", 9: "suspended"}


def test_vcgate_status_list_token_is_read_by_npm(node, parties):
    from vcgate.status.tokenlist import TokenStatusList

    lst = TokenStatusList.create("https://issuer.example/statuslists/2")
    revoked, kept = lst.allocate(), lst.allocate()
    lst.set(revoked)
    jwt = lst.to_token(parties["issuer"], issuer=parties["did"], kid=parties["kid"], issued_at=time.time())
    assert node("status", {"jwt": jwt, "idx": revoked}) == {"status": 1}
    assert node("status", {"jwt": jwt, "idx": kept}) == {"status": 0}
