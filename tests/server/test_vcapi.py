"""The VC-API of ``vcgate serve --vc-api``: issue / verify round trips per profile, status lists,
presentations with Data Integrity proofs, refusals as coded 4xx, and the Flask routes."""

from __future__ import annotations

import copy
import gzip
from typing import Any

import pytest

from vcgate.credentials.dataintegrity import DataIntegrity
from vcgate.did.key import did_key_from_public_key
from vcgate.keys import PrivateKey, b64url_decode
from vcgate.server.vcapi import VCAPIService, create_vcapi_app

BASE = "https://issuer.example"
V2 = "https://www.w3.org/ns/credentials/v2"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def service() -> VCAPIService:
    return VCAPIService(issuer_key=PrivateKey.generate("EdDSA"), clock=lambda: NOW)


def _request(service: VCAPIService, **extra: Any) -> dict[str, Any]:
    return {"credential": {"@context": [V2], "type": ["VerifiableCredential"], "issuer": service.issuer,
                           "credentialSubject": {"id": "did:example:agent", "name": "Agent"}, **extra}}


@pytest.mark.parametrize("profile", ["eddsa-rdfc-2022", "eddsa-jcs-2022", "vc-jose"])
def test_issue_then_verify(service: VCAPIService, profile: str) -> None:
    issued = service.issue(_request(service), profile=profile, base_url=BASE)
    assert issued.status == 201, issued.body
    vc = issued.body["verifiableCredential"]
    if profile == "vc-jose":
        assert vc["type"] == "EnvelopedVerifiableCredential" and vc["id"].startswith("data:application/vc+jwt,")
    else:
        assert vc["proof"]["cryptosuite"] == profile and vc["issuer"] == service.issuer
    outcome = service.verify_credential({"verifiableCredential": vc, "options": {"checks": ["proof"]}}, base_url=BASE)
    assert (outcome.status, outcome.body["verified"], outcome.body["contextsPinned"]) == (200, True, True)


def test_tampered_credential_refused(service: VCAPIService) -> None:
    vc = service.issue(_request(service), profile=None, base_url=BASE).body["verifiableCredential"]
    vc = copy.deepcopy(vc)
    vc["credentialSubject"]["name"] = "Mallory"
    outcome = service.verify_credential({"verifiableCredential": vc}, base_url=BASE)
    assert outcome.status == 422 and outcome.body["errors"][0]["code"] == "signature_invalid"


@pytest.mark.parametrize("body, code", [
    pytest.param({}, "malformed", id="no-credential"),
    pytest.param({"credential": {"@context": [V2], "type": ["VerifiableCredential"], "issuer": "not a url",
                                 "credentialSubject": {"a": 1}}}, "data_model_invalid", id="issuer-not-url"),
    pytest.param({"credential": {"@context": [V2, "https://example.com/ctx"], "type": ["VerifiableCredential"],
                                 "issuer": "did:example:x", "credentialSubject": {"a": 1}}}, "context_not_allowed",
                 id="unknown-context"),
    pytest.param({"credential": {"@context": [V2, {"VerifiableCredential": "https://evil.example/VC"}],
                                 "type": ["VerifiableCredential"], "issuer": "did:example:x",
                                 "credentialSubject": {"a": 1}}}, "malformed", id="protected-term-redefined"),
])
def test_issue_refusals(service: VCAPIService, body: dict[str, Any], code: str) -> None:
    outcome = service.issue(body, profile="vc-jose", base_url=BASE)
    assert outcome.status == 400 and outcome.body["errors"][0]["code"] == code


def test_status_list_served_and_checked(service: VCAPIService) -> None:
    vc = service.issue(_request(service), profile=None, base_url=BASE).body["verifiableCredential"]
    entry = vc["credentialStatus"]
    assert entry["type"] == "BitstringStatusListEntry" and entry["statusListCredential"].startswith(BASE + "/status-lists/")
    number = int(entry["statusListCredential"].rsplit("/", 1)[1])
    listed = service.status_list(number, base_url=BASE)
    assert listed is not None
    DataIntegrity(clock=lambda: NOW).verify(listed, purpose="assertionMethod", controller=service.issuer)
    bits = gzip.decompress(b64url_decode(listed["credentialSubject"]["encodedList"][1:]))
    assert len(bits) * 8 >= 131_072
    body = {"verifiableCredential": vc, "options": {"checks": ["proof", "credentialStatus"]}}
    assert service.verify_credential(body, base_url=BASE).status == 200
    service.lists.set(number, int(entry["statusListIndex"]))
    refused = service.verify_credential(body, base_url=BASE)
    assert refused.status == 422 and refused.body["errors"][0]["code"] == "revoked"
    other = service.verify_credential(body, base_url="https://elsewhere.example")
    assert other.body["errors"][0]["code"] == "status_unavailable"


