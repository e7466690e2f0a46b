"""The policy loader under arbitrary input: a Policy or a PolicyError with a position, nothing else.

Issue 10 finding 2: a C0 control character made PyYAML's reader raise ``ReaderError`` past
the loader, so ``vcgate policy check`` printed ``internal_error`` and a hot reload answered
an HTML 500. Every control character is checked below, then hypothesis feeds the loader
arbitrary text and mutations of a valid policy.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vcgate.errors import PolicyError
from vcgate.policy import Policy

VALID = """\
version: 1
audience: https://models.example.com
trusted_issuers:
  - did: did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK
rules:
  - name: chat
    match: {methods: [POST], paths: [/v1/chat/completions]}
    require: {types: [ModelAccessCredential]}
"""

CONTROLS = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\x7f"]


@pytest.mark.parametrize("char", [pytest.param(c, id=f"U+{ord(c):04X}") for c in CONTROLS])
def test_control_character_is_a_policy_error_with_its_position(char):
    text = VALID.replace("audience: https", f"audience: ht{char}tps")
    with pytest.raises(PolicyError) as excinfo:
        Policy.from_yaml(text, "p.yaml")
    (problem,) = excinfo.value.problems
    assert (problem.source, problem.line, problem.column) == ("p.yaml", 2, 13)
    assert f"U+{ord(char):04X}" in problem.message


def test_policy_check_prints_the_coded_error_with_file_line_column(tmp_path):
    from vcgate.cli import cli

    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("name: chat", "name: ch\x01at"))
    res = CliRunner().invoke(cli, ["policy", "check", str(bad)])
    assert res.exit_code == 1
    assert "internal_error" not in res.output
    assert f"policy_invalid: {bad}:6:13: character U+0001" in res.output


def test_invalid_utf8_file_names_the_byte_position(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(VALID.encode().replace(b"chat\n", b"ch\xffat\n", 1))
    with pytest.raises(PolicyError) as excinfo:
        Policy.from_file(bad)
    (problem,) = excinfo.value.problems
    assert (problem.line, problem.column) == (6, 13) and "not UTF-8" in problem.message


def _load(text: str) -> None:
    try:
        Policy.from_yaml(text, "fuzz.yaml")
    except PolicyError as exc:
        assert exc.code == "policy_invalid" and exc.problems
        for p in exc.problems:
            assert p.line is None or (p.line >= 1 and p.column is not None and p.column >= 1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_any_text_is_a_policy_or_a_policy_error(text):
    _load(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(VALID)), st.integers(0, 40), st.text(max_size=12))
def test_any_edit_of_a_valid_policy_is_a_policy_or_a_policy_error(at, cut, insert):
    _load(VALID[:at] + insert + VALID[at + cut :])


def test_deeply_nested_yaml_is_a_policy_error():
    for text in ("rules: " + "[" * 500 + "]" * 500, "rules:\n" + "".join(" " * i + "- \n" for i in range(800))):
        with pytest.raises(PolicyError):
            Policy.from_yaml(text, "deep.yaml")
