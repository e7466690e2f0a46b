"""Wycheproof vectors through vcgate's own signature and JWS code (tests/vectors/wycheproof).

Signature files (IEEE P1363, i.e. the JOSE ``r||s`` form, and Ed25519), one case each, through
``PublicKey.verify(alg, msg, sig)``:

* ``ecdsa_secp256r1_sha256_p1363_test.json`` -> ES256
* ``ecdsa_secp256k1_sha256_p1363_test.json`` -> ES256K
* ``ecdsa_secp384r1_sha384_p1363_test.json`` -> ES384
* ``ed25519_test.json`` -> EdDSA (and its RFC 9864 name ``Ed25519``); includes non-canonical S

"valid" must verify; "invalid" must raise ``SignatureInvalidError`` (or ``MalformedError``);
"acceptable" may go either way; nothing may raise anything that is not a ``VCGateError``.

``json_web_signature_test.json`` and ``json_web_key_test.json``: every case runs through
``parse_jws(algorithms=("EdDSA", "ES256", "ES256K"))``. Keys reach vcgate's verifier only
through DID documents, so a group's public JWK is placed in a DID document as a
``JsonWebKey2020`` method authorised for ``assertionMethod`` (which imports it with
``PublicKey.from_jwk``) and the key is taken from there.

How results are classified, and why:

* Groups whose key vcgate cannot import (RSA, HMAC secrets, P-521) or whose token algorithm is
  not in the allow-list (RS*, PS*, HS*, ``none``) cannot be verified by vcgate at all: every one
  of their cases -- Wycheproof's "valid" ones included -- must be *refused*, with
  ``algorithm_not_allowed`` or ``malformed``, and the key import must be refused too. They are
  counted, and the applicable ones are counted separately, so the module cannot pass by
  running nothing.
* ``parse_jws`` takes only JSON-object payloads (every vcgate token is a JWT), but RFC 7515
  allows any payload and the Wycheproof ES256 tokens sign ``foo``. A "valid" token whose *only*
  objection is its payload (the same token with the payload replaced by ``{}`` parses) is
  therefore refused with ``malformed``, and its signature is then checked through the same
  ``PublicKey.verify`` call ``JWS.verify_with`` makes: it must verify. For an "invalid" token
  refused only for its payload, that signature check must fail -- otherwise the refusal would
  be an accident of the payload, not a detection of the attack.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vcgate.credentials.jws import parse_jws
from vcgate.did import DIDDocument
from vcgate.errors import MalformedError, SignatureInvalidError, VCGateError
from vcgate.keys import PublicKey, b64url_decode

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "wycheproof"
ALLOW = ("EdDSA", "ES256", "ES256K")


def _load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "case"


# --- raw signatures ---------------------------------------------------------------------------

SIGNATURE_FILES = {
    "ES256": "ecdsa_secp256r1_sha256_p1363_test.json",
    "ES256K": "ecdsa_secp256k1_sha256_p1363_test.json",
    "ES384": "ecdsa_secp384r1_sha384_p1363_test.json",
    "EdDSA": "ed25519_test.json",
}
SIGNATURE_DATA = {alg: _load(name) for alg, name in SIGNATURE_FILES.items()}


def _signature_cases() -> list[Any]:
    cases = []
    for alg, data in SIGNATURE_DATA.items():
        for group in data["testGroups"]:
            for test in group["tests"]:
                cases.append(
                    pytest.param(alg, group, test, id=f"{alg}-tc{test['tcId']}-{_slug(test['comment'])}")
                )
    return cases


SIGNATURE_CASES = _signature_cases()


def _group_key(alg: str, group: dict[str, Any]) -> PublicKey:
    """The group's key from its raw encoding, cross-checked with its JWK where one is given."""
    pub = group["publicKey"]
    raw = pub["pk"] if alg == "EdDSA" else pub["uncompressed"]
    key = PublicKey.from_raw(alg, bytes.fromhex(raw))
    if "publicKeyJwk" in group:
        assert PublicKey.from_jwk(group["publicKeyJwk"]) == key
    return key