def _presentation(service: VCAPIService, *, challenge: str, domain: str) -> tuple[dict[str, Any], PrivateKey]:
    vc = service.issue(_request(service), profile="eddsa-rdfc-2022", base_url=BASE).body["verifiableCredential"]
    holder_key = PrivateKey.generate("EdDSA")
    holder = str(did_key_from_public_key(holder_key.public_key))
    vp = {"@context": [V2], "type": ["VerifiablePresentation"], "holder": holder, "verifiableCredential": [vc]}
    signed = DataIntegrity(clock=lambda: NOW).add_proof(
        vp, holder_key, verification_method=f"{holder}#{holder[8:]}", purpose="authentication",
        challenge=challenge, domain=domain,
    )
    return signed, holder_key


def test_presentation_verify(service: VCAPIService) -> None:
    vp, _ = _presentation(service, challenge="c1", domain="gate.example")
    ok = service.verify_presentation({"verifiablePresentation": vp, "options": {"challenge": "c1", "domain": "gate.example"}})
    assert ok.status == 200 and ok.body["verified"] is True
    replay = service.verify_presentation({"verifiablePresentation": vp, "options": {"challenge": "c2"}})
    assert replay.status == 422 and replay.body["errors"][0]["code"] == "nonce_mismatch"
    bad = copy.deepcopy(vp)
    bad["verifiableCredential"][0]["credentialSubject"]["name"] = "Mallory"
    refused = service.verify_presentation({"verifiablePresentation": bad, "options": {"challenge": "c1"}})
    assert refused.status == 422 and refused.body["errors"][0]["code"] == "signature_invalid"


def test_routes() -> None:
    service = VCAPIService(issuer_key=PrivateKey.generate("EdDSA"), clock=lambda: NOW)
    client = create_vcapi_app(service).test_client()
    issued = client.post("/eddsa-jcs-2022/credentials/issue", json=_request(service))
    assert issued.status_code == 201
    vc = issued.get_json()["verifiableCredential"]
    assert vc["proof"]["cryptosuite"] == "eddsa-jcs-2022"
    assert client.post("/credentials/verify", json={"verifiableCredential": vc}).status_code == 200
    url = vc["credentialStatus"]["statusListCredential"]
    assert client.get(url.replace("http://localhost", "")).status_code == 200
    assert client.get("/status-lists/99").status_code == 404
    resolved = client.get("/1.0/identifiers/did:key:zTjsVPtY")
    assert resolved.status_code == 400
    assert resolved.get_json()["didResolutionMetadata"]["error"] == "invalidPublicKeyLength"
    assert client.post("/credentials/verify", data="not json").status_code == 400
    assert client.post("/nope/credentials/issue", json=_request(service)).status_code == 400


def test_profiles_fit_the_key() -> None:
    p256 = VCAPIService(issuer_key=PrivateKey.generate("ES256"))
    assert p256.profiles == ("vc-jose", "ecdsa-rdfc-2019", "ecdsa-jcs-2019")
    assert p256.default_profile == "ecdsa-rdfc-2019"
    with pytest.raises(ValueError):
        VCAPIService(issuer_key=PrivateKey.generate("ES256"), default_profile="eddsa-rdfc-2022")


@pytest.mark.parametrize("args, message", [
    pytest.param(["serve", "--vc-api"], "--issuer-key", id="vc-api-without-key"),
    pytest.param(["serve", "--issuer-key", "pyproject.toml"], "go with --vc-api", id="key-without-vc-api"),
    pytest.param(["serve"], "--policy is required", id="neither"),
])
def test_serve_flag_errors(args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from vcgate.cli import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and message in result.output


def test_serve_mounts_the_vc_api_beside_the_auth_service(tmp_path: Any) -> None:
    """A real `vcgate serve --policy ... --vc-api` process answers both APIs on one port."""
    import requests

    from tests.integration.gateway_support import AuthService, gateway_world
    from vcgate.keys import write_key_file

    issuer_key = PrivateKey.generate("EdDSA")
    write_key_file(tmp_path / "issuer.key", issuer_key, passphrase=None)
    issuer = str(did_key_from_public_key(issuer_key.public_key))
    world = gateway_world(tmp_path, "http://127.0.0.1:9")
    with AuthService(world.policy, args=("--vc-api", "--issuer-key", str(tmp_path / "issuer.key"))) as svc:
        refused = requests.get(svc.url + "/nginx/auth", headers={"X-Original-Method": "GET",
                                                                  "X-Original-URI": "/v1/models", "Host": "127.0.0.1:9"},
                               timeout=5)
        assert refused.status_code == 401
        body = {"credential": {"@context": [V2], "type": ["VerifiableCredential"], "issuer": issuer,
                               "credentialSubject": {"id": "did:example:agent"}}}
        # No issuing on the auth service (tests/redteam/test_vcapi.py): the issuer itself signs.
        assert requests.post(svc.url + "/credentials/issue", json=body, timeout=30).status_code == 404
        issued = VCAPIService(issuer_key=issuer_key).issue(body, profile=None, base_url="http://127.0.0.1:9")
        assert issued.status == 201, issued.body
        vc = issued.body["verifiableCredential"]
        assert vc["issuer"] == issuer and vc["proof"]["cryptosuite"] == "eddsa-rdfc-2022"
        verified = requests.post(svc.url + "/credentials/verify", json={"verifiableCredential": vc}, timeout=30)
        assert verified.status_code == 200 and verified.json()["verified"] is True
