"""VCDM 2.0 data-model rules: each violation is refused with the rule it breaks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from vcgate.credentials.datamodel import check_credential, check_presentation
from vcgate.errors import DataModelError

V2 = "https://www.w3.org/ns/credentials/v2"
GOOD: dict[str, Any] = {
    "@context": [V2, "https://www.w3.org/ns/credentials/examples/v2"],
    "id": "urn:uuid:9f0b8c7e-0000-4000-8000-000000000001",
    "type": ["VerifiableCredential", "ExampleCredential"],
    "name": [{"@value": "Accès", "@language": "fr"}, {"@value": "Access", "@language": "en"}],
    "description": "model access",
    "issuer": {"id": "did:example:issuer", "name": "Issuer"},
    "validFrom": "2026-01-01T00:00:00Z",
    "validUntil": "2027-01-01T00:00:00+01:00",
    "credentialSubject": [{"id": "did:example:agent"}, {"tier": "gold"}],
    "credentialSchema": {"id": "https://example.com/schema.json", "type": "JsonSchema"},
    "credentialStatus": {"id": "https://example.com/status/1#7", "type": "BitstringStatusListEntry"},
    "termsOfUse": [{"type": "TrustFrameworkPolicy"}],
    "evidence": {"type": "Evidence"},
    "refreshService": {"type": "VerifiableCredentialRefreshService2021"},
    "relatedResource": [{"id": "https://example.com/a", "digestSRI": "sha384-abc"},
                        {"id": "https://example.com/b", "digestMultibase": "uEiA"}],
}


def test_good_credential_passes() -> None:
    check_credential(GOOD)


def _without(key: str) -> dict[str, Any]:
    out = copy.deepcopy(GOOD)
    del out[key]
    return out


def _with(key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(GOOD)
    out[key] = value
    return out


VIOLATIONS = [
    pytest.param(_without("@context"), "@context", id="no-context"),
    pytest.param(_with("@context", ["https://www.w3.org/ns/credentials/examples/v2", V2]), "@context", id="base-context-not-first"),
    pytest.param(_with("@context", [V2, 42]), "@context", id="context-number"),
    pytest.param(_with("id", None), "id", id="id-null"),
    pytest.param(_with("id", "not a url"), "id", id="id-not-url"),
    pytest.param(_without("type"), "type", id="no-type"),
    pytest.param(_with("type", ["ExampleCredential"]), "type", id="type-without-verifiablecredential"),
    pytest.param(_with("name", 7), "name", id="name-number"),
    pytest.param(_with("description", {"@value": "x", "@direction": "up"}), "description", id="description-bad-direction"),
    pytest.param(_without("issuer"), "issuer", id="no-issuer"),
    pytest.param(_with("issuer", "issuer"), "issuer", id="issuer-not-url"),
    pytest.param(_with("issuer", {"name": "x"}), "issuer", id="issuer-object-without-id"),
    pytest.param(_without("credentialSubject"), "credentialSubject", id="no-subject"),
    pytest.param(_with("credentialSubject", {}), "credentialSubject", id="empty-subject"),
    pytest.param(_with("credentialSubject", []), "credentialSubject", id="empty-subject-list"),
    pytest.param(_with("validFrom", "2026-01-01T00:00:00"), "validFrom", id="validfrom-no-timezone"),
    pytest.param(_with("validUntil", "tomorrow"), "validUntil", id="validuntil-not-datetime"),
    pytest.param(_with("validUntil", "2025-01-01T00:00:00Z"), "validity", id="until-before-from"),
    pytest.param(_with("credentialStatus", {"id": "https://example.com/s"}), "credentialStatus", id="status-no-type"),
    pytest.param(_with("credentialSchema", {"type": "JsonSchema"}), "credentialSchema", id="schema-no-id"),
    pytest.param(_with("credentialSchema", {"id": "https://example.com/s.json"}), "credentialSchema", id="schema-no-type"),
    pytest.param(_with("termsOfUse", {"id": "https://example.com/t"}), "termsOfUse", id="terms-no-type"),
    pytest.param(_with("evidence", [{}]), "evidence", id="evidence-no-type"),
    pytest.param(_with("refreshService", {"id": "https://example.com/r"}), "refreshService", id="refresh-no-type"),
    pytest.param(_with("relatedResource", [{"id": "https://example.com/a"}]), "relatedResource", id="related-no-digest"),
    pytest.param(_with("relatedResource", ["https://example.com/a"]), "relatedResource", id="related-strings"),
    pytest.param(_with("relatedResource", [{"id": "https://example.com/a", "digestSRI": "x"},
                                           {"id": "https://example.com/a", "digestSRI": "y"}]),
                 "relatedResource.id", id="related-duplicate-id"),
]


@pytest.mark.parametrize("credential, rule", VIOLATIONS)
def test_violation_names_its_rule(credential: dict[str, Any], rule: str) -> None:
    with pytest.raises(DataModelError) as exc:
        check_credential(credential)
    assert exc.value.code == "data_model_invalid" and exc.value.status == 400
    assert exc.value.details["rule"] == rule


@pytest.mark.parametrize("envelope, ok", [
    pytest.param({"@context": V2, "type": "EnvelopedVerifiableCredential", "id": "data:application/vc+jwt,x"}, True, id="ok"),
    pytest.param({"@context": [], "type": "EnvelopedVerifiableCredential", "id": "data:application/vc+jwt,x"}, False, id="empty-context"),
    pytest.param({"@context": "https://example.com", "type": "EnvelopedVerifiableCredential", "id": "data:x"}, False, id="wrong-context"),
    pytest.param({"@context": V2, "type": "EnvelopedVerifiableCredential", "id": "https://x"}, False, id="id-not-data-url"),
])
def test_envelope_rules(envelope: dict[str, Any], ok: bool) -> None:
    if ok:
        check_credential(envelope, enveloped=True)
    else:
        with pytest.raises(DataModelError):
            check_credential(envelope, enveloped=True)


@pytest.mark.parametrize("presentation, rule", [
    pytest.param({"type": ["VerifiablePresentation"]}, "@context", id="no-context"),
    pytest.param({"@context": [V2], "type": ["Presentation"]}, "type", id="type-without-vp"),
    pytest.param({"@context": [V2], "type": "VerifiablePresentation", "holder": "me"}, "holder", id="holder-not-url"),
    pytest.param({"@context": [V2], "type": "VerifiablePresentation", "verifiableCredential": ["jwt"]},
                 "verifiableCredential", id="credential-string"),
])
def test_presentation_rules(presentation: dict[str, Any], rule: str) -> None:
    with pytest.raises(DataModelError) as exc:
        check_presentation(presentation)
    assert exc.value.details["rule"] == rule


def test_vcdm11_has_its_own_rules() -> None:
    v11 = {"@context": ["https://www.w3.org/2018/credentials/v1"], "type": ["VerifiableCredential"],
           "issuer": "did:example:i", "issuanceDate": "2020-01-01T00:00:00Z", "credentialSubject": {"id": "did:example:s"}}
    check_credential(v11)
    del v11["credentialSubject"]
    with pytest.raises(DataModelError) as exc:
        check_credential(v11)
    assert exc.value.details["rule"] == "credentialSubject"