def _verify(key: PublicKey, alg: str, msg: bytes, sig: bytes) -> VCGateError | None:
    """None when the signature verifies; the VCGateError otherwise. Anything else propagates."""
    try:
        key.verify(alg, msg, sig)
    except VCGateError as exc:
        return exc
    return None


@pytest.mark.parametrize("alg, group, test", SIGNATURE_CASES)
def test_signature_vector(alg: str, group: dict[str, Any], test: dict[str, Any]) -> None:
    key = _group_key(alg, group)
    msg, sig = bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
    names = (alg, "Ed25519") if alg == "EdDSA" else (alg,)
    for name in names:
        error = _verify(key, name, msg, sig)
        if test["result"] == "valid":
            assert error is None, f"{test['comment']} ({test['flags']}) should verify: {error!r}"
        elif test["result"] == "invalid":
            assert isinstance(error, (SignatureInvalidError, MalformedError)), f"{test['flags']} accepted"
            assert error.code in ("signature_invalid", "malformed")
        else:  # "acceptable": either way, but only through vcgate's own errors
            assert error is None or isinstance(error, (SignatureInvalidError, MalformedError))


def test_signature_vector_counts() -> None:
    """Every case in the files is a param; the interesting classes are all present."""
    by_alg = Counter(case.values[0] for case in SIGNATURE_CASES)
    for alg, data in SIGNATURE_DATA.items():
        assert by_alg[alg] == data["numberOfTests"]
    assert dict(by_alg) == {"ES256": 262, "ES256K": 252, "ES384": 280, "EdDSA": 151}
    results = Counter((case.values[0], case.values[2]["result"]) for case in SIGNATURE_CASES)
    assert results[("ES256", "valid")] >= 150 and results[("ES256", "invalid")] >= 80
    assert results[("ES256K", "valid")] >= 150 and results[("ES256K", "invalid")] >= 80
    assert results[("EdDSA", "valid")] >= 80 and results[("EdDSA", "invalid")] >= 60
    flags = Counter((case.values[0], flag) for case in SIGNATURE_CASES for flag in case.values[2]["flags"])
    assert flags[("EdDSA", "SignatureMalleability")] >= 8  # non-canonical S (S >= L) must fail
    assert flags[("ES256", "SignatureSize")] >= 10 and flags[("ES256K", "SignatureSize")] >= 10
    assert flags[("ES256", "RangeCheck")] >= 4 and flags[("ES256K", "RangeCheck")] >= 4


def test_non_canonical_s_refused_explicitly() -> None:
    """The Ed25519 malleability cases (S + L) are all "invalid" and all refused."""
    cases = [c for c in SIGNATURE_CASES if c.values[0] == "EdDSA" and "SignatureMalleability" in c.values[2]["flags"]]
    assert cases
    for case in cases:
        alg, group, test = case.values
        assert test["result"] == "invalid"
        assert isinstance(_verify(_group_key(alg, group), alg, bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])), SignatureInvalidError)


# --- JWS and JWK ---------------------------------------------------------------------------

DID = "did:example:wycheproof"
VM_ID = f"{DID}#key"


@dataclass(frozen=True)
class Outcome:
    verdict: str  # "accepted" | "signature-only" (payload refused, signature verified) | "refused"
    stage: str  # "key" | "parse" | "signature" | "done"
    error: VCGateError | None


def _import_key(jwk: Any) -> tuple[PublicKey | None, VCGateError | None]:
    """The group's JWK as vcgate's verifier would get it: from a DID document."""
    try:
        PublicKey.from_jwk(jwk)
    except VCGateError as exc:
        return None, exc
    doc = DIDDocument.from_json(
        {
            "id": DID,
            "verificationMethod": [{"id": "#key", "type": "JsonWebKey2020", "controller": DID, "publicKeyJwk": jwk}],
            "assertionMethod": ["#key"],
        },
        expected_id=DID,
    )
    try:
        return doc.method_for(VM_ID, "assertionMethod").public_key, None
    except VCGateError as exc:
        return None, exc


