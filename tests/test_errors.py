"""The error contract: unique stable codes, sane statuses, all documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vcgate.errors import ERROR_CODES, VCGateError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def test_codes_are_unique_snake_case():
    classes = list(ERROR_CODES.values())
    assert len({c.code for c in classes}) == len(classes)
    for code in ERROR_CODES:
        assert re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", code), code


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_every_code_is_documented_with_its_status(code):
    cls = ERROR_CODES[code]
    row = re.search(rf"^\| `{code}` \| (\d+) \|", DOCS.read_text(), re.M)
    assert row, f"{code} missing from docs/errors.md"
    assert int(row.group(1)) == cls.status
    assert 400 <= cls.status < 600


def test_error_body_shape():
    err = ERROR_CODES["nonce_mismatch"]("custom message", expected_len=3)
    assert isinstance(err, VCGateError)
    assert err.to_dict() == {"error": "nonce_mismatch", "message": "custom message", "details": {"expected_len": 3}}
    assert ERROR_CODES["expired"]().to_dict() == {"error": "expired", "message": ERROR_CODES["expired"].default_message}


def test_an_instance_can_carry_its_own_code_and_status():
    err = VCGateError("no rule allows this model", code="denied_by_rule", status=403, rule="r1")
    assert (err.code, err.status) == ("denied_by_rule", 403)
    assert err.to_dict() == {"error": "denied_by_rule", "message": "no rule allows this model", "details": {"rule": "r1"}}
    # The class and its other instances keep theirs.
    assert (VCGateError.code, VCGateError.status) == ("error", 400)
    assert (VCGateError().code, ERROR_CODES["expired"]("x").code) == ("error", "expired")
