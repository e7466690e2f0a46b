"""Loading the policy file: errors name the line and the field; YAML pitfalls are closed."""

from __future__ import annotations

import pytest

from vcgate.policy import Policy, parse_duration
from vcgate.errors import PolicyError
from vcgate.policy.model import compile_host_glob, compile_path_glob, compile_text_glob

from .helpers import ISSUER, NARROW, header, line_of

RULE = """  - name: r
    match: {paths: [/x]}
"""


def problems(text: str) -> list:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(text, source="p.yaml")
    assert info.value.code == "policy_invalid"
    assert info.value.problems
    return list(info.value.problems)


# Each case: the policy text, the text on the offending line, the field, words of the message.
INVALID = [
    pytest.param(
        header() + RULE + "    requir:\n      types: [A]\n",
        "requir:", "rules[0] (r).requir", "did you mean 'require'", id="typo-unknown-key",
    ),
    pytest.param(
        f"version: 1\naudience: https://gw.example\ntrusted_issuers: [{{did: {ISSUER}}}]\nrule:\n" + RULE,
        "rule:", "rule", "did you mean 'rules'", id="typo-top-level",
    ),
    pytest.param(
        header() + "  - name: r\n    match:\n      methods: GET\n",
        "methods: GET", "rules[0] (r).match.methods", "expected a list, found a string", id="wrong-type-list",
    ),
    pytest.param(
        header() + RULE + "    allow: no\n",
        "allow: no", "rules[0] (r).allow", "expected true or false", id="wrong-type-yaml11-boolean",
    ),
    pytest.param(
        header() + RULE + "    allow: 'false'\n",
        "allow: 'false'", "rules[0] (r).allow", "expected true or false, found a string", id="wrong-type-quoted-bool",
    ),
    pytest.param(
        header().replace("version: 1", 'version: "1"') + RULE,
        "version:", "version", "expected the integer 1", id="version-string",
    ),
    pytest.param(header().replace("version: 1", "version: 2") + RULE, "version:", "version", "unsupported", id="version-2"),
    pytest.param(
        header() + "  - name: r\n    match: {paths: [v1/chat]}\n",
        "v1/chat", "rules[0] (r).match.paths[0]", "must start with '/'", id="bad-glob-relative",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {paths: [/v1/**x]}\n",
        "**x", "rules[0] (r).match.paths[0]", "whole path segment", id="bad-glob-doublestar",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {paths: [/v1/../admin]}\n",
        "../admin", "rules[0] (r).match.paths[0]", "dot segments", id="bad-glob-dotdot",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {paths: [/v1//x]}\n",
        "/v1//x", "rules[0] (r).match.paths[0]", "empty path segment", id="bad-glob-empty-segment",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {paths: ['/v1/[ab]']}\n",
        "[ab]", "rules[0] (r).match.paths[0]", "'['", id="bad-glob-class",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {paths: ['/v1/x?y=1']}\n",
        "x?y", "rules[0] (r).match.paths[0]", "query string", id="bad-glob-query",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {paths: ['/v1/%2e']}\n",
        "%2e", "rules[0] (r).match.paths[0]", "decoded", id="bad-glob-percent",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {paths: [/x], models: ['gpt-[4']}\n",
        "gpt-[4", "rules[0] (r).match.models[0]", "unbalanced", id="bad-glob-model",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {hosts: ['api.example.com/x']}\n",
        "api.example", "rules[0] (r).match.hosts[0]", "host glob", id="bad-glob-host",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {methods: ['GE T']}\n",
        "GE T", "rules[0] (r).match.methods[0]", "not an HTTP method", id="bad-method",
    ),
    pytest.param(
        header() + RULE + "    require: {max_age: 30}\n",
        "max_age", "rules[0] (r).require.max_age", "no unit", id="bad-duration-bare-number",
    ),
    pytest.param(
        header() + RULE + "    require: {max_age: 30x}\n",
        "max_age", "rules[0] (r).require.max_age", "not a duration", id="bad-duration-unit",
    ),
    pytest.param(
        header(defaults="defaults:\n  max_credential_age: 0d\n") + RULE,
        "max_credential_age", "defaults.max_credential_age", "positive", id="bad-duration-zero",
    ),
    pytest.param(
        header() + RULE + "    require:\n      claims:\n        tier: {regex: gold}\n",
        "regex", "rules[0] (r).require.claims.tier.regex", "unknown key 'regex'", id="unknown-constraint",
    ),
    pytest.param(
        header() + RULE + "    require:\n      claims:\n        tier: gold\n",
        "tier: gold", "rules[0] (r).require.claims.tier", "expected a constraint like", id="bare-constraint",
    ),
    pytest.param(
        header() + RULE + "    require:\n      claims:\n        tier: {}\n",
        "tier: {}", "rules[0] (r).require.claims.tier", "empty constraint", id="empty-constraint",
    ),
    pytest.param(
        header() + RULE + "    require:\n      claims:\n        tier: {one_of: []}\n",
        "one_of", "rules[0] (r).require.claims.tier.one_of", "must not be empty", id="empty-one-of",
    ),
    pytest.param(
        header() + RULE + "    require:\n      claims:\n        rpm: {min: 10, max: 5}\n",
        "min: 10", "rules[0] (r).require.claims.rpm.min", "greater than max", id="min-over-max",
    ),
    pytest.param(
        header() + RULE + "    require:\n      claims:\n        rpm: {min: '10'}\n",
        "min:", "rules[0] (r).require.claims.rpm.min", "finite number", id="min-string",
    ),
    pytest.param(
        header() + RULE + "    require:\n      claims:\n        rpm: {max: .nan}\n",
        "max:", "rules[0] (r).require.claims.rpm.max", "finite number", id="max-nan",
    ),
    pytest.param(
        header() + RULE + "    require:\n      claims:\n        tier: {equals: $subject}\n",
        "equals", "rules[0] (r).require.claims.tier.equals", "variables are only allowed", id="unescaped-dollar",
    ),
    pytest.param(
        header() + RULE + "    require:\n      claims:\n        my tier: {equals: a}\n",
        "my tier", "rules[0] (r).require.claims.my tier", "dot-separated", id="claim-name-space",
    ),
    pytest.param(header() + "", "rules:", "rules", "expected a list, found nothing", id="rules-null"),
    pytest.param(header() + "  []\n", "[]", "rules", "must not be empty", id="empty-rules"),
    pytest.param(
        "version: 1\naudience: https://gw.example\ntrusted_issuers:\n  - did: https://issuer.example\nrules:\n" + RULE,
        "https://issuer", "trusted_issuers[0].did", "is not a DID", id="issuer-not-a-did",
    ),
    pytest.param(
        f"version: 1\naudience: https://gw.example\ntrusted_issuers:\n  - {ISSUER}\nrules:\n" + RULE,
        "- did:key", "trusted_issuers[0]", "expected a mapping", id="issuer-bare-string",
    ),
    pytest.param(
        header(extra_issuers=f"  - did: {ISSUER}\n") + RULE,
        (f"did: {ISSUER}", 2), "trusted_issuers[1].did", "listed twice", id="issuer-duplicate",
    ),
    pytest.param(
        header() + RULE + f"    require: {{issuers: [{NARROW}]}}\n",
        "require: {issuers", "rules[0] (r).require.issuers[0]", "not in trusted_issuers", id="rule-issuer-not-trusted",
    ),
    pytest.param(
        header() + RULE + RULE.replace("/x", "/y"),
        ("name: r", 2), "rules[1] (r).name", "duplicate rule name 'r' (first at line 6)", id="duplicate-rule-names",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {paths: [/x]}\n    match: {paths: [/y]}\n",
        "match: {paths: [/y]}", "rules[0] (r).match", "duplicate key 'match'", id="duplicate-key",
    ),
    pytest.param(
        header() + "  - name: my rule\n    match: {}\n",
        "my rule", "rules[0] (my rule).name", "letters, digits", id="rule-name-charset",
    ),
    pytest.param(header() + "  - name: r\n", "name: r", "rules[0] (r)", "missing required key 'match'", id="missing-match"),
    pytest.param(
        f"version: 1\ntrusted_issuers: [{{did: {ISSUER}}}]\nrules:\n" + RULE,
        "version", "", "missing required key 'audience'", id="missing-audience",
    ),
    pytest.param(
        header().replace("https://gw.example", "gw.example") + RULE,
        "audience", "audience", "gateway's URL", id="audience-not-url",
    ),
    pytest.param(
        header(defaults="defaults:\n  status: offf\n") + RULE,
        "offf", "defaults.status", "did you mean 'off'", id="status-typo",
    ),
    pytest.param(
        header() + RULE + "    grants:\n      headers:\n        Authorization: $subject\n",
        "Authorization", "rules[0] (r).grants.headers.Authorization", "X-Vcgate-", id="grant-header-not-vcgate",
    ),
    pytest.param(
        header() + RULE + "    grants:\n      headers:\n        X-Vcgate-S: $subjekt\n",
        "$subjekt", "rules[0] (r).grants.headers.X-Vcgate-S", "unknown variable '$subjekt'", id="grant-unknown-variable",
    ),
    pytest.param(
        header() + RULE + "    grants:\n      headers:\n        X-Vcgate-S: 'cost $ 5'\n",
        "cost", "rules[0] (r).grants.headers.X-Vcgate-S", "lone '$'", id="grant-lone-dollar",
    ),
    pytest.param(
        header() + RULE + "    grants:\n      headers:\n        X-Vcgate-A: a\n        x-vcgate-a: b\n",
        "x-vcgate-a", "rules[0] (r).grants.headers.x-vcgate-a", "duplicate header", id="grant-duplicate-header",
    ),
    pytest.param(
        header() + RULE + "    grants:\n      scopes: ['a b']\n",
        "a b", "rules[0] (r).grants.scopes[0]", "without spaces", id="grant-scope",
    ),
    pytest.param(
        header() + RULE + "    allow: false\n    require: {types: [A]}\n",
        "require:", "rules[0] (r).require", "deny rule", id="deny-rule-with-require",
    ),
    pytest.param(
        header() + RULE + "    public: true\n    require: {types: [A]}\n",
        "require:", "rules[0] (r).require", "public rule", id="public-rule-with-require",
    ),
    pytest.param(
        header() + RULE + "    public: true\n    grants: {headers: {X-Vcgate-S: $subject}}\n",
        "grants:", "rules[0] (r).grants.headers.X-Vcgate-S", "no credential", id="public-rule-credential-variable",
    ),
    pytest.param(
        header() + "  - name: r\n    match: &m {paths: [/x]}\n  - name: s\n    match: *m\n",
        "*m", "", "aliases", id="yaml-alias",
    ),
    pytest.param(
        header() + "  - name: !!python/object:os.system r\n    match: {}\n",
        "!!python", "rules[0].name", "expected a string", id="yaml-python-tag",
    ),
    pytest.param(
        header() + "  - name: r\n    match: {paths: [/x]\n",
        "", "", "YAML syntax error", id="yaml-syntax",
    ),
    pytest.param("- a\n- b\n", "- a", "", "expected a mapping, found a list", id="top-level-list"),
    pytest.param(
        header() + RULE + "    require: {status: false}\n",
        "status:", "rules[0] (r).require.status", "expected a string, found a boolean", id="status-boolean",
    ),
]


@pytest.mark.parametrize("text, marker, field, words", INVALID)
def test_validation_names_line_and_field(text, marker, field, words):
    found = problems(text)
    first = found[0]
    assert first.source == "p.yaml"
    assert words in first.message, str(first)
    assert first.field == field, str(first)
    if marker:
        marker, occurrence = marker if isinstance(marker, tuple) else (marker, 1)
        assert first.line == line_of(text, marker, occurrence), str(first)
    else:
        assert first.line is not None
    assert first.column is not None
    # the formatted message is what `policy check` prints
    assert str(first).startswith(f"p.yaml:{first.line}:{first.column}: ")


def test_error_carries_line_and_field():
    text = header() + RULE + "    requir: {}\n"
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(text, source="p.yaml")
    err = info.value
    assert err.line == line_of(text, "requir") and err.field == "rules[0] (r).requir"
    assert err.message.startswith(f"p.yaml:{err.line}:5: rules[0] (r).requir: unknown key 'requir'")
    assert err.to_dict()["details"]["line"] == err.line


def test_every_problem_is_reported():
    text = header() + "  - name: r\n    mach: {}\n    requir: {}\n"
    found = problems(text)
    messages = [p.message for p in found]
    assert any("'mach'" in m for m in messages)
    assert any("'requir'" in m for m in messages)
    assert any("missing required key 'match'" in m for m in messages)
    with pytest.raises(PolicyError, match=r"and 2 more problems"):
        Policy.from_yaml(text)


def test_empty_file():
    assert "empty" in problems("")[0].message
    assert "empty" in problems("# only a comment\n")[0].message


def test_problems_are_capped():
    rules = "".join(f"  - name: r{i}\n    match: {{paths: [bad{i}]}}\n" for i in range(200))
    assert len(problems(header() + rules)) <= 50


# --- YAML 1.2 scalars: no Norway problem, no sexagesimal, no octal surprises --------------------------


@pytest.mark.parametrize(
    "written, value",
    [
        pytest.param("yes", "yes", id="yes-is-a-string"),
        pytest.param("no", "no", id="no-is-a-string"),
        pytest.param("off", "off", id="off-is-a-string"),
        pytest.param("NO", "NO", id="NO-is-a-string"),
        pytest.param("true", True, id="true"),
        pytest.param("False", False, id="False"),
        pytest.param("010", 10, id="leading-zero-is-decimal"),
        pytest.param("0o10", 8, id="explicit-octal"),
        pytest.param("0x1f", 31, id="hex"),
        pytest.param("1:20", "1:20", id="no-sexagesimal"),
        pytest.param("2024-01-01", "2024-01-01", id="no-timestamps"),
        pytest.param("1_000", "1_000", id="no-underscores"),
        pytest.param("1.5", 1.5, id="float"),
        pytest.param("1e3", 1000.0, id="exponent"),
        pytest.param("null", None, id="null"),
        pytest.param("'3'", "3", id="quoted-number-is-string"),
        pytest.param("$$model", "$model", id="escaped-dollar"),
    ],
)
def test_core_schema_scalars(written, value):
    text = header() + RULE + f"    require:\n      claims:\n        c: {{equals: {written}}}\n"
    constraint = Policy.from_yaml(text).rules[0].require.claims[0]
    assert constraint.equals == value and type(constraint.equals) is type(value)


def test_status_off_is_not_false():
    policy = Policy.from_yaml(header(defaults="defaults:\n  status: off\n") + RULE)
    assert policy.defaults.status == "off"


def test_yaml_loader_does_not_touch_safeloader():
    import yaml

    assert yaml.safe_load("a: yes") == {"a": True}  # PyYAML's own loader keeps YAML 1.1
    assert yaml.safe_load("a: 010") == {"a": 8}


def test_defaults_and_fields():
    text = header(
        extra_issuers=f"  - did: {NARROW}\n    types: [ModelAccessCredential]\n    name: Narrow\n",
        defaults="defaults:\n  status: fail-open\n  max_credential_age: 1w2d\n  holder_binding: false\n",
    ) + RULE + "    description: d\n    require: {holder_binding: true, status: off, max_age: 12h}\n"
    policy = Policy.from_yaml(text)
    assert policy.audience == "https://gw.example"
    assert [i.did for i in policy.trusted_issuers] == [ISSUER, NARROW]
    assert policy.trusted_issuers[0].types is None
    assert policy.trusted_issuers[1].types == frozenset({"ModelAccessCredential"})
    d = policy.defaults
    assert (d.status, d.max_credential_age, d.holder_binding) == ("fail-open", 9 * 86400, False)
    req = policy.rules[0].require
    assert (req.holder_binding, req.status, req.max_age) == (True, "off", 12 * 3600)
    assert policy.rules[0].line == line_of(text, "- name: r")


def test_methods_star_means_any():
    policy = Policy.from_yaml(header() + "  - name: r\n    match: {methods: ['*'], paths: [/x]}\n    public: true\n")
    assert policy.rules[0].match.methods is None


def test_from_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (header() + RULE).encode())  # a BOM is fine
    assert Policy.from_file(path).source == str(path)
    with pytest.raises(PolicyError, match="cannot read"):
        Policy.from_file(tmp_path / "missing.yaml")
    path.write_bytes(b"version: 1\n\xff\xfe")
    with pytest.raises(PolicyError, match="not UTF-8"):
        Policy.from_file(path)
    path.write_bytes(b"#" * (1024 * 1024 + 1))
    with pytest.raises(PolicyError, match="larger than"):
        Policy.from_file(path)


# --- the small parsers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, seconds",
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("1h30m", 5400), ("2w", 14 * 86400)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "0s", "1y", "1.5h", "101000w"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    "glob, prefix",
    [("/v1/models", "/v1/models"), ("/v1/**", "/v1"), ("/**", ""), ("/v1/chat/*", "/v1/chat/"), ("/a/x-*", "/a/x-")],
)
def test_path_glob_prefix(glob, prefix):
    assert compile_path_glob(glob).prefix == prefix


def test_host_and_text_globs():
    assert compile_host_glob("*.Example.com").match("a.example.com")
    assert compile_text_glob("o[0-9]*").match("o3-mini")
    assert not compile_text_glob("o[0-9]*").match("omni")
    with pytest.raises(ValueError):
        compile_text_glob("")
    with pytest.raises(ValueError):
        compile_text_glob("a]")