def _only_payload_is_refused(token: str) -> bool:
    """True when the token's one objection is parse_jws's JSON-object payload rule."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        b64url_decode(parts[1])
        parse_jws(f"{parts[0]}.e30.{parts[2]}", algorithms=ALLOW)  # e30 = "{}"
    except VCGateError:
        return False
    return True


def _run(token: Any, jwk: Any) -> Outcome:
    key, error = _import_key(jwk) if jwk is not None else (None, None)
    if key is None and error is not None:
        return Outcome("refused", "key", error)
    try:
        jws = parse_jws(token, algorithms=ALLOW)
    except MalformedError as exc:
        if key is None or not _only_payload_is_refused(token):
            return Outcome("refused", "parse", exc)
        h64, p64, s64 = token.split(".")
        header = json.loads(b64url_decode(h64))
        sig_error = _verify(key, header["alg"], f"{h64}.{p64}".encode(), b64url_decode(s64))
        if sig_error is not None:
            return Outcome("refused", "signature", sig_error)
        return Outcome("signature-only", "parse", exc)
    except VCGateError as exc:
        return Outcome("refused", "parse", exc)
    if key is None:
        raise AssertionError("a token parsed although its group has no key vcgate can import")
    try:
        jws.verify_with(key)
    except VCGateError as exc:
        return Outcome("refused", "signature", exc)
    return Outcome("accepted", "done", None)


def _alg_of(token: Any) -> str | None:
    try:
        header = json.loads(b64url_decode(token.split(".")[0]))
        return header.get("alg") if isinstance(header, dict) else None
    except Exception:
        return None


def _key_of(keys: Any) -> Any:
    """A group's verification key: a JWK, or the first key of a JWK set."""
    if isinstance(keys, dict) and "keys" in keys:
        return keys["keys"][0]
    return keys


# Cases vcgate gets wrong (none today). Strict xfails: a fix turns them into failures until unmarked.
KNOWN_SRC_BUGS: dict[tuple[str, int], str] = {}

JWS_DATA = _load("json_web_signature_test.json")
JWK_DATA = _load("json_web_key_test.json")


def _jose_cases() -> list[Any]:
    cases = []
    for kind, data in (("jws", JWS_DATA), ("jwk", JWK_DATA)):
        for group in data["testGroups"]:
            public = _key_of(group.get("public"))
            private = group.get("private")
            supported = public is not None and _import_key(public)[0] is not None
            for test in group["tests"]:
                applicable = supported or _alg_of(test["jws"]) in ALLOW
                marks = []
                reason = KNOWN_SRC_BUGS.get((kind, test["tcId"]))
                if reason:
                    marks.append(pytest.mark.xfail(strict=True, reason=reason))
                cases.append(
                    pytest.param(
                        kind,
                        applicable,
                        public,
                        private,
                        test,
                        id=f"{kind}-{_slug(group['comment'])}-tc{test['tcId']}-{_slug(test['comment'])}",
                        marks=marks,
                    )
                )
    return cases


JOSE_CASES = _jose_cases()


@pytest.mark.parametrize("kind, applicable, public, private, test", JOSE_CASES)
def test_jose_vector(kind: str, applicable: bool, public: Any, private: Any, test: dict[str, Any]) -> None:
    # A private key set is never a public key: every member with "d" is refused on import.
    for jwk in (private.get("keys", [private]) if isinstance(private, dict) else []):
        if "d" in jwk:
            with pytest.raises(MalformedError):
                PublicKey.from_jwk(jwk)

    if not applicable:
        # RSA / HMAC / P-521 keys, RS* / PS* / HS* / none tokens: refused whatever Wycheproof's
        # verdict -- the key on import, and the token by the parser.
        if public is not None:
            key, error = _import_key(public)
            assert key is None and error is not None and error.code in ("key_unsupported", "malformed")
        with pytest.raises(VCGateError) as exc:
            parse_jws(test["jws"], algorithms=ALLOW)
        assert exc.value.code in ("algorithm_not_allowed", "malformed")
        return
    outcome = _run(test["jws"], public)
    if test["result"] == "valid":
        assert outcome.verdict in ("accepted", "signature-only"), outcome
        if outcome.verdict == "signature-only":
            assert outcome.error is not None and outcome.error.code == "malformed"
    elif test["result"] == "invalid":
        assert outcome.verdict == "refused", f"{test['comment']}: {outcome}"
    else:
        assert outcome.verdict in ("accepted", "signature-only", "refused")


