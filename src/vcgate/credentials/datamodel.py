"""W3C VC Data Model 2.0 rules for credentials and presentations, one stable rule name each.

The shapes are JSON Schema (Draft 2020-12, checked with the ``jsonschema`` package), one schema
per property, so a refusal names the rule it broke: :class:`vcgate.errors.DataModelError`
with ``details["rule"]`` = the property (``credentialSubject``, ``validFrom``,
``credentialSchema``, ...) or one of the cross-property rules below (``relatedResource.id``
uniqueness, ``validity`` order). The table of rules is in docs/conformance.md.

Schemas are written from the VCDM 2.0 normative statements (section numbers in comments).
Only VCDM 2.0 documents (first context ``https://www.w3.org/ns/credentials/v2``) are checked
here; VCDM 1.1 keeps its own reader in :mod:`vcgate.credentials.jwt`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..errors import DataModelError

__all__ = ["check_credential", "check_presentation", "CREDENTIAL_RULES", "PRESENTATION_RULES"]

CONTEXT_V1 = "https://www.w3.org/2018/credentials/v1"
CONTEXT_V2 = "https://www.w3.org/ns/credentials/v2"

# An absolute URL (RFC 3986 scheme ":" rest); VCDM 2.0 identifiers are URLs.
_URL = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$"}
_TYPE = {"oneOf": [{"type": "string", "minLength": 1}, {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}]}
_TYPED = {"type": "object", "required": ["type"], "properties": {"id": _URL, "type": _TYPE}}
_TYPED_WITH_ID = {"type": "object", "required": ["id", "type"], "properties": {"id": _URL, "type": _TYPE}}


# 4.10: a status entry has a type, and an id that is a URL. vcgate's ERC-5539 entries
# (EthrRevocationRegistry2022) predate VCDM 2.0 and use "<registry>#<hash>" ids: exempted.
_STATUS = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": _TYPE},
    "if": {"properties": {"type": {"const": "EthrRevocationRegistry2022"}}},
    "else": {"properties": {"id": _URL}},
}


def _one_or_many(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"oneOf": [item, {"type": "array", "minItems": 1, "items": item}]}


# 11.1 language and base direction: a string, a value object, or a list of value objects.
_LANG_VALUE = {
    "type": "object",
    "required": ["@value"],
    "properties": {"@value": {"type": "string"}, "@language": {"type": "string"}, "@direction": {"enum": ["ltr", "rtl"]}},
    "additionalProperties": False,
}
_TEXT = {"oneOf": [{"type": "string"}, _LANG_VALUE, {"type": "array", "minItems": 1, "items": _LANG_VALUE}]}
_DATETIME = {"type": "string", "format": "vcgate-datetimestamp"}
_CONTEXT = {
    "type": "array",
    "minItems": 1,
    "prefixItems": [{"const": CONTEXT_V2}],
    "items": {"oneOf": [_URL, {"type": "object"}]},
}
# 4.8 credentialSubject: one or more objects, each with at least one claim or an id.
_SUBJECT = {"type": "object", "minProperties": 1, "properties": {"id": _URL}}
# 5.3 relatedResource: id plus digestSRI or digestMultibase.
_RELATED = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": _URL, "digestSRI": {"type": "string"}, "digestMultibase": {"type": "string"}},
    "anyOf": [{"required": ["digestSRI"]}, {"required": ["digestMultibase"]}],
}

#: rule -> JSON Schema of that property of a credential; ``required`` rules must be present.
CREDENTIAL_RULES: Mapping[str, Mapping[str, Any]] = {
    "@context": _CONTEXT,
    "id": _URL,  # 4.4
    "type": {"oneOf": [{"const": "VerifiableCredential"}, {"type": "array", "items": {"type": "string"}, "contains": {"const": "VerifiableCredential"}}]},
    "name": _TEXT,  # 4.6
    "description": _TEXT,
    "issuer": {"oneOf": [_URL, {"type": "object", "required": ["id"], "properties": {"id": _URL, "name": _TEXT, "description": _TEXT}}]},  # 4.7
    "credentialSubject": _one_or_many(_SUBJECT),
    "validFrom": _DATETIME,  # 4.9
    "validUntil": _DATETIME,
    "credentialStatus": _one_or_many(_STATUS),  # 4.10
    "credentialSchema": _one_or_many(_TYPED_WITH_ID),  # 4.11
    "refreshService": _one_or_many(_TYPED),  # 5.4
    "termsOfUse": _one_or_many(_TYPED),  # 5.5
    "evidence": _one_or_many(_TYPED),  # 5.6
    "confidenceMethod": _one_or_many(_TYPED),
    "renderMethod": _one_or_many(_TYPED),
    "relatedResource": _one_or_many(_RELATED),  # 5.3
}
_CREDENTIAL_REQUIRED = ("@context", "type", "issuer", "credentialSubject")

#: VCDM 1.1 (``https://www.w3.org/2018/credentials/v1``): the shapes its section 4 requires.
CREDENTIAL_V11_RULES: Mapping[str, Mapping[str, Any]] = {
    "@context": {"type": "array", "minItems": 1, "prefixItems": [{"const": CONTEXT_V1}], "items": {"oneOf": [_URL, {"type": "object"}]}},
    "id": _URL,
    "type": CREDENTIAL_RULES["type"],
    "issuer": CREDENTIAL_RULES["issuer"],
    "credentialSubject": CREDENTIAL_RULES["credentialSubject"],
    "issuanceDate": {"type": "string", "format": "vcgate-datetimestamp"},
    "expirationDate": {"type": "string", "format": "vcgate-datetimestamp"},
    "credentialStatus": CREDENTIAL_RULES["credentialStatus"],
    "credentialSchema": CREDENTIAL_RULES["credentialSchema"],
}
_CREDENTIAL_V11_REQUIRED = ("@context", "type", "issuer", "issuanceDate", "credentialSubject")

_ENVELOPE_RULES: Mapping[str, Mapping[str, Any]] = {
    "@context": {"oneOf": [{"const": CONTEXT_V2}, _CONTEXT]},
    "type": {"oneOf": [{"const": "EnvelopedVerifiableCredential"}, {"type": "array", "contains": {"const": "EnvelopedVerifiableCredential"}}]},
    "id": {"type": "string", "pattern": r"^data:"},
}

_VP_ENVELOPE_RULES: Mapping[str, Mapping[str, Any]] = {
    **_ENVELOPE_RULES,
    "type": {"oneOf": [{"const": "EnvelopedVerifiablePresentation"}, {"type": "array", "contains": {"const": "EnvelopedVerifiablePresentation"}}]},
}

PRESENTATION_RULES: Mapping[str, Mapping[str, Any]] = {
    "@context": _CONTEXT,
    "id": _URL,
    "type": {"oneOf": [{"const": "VerifiablePresentation"}, {"type": "array", "items": {"type": "string"}, "contains": {"const": "VerifiablePresentation"}}]},
    "holder": {"oneOf": [_URL, {"type": "object", "required": ["id"], "properties": {"id": _URL}}]},
    "verifiableCredential": _one_or_many({"type": "object"}),
    "termsOfUse": _one_or_many(_TYPED),
}
_PRESENTATION_REQUIRED = ("@context", "type")

# XML Schema dateTimeStamp: a dateTime with a time zone (VCDM 2.0 4.9 requires one).
_DATETIMESTAMP_RE = re.compile(r"-?\d{4,}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def _validators() -> dict[str, Any]:
    import jsonschema

    checker = jsonschema.FormatChecker()

    @checker.checks("vcgate-datetimestamp")
    def _datetimestamp(value: object) -> bool:
        if not isinstance(value, str) or not _DATETIMESTAMP_RE.fullmatch(value):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True

    out = {}
    for group in (CREDENTIAL_RULES, CREDENTIAL_V11_RULES, _ENVELOPE_RULES, _VP_ENVELOPE_RULES, PRESENTATION_RULES):
        out[id(group)] = {
            rule: jsonschema.Draft202012Validator(schema, format_checker=checker) for rule, schema in group.items()
        }
    return out


class _Rules:
    # Built once on first use (jsonschema compiles lazily); read-only afterwards.
    validators: dict[str, Any] | None = None


def _check(document: Any, rules: Mapping[str, Mapping[str, Any]], required: tuple[str, ...], what: str) -> None:
    if not isinstance(document, Mapping):
        raise DataModelError(f"a {what} must be a JSON object", rule="object")
    if _Rules.validators is None:
        _Rules.validators = _validators()
    validators = _Rules.validators[id(rules)]
    for rule in required:
        if rule not in document:
            raise DataModelError(f"a {what} needs '{rule}'", rule=rule)
    for rule, validator in validators.items():
        if rule in document:
            error = next(iter(validator.iter_errors(document[rule])), None)
            if error is not None:
                raise DataModelError(f"the {what}'s '{rule}' breaks VCDM 2.0: {error.message[:160]}", rule=rule)


def check_credential(credential: Any, *, enveloped: bool = False) -> None:
    """Raise :class:`DataModelError` unless ``credential`` follows the VCDM 2.0 rules.

    ``enveloped``: the object is an ``EnvelopedVerifiableCredential`` wrapper, whose own
    rules are its ``@context``, ``type`` and ``data:`` ``id``.
    """
    if enveloped:
        _check(credential, _ENVELOPE_RULES, ("@context", "type", "id"), "enveloped credential")
        return
    context = credential.get("@context") if isinstance(credential, Mapping) else None
    if isinstance(context, list) and context[:1] == [CONTEXT_V1]:
        # VCDM 1.1 (still issued widely): its own few rules.
        _check(credential, CREDENTIAL_V11_RULES, _CREDENTIAL_V11_REQUIRED, "credential")
        return
    _check(credential, CREDENTIAL_RULES, _CREDENTIAL_REQUIRED, "credential")
    related = credential.get("relatedResource")
    if isinstance(related, list):
        ids = [r.get("id") for r in related]
        if len(set(ids)) != len(ids):
            raise DataModelError("each relatedResource id must be unique", rule="relatedResource.id")
    valid_from, valid_until = credential.get("validFrom"), credential.get("validUntil")
    if valid_from is not None and valid_until is not None:
        if datetime.fromisoformat(valid_until.replace("Z", "+00:00")) < datetime.fromisoformat(
            valid_from.replace("Z", "+00:00")
        ):
            raise DataModelError("validUntil is before validFrom", rule="validity")


def check_presentation(presentation: Any, *, enveloped: bool = False) -> None:
    """Raise :class:`DataModelError` unless ``presentation`` follows the VCDM 2.0 rules
    (``enveloped``: an ``EnvelopedVerifiablePresentation`` wrapper)."""
    if enveloped:
        _check(presentation, _VP_ENVELOPE_RULES, ("@context", "type", "id"), "enveloped presentation")
        return
    _check(presentation, PRESENTATION_RULES, _PRESENTATION_REQUIRED, "presentation")
