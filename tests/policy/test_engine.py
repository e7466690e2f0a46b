"""Policy.decide: every constraint, matching edge cases, status modes, grants, the model field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import NOW
from vcgate.errors import HolderMismatchError, RevokedError, StatusUnavailableError, VCGateError
from vcgate.policy import Policy, PolicyDecision, RequestFacts, StatusOutcome
from vcgate.errors import ClaimMismatchError, CredentialRequiredError, NoMatchingRuleError
from vcgate.policy.engine import _predicate
from vcgate.policy import DENIAL_CODES

from .helpers import HOLDER, ISSUER, NARROW, OTHER_HOLDER, STATUS_ENTRY, UNTRUSTED, cred

POLICY = f"""
version: 1
audience: https://gw.example
trusted_issuers:
  - did: {ISSUER}
  - did: {NARROW}
    types: [ModelAccessCredential]
defaults:
  status: required
  holder_binding: true
rules:
  - name: health
    match: {{methods: [GET], paths: [/healthz, /.well-known/**]}}
    public: true
    grants: {{headers: {{X-Vcgate-Rule: $rule}}}}
  - name: no-admin
    match: {{paths: [/v1/admin/**]}}
    allow: false
  - name: equals
    match: {{paths: [/t/equals]}}
    require: {{claims: {{tier: {{equals: gold}}}}}}
  - name: equals-number
    match: {{paths: [/t/equals-number]}}
    require: {{claims: {{level: {{equals: 3}}}}}}
  - name: equals-bool
    match: {{paths: [/t/equals-bool]}}
    require: {{claims: {{beta: {{equals: true}}}}}}
  - name: one-of
    match: {{paths: [/t/one-of]}}
    require: {{claims: {{tier: {{one_of: [gold, silver]}}}}}}
  - name: glob
    match: {{paths: [/t/glob]}}
    require: {{claims: {{agent: {{glob: "agent-*"}}}}}}
  - name: range
    match: {{paths: [/t/range]}}
    require: {{claims: {{limits.rpm: {{min: 10, max: 100}}}}}}
  - name: contains
    match: {{paths: [/t/contains]}}
    require: {{claims: {{groups: {{contains: ml}}}}}}
  - name: combined
    match: {{paths: [/t/combined]}}
    require: {{claims: {{tier: {{glob: "g*", one_of: [gold, green]}}}}}}
  - name: typed
    match: {{paths: [/t/typed]}}
    require: {{types: [ModelAccessCredential, EmployeeCredential]}}
  - name: narrow-only
    match: {{paths: [/t/narrow]}}
    require: {{types: [ModelAccessCredential], issuers: [{NARROW}]}}
  - name: any-type
    match: {{paths: [/t/any-type]}}
  - name: no-binding
    match: {{paths: [/t/no-binding]}}
    require: {{holder_binding: false}}
  - name: age
    match: {{paths: [/t/age]}}
    require: {{max_age: 1d}}
  - name: status-required
    match: {{paths: [/t/status/required]}}
    require: {{status: required}}
  - name: status-fail-open
    match: {{paths: [/t/status/fail-open]}}
    require: {{status: fail-open}}
  - name: status-off
    match: {{paths: [/t/status/off]}}
    require: {{status: off}}
  - name: one-segment
    match: {{paths: ["/seg/*"]}}
    public: true
  - name: deep
    match: {{paths: ["/deep/**"]}}
    public: true
  - name: middle
    match: {{paths: ["/mid/**/end", "/pre/x-*-y"]}}
    public: true
  - name: hosts
    match:
      paths: [/h]
      hosts: [api.example.com, "*.models.example.com", "local.test:8443"]
    public: true
  - name: post-only
    match: {{methods: [post], paths: [/m]}}
    public: true
  - name: grants
    match: {{paths: [/t/grants]}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
        X-Vcgate-Issuer: $issuer
        X-Vcgate-Holder: $holder
        X-Vcgate-Tier: $claims.tier
        X-Vcgate-Combo: "tier=${{claims.tier}};rpm=$claims.limits.rpm"
        X-Vcgate-Literal: "fixed $$5"
        X-Vcgate-Missing: $claims.nope
        X-Vcgate-Rule: "rule:$rule"
        X-Vcgate-Model: $model
      scopes: [chat, "models:read"]
  - name: model-contains
    match: {{paths: [/t/model-contains]}}
    require:
      types: [ModelAccessCredential]
      claims: {{models: {{contains: $model}}}}
  - name: frontier
    match:
      methods: [POST]
      paths: [/v1/chat/completions]
      models: [gpt-4*, "o[0-9]*"]
    require:
      claims:
        tier: {{equals: gold}}
        models: {{contains: $model}}
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      claims: {{models: {{contains: $model}}}}
"""


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_yaml(POLICY)


def decide(policy: Policy, method: str, path: str, creds: Any = "default", **kwargs: Any) -> PolicyDecision:
    request = RequestFacts(
        method,
        path,
        host=kwargs.pop("host", None),
        model=kwargs.pop("model", None),
        body_available=kwargs.pop("body_available", True),
    )
    if creds == "default":
        creds = [cred()]
    kwargs.setdefault("holder", HOLDER)
    kwargs.setdefault("now", NOW)
    return policy.decide(request, creds, **kwargs)


def expect(decision: PolicyDecision, allow: bool, code: str | None, rule: str | None) -> None:
    assert (decision.allow, decision.code, decision.rule) == (allow, code, rule), decision
    if allow:
        assert decision.status == 200
    else:
        assert decision.status == DENIAL_CODES[code].status
        assert decision.reasons, "a denial always says why"


# --- claim constraints --------------------------------------------------------------------------

CLAIM_CASES = [
    # equals
    pytest.param("/t/equals", {}, True, id="equals-ok"),
    pytest.param("/t/equals", {"tier": "silver"}, False, id="equals-other-value"),
    pytest.param("/t/equals", {"tier": "GOLD"}, False, id="equals-case-sensitive"),
    pytest.param("/t/equals", {"tier": None}, False, id="equals-null"),
    pytest.param("/t/equals", {"tier": ["gold"]}, False, id="equals-list-is-not-the-value"),
    pytest.param("/t/equals-number", {}, True, id="equals-number-ok"),
    pytest.param("/t/equals-number", {"level": 3.0}, True, id="equals-number-float-same"),
    pytest.param("/t/equals-number", {"level": "3"}, False, id="equals-number-string-is-not-number"),
    pytest.param("/t/equals-bool", {}, True, id="equals-bool-ok"),
    pytest.param("/t/equals-bool", {"beta": 1}, False, id="equals-bool-1-is-not-true"),
    pytest.param("/t/equals-bool", {"beta": "true"}, False, id="equals-bool-string-is-not-bool"),
    # one_of
    pytest.param("/t/one-of", {"tier": "silver"}, True, id="one-of-ok"),
    pytest.param("/t/one-of", {"tier": "bronze"}, False, id="one-of-other"),
    pytest.param("/t/one-of", {"tier": ["gold"]}, False, id="one-of-unhashable-value"),
    # glob
    pytest.param("/t/glob", {}, True, id="glob-ok"),
    pytest.param("/t/glob", {"agent": "Agent-7"}, False, id="glob-case-sensitive"),
    pytest.param("/t/glob", {"agent": "my-agent-7"}, False, id="glob-anchored"),
    pytest.param("/t/glob", {"agent": 7}, False, id="glob-not-a-string"),
    # min / max
    pytest.param("/t/range", {}, True, id="range-ok"),
    pytest.param("/t/range", {"limits": {"rpm": 10}}, True, id="range-min-inclusive"),
    pytest.param("/t/range", {"limits": {"rpm": 100.0}}, True, id="range-max-inclusive"),
    pytest.param("/t/range", {"limits": {"rpm": 9}}, False, id="range-below"),
    pytest.param("/t/range", {"limits": {"rpm": 101}}, False, id="range-above"),
    pytest.param("/t/range", {"limits": {"rpm": "50"}}, False, id="range-string"),
    pytest.param("/t/range", {"limits": {"rpm": True}}, False, id="range-bool-is-not-number"),
    pytest.param("/t/range", {"limits": {}}, False, id="range-missing-nested"),
    pytest.param("/t/range", {"limits": 50}, False, id="range-parent-not-object"),
    # contains
    pytest.param("/t/contains", {}, True, id="contains-ok"),
    pytest.param("/t/contains", {"groups": ["ops"]}, False, id="contains-absent"),
    pytest.param("/t/contains", {"groups": "ml"}, False, id="contains-not-a-list"),
    pytest.param("/t/contains", {"groups": ["ML"]}, False, id="contains-case-sensitive"),
    # several kinds on one claim: all must hold
    pytest.param("/t/combined", {"tier": "green"}, True, id="combined-ok"),
    pytest.param("/t/combined", {"tier": "grey"}, False, id="combined-glob-ok-one-of-not"),
    pytest.param("/t/combined", {"tier": "silver"}, False, id="combined-neither"),
]


@pytest.mark.parametrize("path, claims, allowed", CLAIM_CASES)
def test_claim_constraints(policy, path, claims, allowed):
    decision = decide(policy, "GET", path, [cred(**claims)])
    rule = path.rsplit("/", 1)[1]
    if allowed:
        expect(decision, True, None, rule)
    else:
        expect(decision, False, "claim_mismatch", rule)
        assert decision.status == 403


def test_missing_claim_is_named(policy):
    body = dict(cred().claims)
    del body["tier"]
    decision = decide(policy, "GET", "/t/equals", [cred(claims=body)])
    expect(decision, False, "claim_mismatch", "equals")
    assert "claim 'tier' is missing" in decision.message


@pytest.mark.parametrize(
    "constraint_yaml",
    [
        "{equals: gold}",
        "{equals: 3}",
        "{equals: true}",
        "{equals: null}",
        "{one_of: [gold, 3, true]}",
        "{one_of: [a, b]}",
        "{glob: 'g?ld'}",
        "{min: 2}",
        "{max: 3.5}",
        "{contains: ml}",
        "{contains: 3}",
        "{glob: 'g*', one_of: [gold]}",
    ],
)
@pytest.mark.parametrize(
    "value",
    ["gold", "GOLD", 3, 3.0, 4, True, False, None, ["ml", 3], ["gold"], {"a": 1}, "", 2, 3.5],
)
def test_fast_predicate_agrees_with_explanation(constraint_yaml, value):
    text = f"""version: 1
audience: https://gw.example
trusted_issuers: [{{did: {ISSUER}}}]
rules:
  - name: r
    match: {{}}
    require: {{claims: {{c: {constraint_yaml}}}}}
"""
    constraint = Policy.from_yaml(text).rules[0].require.claims[0]
    predicate = _predicate(constraint)
    for claims in ({"c": value}, {}):
        assert predicate(claims) == (constraint.test(claims, None, True) is None), (constraint_yaml, claims)


# --- credentials: types, issuers, holder, age, expiry -------------------------------------------------

CREDENTIAL_CASES = [
    pytest.param("/t/typed", dict(types=("ModelAccessCredential", "EmployeeCredential")), HOLDER, True, None, id="types-all-present"),
    pytest.param("/t/typed", dict(), HOLDER, False, "credential_type_missing", id="types-one-missing"),
    pytest.param("/t/any-type", dict(issuer=UNTRUSTED), HOLDER, False, "issuer_not_trusted", id="untrusted-issuer"),
    pytest.param("/t/narrow", dict(), HOLDER, False, "issuer_not_trusted", id="issuer-not-in-rule-issuers"),
    pytest.param("/t/narrow", dict(issuer=NARROW), HOLDER, True, None, id="issuer-in-rule-issuers"),
    pytest.param("/t/any-type", dict(issuer=NARROW), HOLDER, True, None, id="narrow-issuer-own-type"),
    pytest.param(
        "/t/any-type", dict(issuer=NARROW, types=("EmployeeCredential",)), HOLDER, False, "issuer_not_trusted",
        id="narrow-issuer-other-type",
    ),
    pytest.param(
        "/t/typed", dict(issuer=NARROW, types=("ModelAccessCredential", "EmployeeCredential")), HOLDER,
        False, "issuer_not_trusted", id="narrow-issuer-not-trusted-for-required-type",
    ),
    pytest.param("/t/any-type", dict(), OTHER_HOLDER, False, "holder_mismatch", id="holder-not-subject"),
    pytest.param("/t/any-type", dict(), None, False, "holder_mismatch", id="holder-unknown"),
    pytest.param("/t/any-type", dict(subject=None), HOLDER, False, "holder_mismatch", id="credential-without-subject"),
    pytest.param("/t/no-binding", dict(), OTHER_HOLDER, True, None, id="holder-binding-off"),
    pytest.param("/t/no-binding", dict(), None, True, None, id="holder-binding-off-no-holder"),
    pytest.param("/t/any-type", dict(valid_until=NOW), HOLDER, False, "expired", id="expired-at-now"),
    pytest.param("/t/any-type", dict(valid_until=NOW + 1), HOLDER, True, None, id="not-yet-expired"),
    pytest.param("/t/age", dict(valid_from=NOW - 86400 + 1), HOLDER, True, None, id="max-age-inside"),
    pytest.param("/t/age", dict(valid_from=NOW - 86400 - 1), HOLDER, False, "credential_too_old", id="max-age-over"),
    pytest.param(
        "/t/age", dict(valid_from=NOW - 10 * 86400, payload={"iat": NOW - 60}), HOLDER, True, None,
        id="max-age-uses-iat",
    ),
    pytest.param("/t/age", dict(valid_from=None), HOLDER, False, "credential_too_old", id="max-age-no-issuance-time"),
]


@pytest.mark.parametrize("path, overrides, holder, allowed, code", CREDENTIAL_CASES)
def test_credential_requirements(policy, path, overrides, holder, allowed, code):
    decision = decide(policy, "GET", path, [cred(**overrides)], holder=holder)
    rule = {"/t/narrow": "narrow-only"}.get(path, path.rsplit("/", 1)[1])
    expect(decision, allowed, code, rule)
    if allowed:
        assert decision.subject == overrides.get("subject", cred().subject)
        assert decision.issuer == overrides.get("issuer", ISSUER)


def test_holder_mismatch_is_401(policy):
    decision = decide(policy, "GET", "/t/any-type", [cred()], holder=OTHER_HOLDER)
    assert decision.status == HolderMismatchError.status == 401
    assert isinstance(decision.error(), HolderMismatchError)


@pytest.mark.parametrize("creds", [pytest.param(None, id="none"), pytest.param([], id="empty")])
def test_no_credential_is_401_credential_required(policy, creds):
    decision = decide(policy, "GET", "/t/equals", creds)
    expect(decision, False, "credential_required", "equals")
    assert decision.status == 401
    assert isinstance(decision.error(), CredentialRequiredError)


def test_second_credential_can_satisfy(policy):
    first = cred(types=("EmployeeCredential",))
    second = cred(types=("ModelAccessCredential", "EmployeeCredential"), subject=HOLDER)
    decision = decide(policy, "GET", "/t/typed", [first, cred(issuer=UNTRUSTED), second])
    expect(decision, True, None, "typed")
    assert decision.credential is second


def test_denial_reports_closest_credential_and_every_reason(policy):
    untrusted = cred(issuer=UNTRUSTED, tier="silver")
    near_miss = cred(tier="silver")
    decision = decide(policy, "GET", "/t/equals", [untrusted, near_miss])
    expect(decision, False, "claim_mismatch", "equals")
    assert decision.credential is near_miss
    assert decision.message.startswith("credential #2")
    codes = [r.code for r in decision.reasons]
    # the untrusted one fails twice (issuer, claim), the near miss once
    assert codes.count("issuer_not_trusted") == 1 and codes.count("claim_mismatch") == 2


# --- status ----------------------------------------------------------------------------------------

S = STATUS_ENTRY
STATUS_CASES = [
    pytest.param("required", StatusOutcome.OK, True, None, id="required-ok"),
    pytest.param("required", "ok", True, None, id="required-ok-as-string"),
    pytest.param("required", StatusOutcome.REVOKED, False, "revoked", id="required-revoked"),
    pytest.param("required", "suspended", False, "suspended", id="required-suspended"),
    pytest.param("required", StatusOutcome.UNAVAILABLE, False, "status_unavailable", id="required-unavailable"),
    pytest.param("required", None, False, "status_unavailable", id="required-no-result"),
    pytest.param("required", StatusOutcome.UNSUPPORTED, False, "status_unsupported", id="required-unsupported"),
    pytest.param("fail-open", StatusOutcome.OK, True, None, id="fail-open-ok"),
    pytest.param("fail-open", StatusOutcome.UNAVAILABLE, True, None, id="fail-open-unavailable"),
    pytest.param("fail-open", None, True, None, id="fail-open-no-result"),
    pytest.param("fail-open", StatusOutcome.REVOKED, False, "revoked", id="fail-open-revoked"),
    pytest.param("fail-open", StatusOutcome.UNSUPPORTED, False, "status_unsupported", id="fail-open-unsupported"),
    pytest.param("off", StatusOutcome.REVOKED, True, None, id="off-revoked-ignored"),
    pytest.param("off", None, True, None, id="off-no-result"),
]


@pytest.mark.parametrize("mode, outcome, allowed, code", STATUS_CASES)
def test_status_modes(policy, mode, outcome, allowed, code):
    c = cred(status=(S,))
    results = {c.token: outcome} if outcome is not None else {}
    decision = decide(policy, "GET", f"/t/status/{mode}", [c], status_results=results)
    expect(decision, allowed, code, f"status-{mode}")
    if allowed:  # an allow carries a note only when fail-open let an unknown status through
        noted = [r.code for r in decision.reasons]
        fail_open = mode == "fail-open" and outcome in (None, StatusOutcome.UNAVAILABLE)
        assert noted == (["status_unavailable"] if fail_open else [])


def test_status_default_is_required(policy):
    c = cred(status=(S,))
    expect(decide(policy, "GET", "/t/any-type", [c]), False, "status_unavailable", "any-type")
    decision = decide(policy, "GET", "/t/any-type", [c], status_results={c.token: "revoked"})
    assert decision.status == RevokedError.status
    assert decide(policy, "GET", "/t/any-type", [c], status_results={c.token: "unavailable"}).status == (
        StatusUnavailableError.status
    )


def test_credential_without_status_entry_needs_no_result(policy):
    expect(decide(policy, "GET", "/t/status/required", [cred()], status_results=None), True, None, "status-required")


def test_unknown_status_outcome_is_a_programming_error(policy):
    c = cred(status=(S,))
    with pytest.raises(ValueError, match="unknown status outcome"):
        decide(policy, "GET", "/t/status/required", [c], status_results={c.token: "maybe"})


@pytest.mark.parametrize(
    "error, outcome",
    [
        (RevokedError(), StatusOutcome.REVOKED),
        (DENIAL_CODES["suspended"](), StatusOutcome.SUSPENDED),
        (DENIAL_CODES["status_unsupported"](), StatusOutcome.UNSUPPORTED),
        (StatusUnavailableError(), StatusOutcome.UNAVAILABLE),
        (VCGateError(), StatusOutcome.UNAVAILABLE),
    ],
)
def test_status_outcome_from_error(error, outcome):
    assert StatusOutcome.from_error(error) is outcome


# --- rule order, explicit and default deny, public rules ---------------------------------------------


def test_explicit_deny(policy):
    decision = decide(policy, "GET", "/v1/admin/users")
    expect(decision, False, "denied_by_rule", "no-admin")


def test_default_deny(policy):
    decision = decide(policy, "GET", "/nowhere")
    expect(decision, False, "no_matching_rule", None)
    assert decision.status == 403
    assert isinstance(decision.error(), NoMatchingRuleError)


def test_first_matching_rule_decides(policy):
    # frontier (first) matches gpt-4o and refuses silver; chat (later) would have allowed it.
    decision = decide(policy, "POST", "/v1/chat/completions", [cred(tier="silver")], model="gpt-4o")
    expect(decision, False, "claim_mismatch", "frontier")
    expect(decide(policy, "POST", "/v1/chat/completions", model="gpt-4o"), True, None, "frontier")
    expect(decide(policy, "POST", "/v1/chat/completions", [cred(tier="silver")], model="llama-3"), True, None, "chat")


def test_public_rule_needs_no_credential(policy):
    decision = decide(policy, "GET", "/healthz", None, holder=None)
    expect(decision, True, None, "health")
    assert dict(decision.grants.headers) == {"X-Vcgate-Rule": "health"}
    assert decision.subject is None and decision.credential is None


@pytest.mark.parametrize(
    "method, path, allowed",
    [
        pytest.param("GET", "/healthz", True, id="upper"),
        pytest.param("get", "/healthz", True, id="lower"),
        pytest.param("GeT", "/healthz", True, id="mixed"),
        pytest.param("POST", "/healthz", False, id="other-method"),
        pytest.param("POST", "/m", True, id="rule-written-lowercase"),
        pytest.param("post", "/m", True, id="both-lowercase"),
        pytest.param("GET", "/m", False, id="rule-method-only"),
    ],
)
def test_method_case(policy, method, path, allowed):
    decision = decide(policy, method, path, None)
    assert decision.allow is allowed
    if not allowed:
        assert decision.code == "no_matching_rule"


# --- paths: globs and traversal tricks -----------------------------------------------------------


@pytest.mark.parametrize(
    "path, rule",
    [
        pytest.param("/seg/a", "one-segment", id="star-one-segment"),
        pytest.param("/seg/a/b", None, id="star-not-across-slash"),
        pytest.param("/seg/", None, id="star-not-empty-segment"),
        pytest.param("/seg", None, id="star-needs-a-segment"),
        pytest.param("/deep", "deep", id="doublestar-bare-prefix"),
        pytest.param("/deep/", "deep", id="doublestar-trailing-slash"),
        pytest.param("/deep/a/b/c", "deep", id="doublestar-any-depth"),
        pytest.param("/deeper", None, id="doublestar-not-a-string-prefix"),
        pytest.param("/mid/end", "middle", id="inner-doublestar-zero-segments"),
        pytest.param("/mid/a/b/end", "middle", id="inner-doublestar-two-segments"),
        pytest.param("/mid/a/b/end2", None, id="inner-doublestar-anchored"),
        pytest.param("/pre/x-abc-y", "middle", id="star-inside-segment"),
        pytest.param("/pre/x-a/b-y", None, id="star-inside-segment-not-across-slash"),
        pytest.param("/healthz?probe=1", "health", id="query-string-ignored"),
        pytest.param("/.well-known/oauth-protected-resource", "health", id="dot-prefixed-segment-is-fine"),
        pytest.param("/HEALTHZ", None, id="paths-case-sensitive"),
        # Many servers route /healthz/ to /healthz: the bare path's rules apply too (a deny rule
        # on an exact path cannot be passed with a trailing slash).
        pytest.param("/healthz/", "health", id="trailing-slash-also-matches-the-bare-path"),
        pytest.param("/v1/%61dmin/users", "no-admin", id="percent-encoded-letters-decoded"),
        pytest.param("/v1/admin", "no-admin", id="deny-covers-bare-prefix"),
        pytest.param("/v1/admin/x?y=/../z", "no-admin", id="dots-in-query-are-not-path"),
        pytest.param("/v1/administrator", None, id="deny-not-a-string-prefix"),
    ],
)
def test_path_globs(policy, path, rule):
    decision = decide(policy, "GET", path, None)
    assert decision.rule == rule
    if rule is None:
        assert decision.code == "no_matching_rule"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/v1/../admin/users", id="dotdot"),
        pytest.param("/v1/admin/..", id="trailing-dotdot"),
        pytest.param("/v1/./admin/users", id="dot"),
        pytest.param("/v1//admin/users", id="empty-segment"),
        pytest.param("//v1/admin", id="leading-double-slash"),
        pytest.param("/v1/%2e%2e/admin/users", id="encoded-dotdot"),
        pytest.param("/v1/%2E%2E/admin", id="encoded-dotdot-upper"),
        pytest.param("/v1/.%2e/admin", id="half-encoded-dotdot"),
        pytest.param("/v1/admin%2Fusers", id="encoded-slash"),
        pytest.param("/v1%5cadmin", id="encoded-backslash"),
        pytest.param("/v1\\admin", id="backslash"),
        pytest.param("/v1/%252e%252e/admin", id="double-encoding"),
        pytest.param("/v1/%00", id="encoded-nul"),
        pytest.param("/v1/%0d%0aX: y", id="encoded-crlf"),
        pytest.param("/v1/%zz", id="bad-percent"),
        pytest.param("/v1/%", id="truncated-percent"),
        pytest.param("/v1/%c0%ae%c0%ae/admin", id="overlong-utf8"),
        pytest.param("/v1/admin#frag", id="fragment"),
        pytest.param("/a b", id="space"),
        pytest.param("v1/admin", id="relative"),
        pytest.param("", id="empty"),
        pytest.param("*", id="asterisk-form"),
    ],
)
def test_path_tricks_are_refused(policy, path):
    decision = decide(policy, "GET", path)
    expect(decision, False, "request_invalid", None)
    assert decision.status == 400


# --- hosts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, outcome",
    [
        pytest.param("api.example.com", "hosts", id="exact"),
        pytest.param("API.Example.COM", "hosts", id="case-insensitive"),
        pytest.param("api.example.com:443", "hosts", id="port-ignored-when-glob-has-none"),
        pytest.param("api.example.com.", "hosts", id="trailing-dot"),
        pytest.param("a.models.example.com", "hosts", id="wildcard"),
        pytest.param("models.example.com", "no_matching_rule", id="wildcard-needs-a-label"),
        pytest.param("local.test:8443", "hosts", id="glob-with-port"),
        pytest.param("local.test", "no_matching_rule", id="glob-with-port-needs-port"),
        pytest.param("local.test:8444", "no_matching_rule", id="glob-with-port-other-port"),
        pytest.param("api.example.com.evil.net", "no_matching_rule", id="suffix-attack"),
        pytest.param(None, "no_matching_rule", id="no-host"),
        pytest.param("api.example.com/x", "request_invalid", id="slash"),
        pytest.param("evil@api.example.com", "request_invalid", id="userinfo"),
        pytest.param("api.example.com\r\n", "request_invalid", id="crlf"),
    ],
)
def test_hosts(policy, host, outcome):
    decision = decide(policy, "GET", "/h", None, host=host)
    if outcome == "hosts":
        expect(decision, True, None, "hosts")
    else:
        assert decision.code == outcome


# --- the model field and the body ------------------------------------------------------------------


def test_model_glob_and_contains_model(policy):
    expect(decide(policy, "POST", "/v1/chat/completions", model="o3"), False, "claim_mismatch", "frontier")
    expect(
        decide(policy, "POST", "/v1/chat/completions", [cred(models=["o3"])], model="o3"), True, None, "frontier"
    )
    decision = decide(policy, "POST", "/v1/chat/completions", model="mistral-large")
    expect(decision, False, "claim_mismatch", "chat")
    assert "does not contain 'mistral-large'" in decision.message


def test_contains_model_needs_a_list(policy):
    decision = decide(policy, "POST", "/v1/chat/completions", [cred(models="llama-3")], model="llama-3")
    expect(decision, False, "claim_mismatch", "chat")


def test_body_seen_without_model(policy):
    # frontier cannot match (no model); chat matches and needs the model in the claim list.
    decision = decide(policy, "POST", "/v1/chat/completions", body_available=True)
    expect(decision, False, "claim_mismatch", "chat")
    assert "names no model" in decision.message


def test_body_not_seen_and_a_rule_could_allow(policy):
    decision = decide(policy, "POST", "/v1/chat/completions", body_available=False)
    expect(decision, False, "body_required", "frontier")
    assert decision.status == 403


def test_body_not_seen_but_every_outcome_denies(policy):
    decision = decide(policy, "POST", "/v1/chat/completions", None, body_available=False)
    expect(decision, False, "credential_required", "frontier")
    assert decision.status == 401  # so the gateway still challenges
    decision = decide(policy, "POST", "/v1/chat/completions", [cred(issuer=UNTRUSTED)], body_available=False)
    expect(decision, False, "issuer_not_trusted", "frontier")


def test_contains_model_decided_without_body_when_other_requirements_fail(policy):
    decision = decide(policy, "GET", "/t/model-contains", [cred(types=("Other",))], body_available=False)
    expect(decision, False, "credential_type_missing", "model-contains")
    decision = decide(policy, "GET", "/t/model-contains", body_available=False)
    expect(decision, False, "body_required", "model-contains")
    expect(decide(policy, "GET", "/t/model-contains", model="gpt-4o"), True, None, "model-contains")


def test_model_given_counts_as_body_seen(policy):
    decision = decide(policy, "POST", "/v1/chat/completions", model="gpt-4o", body_available=False)
    expect(decision, True, None, "frontier")


def test_needs_body_flags(policy):
    flags = {r.name: r.needs_body for r in policy.rules}
    assert flags["frontier"] and flags["chat"] and flags["model-contains"]
    assert not flags["equals"] and not flags["grants"]
    assert policy.needs_body


# --- grants ------------------------------------------------------------------------------------


def test_grants_substitution(policy):
    decision = decide(policy, "GET", "/t/grants", model="gpt-4o")
    expect(decision, True, None, "grants")
    assert dict(decision.grants.headers) == {
        "X-Vcgate-Subject": HOLDER,
        "X-Vcgate-Issuer": ISSUER,
        "X-Vcgate-Holder": HOLDER,
        "X-Vcgate-Tier": "gold",
        "X-Vcgate-Combo": "tier=gold;rpm=50",
        "X-Vcgate-Literal": "fixed $5",
        "X-Vcgate-Rule": "rule:grants",
        "X-Vcgate-Model": "gpt-4o",
    }  # X-Vcgate-Missing: the claim does not exist, so the header is left out
    assert decision.grants.scopes == ("chat", "models:read")


@pytest.mark.parametrize(
    "tier, rendered",
    [
        pytest.param(5, "5", id="int"),
        pytest.param(2.5, "2.5", id="float"),
        pytest.param(True, "true", id="bool"),
        pytest.param(["a", "b"], '["a","b"]', id="list-as-json"),
        pytest.param({"b": 1, "a": "x"}, '{"a":"x","b":1}', id="object-as-sorted-json"),
        pytest.param("café", None, id="non-ascii-refused"),
        pytest.param(["café"], '["caf\\u00e9"]', id="non-ascii-inside-json-escaped"),
    ],
)
def test_grant_value_rendering(policy, tier, rendered):
    decision = decide(policy, "GET", "/t/grants", [cred(tier=tier)])
    if rendered is None:
        expect(decision, False, "grant_invalid", "grants")
    else:
        assert decision.grants.headers["X-Vcgate-Tier"] == rendered


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("gold\r\nX-Vcgate-Admin: yes", id="crlf"),
        pytest.param("gold\nX-Injected: 1", id="lf"),
        pytest.param("gold\r", id="cr"),
        pytest.param("gold\x00", id="nul"),
        pytest.param("gold\tx", id="tab"),
        pytest.param("gold\x7f", id="del"),
        pytest.param("gold\u2028", id="unicode-line-separator"),
        pytest.param("x" * 5000, id="too-long"),
    ],
)
def test_header_injection_refused(policy, value):
    decision = decide(policy, "GET", "/t/grants", [cred(tier=value)])
    expect(decision, False, "grant_invalid", "grants")
    assert decision.grants.headers == {}


def test_header_injection_through_subject_refused(policy):
    bad = "did:key:z6Mk\r\nX-Vcgate-Admin: 1"
    decision = decide(policy, "GET", "/t/grants", [cred(subject=bad)], holder=bad)
    expect(decision, False, "grant_invalid", "grants")


def test_deny_has_no_grants(policy):
    assert decide(policy, "GET", "/t/grants", None).grants.headers == {}


# --- decision object -----------------------------------------------------------------------------


def test_decision_error_and_dict(policy):
    decision = decide(policy, "GET", "/t/equals", [cred(tier="silver")])
    err = decision.error()
    assert isinstance(err, ClaimMismatchError)
    assert err.to_dict()["error"] == "claim_mismatch"
    body = decision.to_dict()
    assert body["allow"] is False and body["code"] == "claim_mismatch" and body["rule"] == "equals"
    assert body["reasons"][0][0] == "claim_mismatch"
    assert decide(policy, "GET", "/healthz", None).error() is None


def test_decision_is_immutable(policy):
    decision = decide(policy, "GET", "/healthz", None)
    with pytest.raises(AttributeError):
        decision.allow = False  # type: ignore[misc]


def test_route_memo_is_bounded(policy, monkeypatch):
    import vcgate.policy.engine as engine

    fresh = Policy(policy.document)
    monkeypatch.setattr(engine, "ROUTE_CACHE_SIZE", 8)
    for i in range(50):
        decide(fresh, "GET", f"/nowhere/{i}")
    decide(fresh, "GET", "/x" * 600)  # too long to memoise
    assert len(fresh._routes) <= 8
    expect(decide(fresh, "GET", "/healthz", None), True, None, "health")


def test_body_required_names_the_model_dependent_rule():
    text = f"""version: 1
audience: https://gw.example
trusted_issuers: [{{did: {ISSUER}}}]
rules:
  - name: no-o1
    match: {{paths: [/v1/chat/completions], models: ["o1*"]}}
    allow: false
  - name: chat
    match: {{paths: [/v1/chat/completions]}}
"""
    policy = Policy.from_yaml(text)
    decision = decide(policy, "POST", "/v1/chat/completions", body_available=False)
    expect(decision, False, "body_required", "no-o1")
    assert "rule 'no-o1' depends on the request's model" in decision.message
    expect(decide(policy, "POST", "/v1/chat/completions", model="o1-mini"), False, "denied_by_rule", "no-o1")
    expect(decide(policy, "POST", "/v1/chat/completions", model="gpt-4o"), True, None, "chat")
    # without a credential every possibility denies: the first possible rule answers
    decision = decide(policy, "POST", "/v1/chat/completions", None, body_available=False)
    expect(decision, False, "denied_by_rule", "no-o1")