def test_jose_vector_counts() -> None:
    """Enough applicable cases run, with the expected spread of outcomes."""
    counts: Counter[tuple[str, bool, str]] = Counter()
    for case in JOSE_CASES:
        kind, applicable, _public, _private, test = case.values
        counts[(kind, applicable, test["result"])] += 1
    assert sum(n for (k, _a, _r), n in counts.items() if k == "jws") == JWS_DATA["numberOfTests"] == 401
    assert sum(n for (k, _a, _r), n in counts.items() if k == "jwk") == JWK_DATA["numberOfTests"] == 26
    # ES256 groups: es256 (15), SpecialCaseEs256 (24), ec_key_for_encryption (2)
    assert counts[("jws", True, "valid")] >= 2
    assert counts[("jws", True, "invalid")] >= 38
    # JWK: the six EC key problems (alg/curve/kty mismatch, bad point, wrong use)
    assert counts[("jwk", True, "invalid")] >= 6
    # and the inapplicable ones are still run, as refusals
    assert counts[("jws", False, "valid")] + counts[("jws", False, "invalid")] >= 350


def test_jose_outcome_spread() -> None:
    """The applicable cases are refused for the right reasons, not all at one stage."""
    stages: Counter[tuple[str, str]] = Counter()
    codes: Counter[str] = Counter()
    for case in JOSE_CASES:
        kind, applicable, public, _private, test = case.values
        if not applicable or (kind, test["tcId"]) in KNOWN_SRC_BUGS:
            continue
        outcome = _run(test["jws"], public)
        stages[(outcome.verdict, outcome.stage)] += 1
        if outcome.error is not None:
            codes[outcome.error.code] += 1
    assert stages[("signature-only", "parse")] == 2  # es256 tc18 and SpecialCaseEs256 tc378
    assert stages[("accepted", "done")] == 0  # no Wycheproof JWS signs a JSON object
    assert stages[("refused", "signature")] >= 25  # modified signatures and payloads, r/s edge cases
    assert stages[("refused", "key")] == 8  # alg / curve / kty / point problems, and 3 keys marked for encryption
    assert stages[("refused", "parse")] >= 10  # missing parts, HS256 confusion, embedded jwk
    assert codes["header_not_allowed"] == 1  # es256 tc32: the attacker's key embedded as "jwk"
    assert codes["algorithm_not_allowed"] >= 1  # es256 tc31: HS256 keyed with the EC public key


def _is_alg_none(test: dict[str, Any]) -> bool:
    alg = _alg_of(test["jws"])
    return isinstance(alg, str) and alg.lower() == "none"


ALG_NONE = [test for group in JWS_DATA["testGroups"] for test in group["tests"] if _is_alg_none(test)]


@pytest.mark.parametrize("test", [pytest.param(t, id=f"tc{t['tcId']}-{_slug(t['comment'])}") for t in ALG_NONE])
def test_alg_none_refused(test: dict[str, Any]) -> None:
    assert len(ALG_NONE) >= 5  # tc16 and the four AlgIsNone cases, "none" and "NONE"
    with pytest.raises(VCGateError) as exc:
        parse_jws(test["jws"], algorithms=ALLOW)
    assert exc.value.code == "algorithm_not_allowed"
