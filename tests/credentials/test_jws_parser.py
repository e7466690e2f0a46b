"""JWSParser: parse_jws with a per-instance memo of vetted headers (no module-level state)."""

from __future__ import annotations

import pytest

from vcgate.credentials import jws as jws_module
from vcgate.credentials.jws import JWSParser, parse_jws, sign_jws
from vcgate.errors import VCGateError
from vcgate.keys import PrivateKey, b64url_encode

KEY = PrivateKey.generate("EdDSA")
TOKEN = sign_jws(KEY, {"a": 1}, typ="JWT", kid="k1")
H64 = TOKEN.split(".")[0]


def _with_header(header: str) -> str:
    _, p64, s64 = TOKEN.split(".")
    return f"{b64url_encode(header.encode())}.{p64}.{s64}"


def _error(fn, token):  # type: ignore[no-untyped-def]
    try:
        fn(token)
    except VCGateError as exc:
        return exc.code
    return None


CASES = [
    pytest.param(TOKEN, None, id="valid"),
    pytest.param(_with_header('{"alg":"none"}'), "algorithm_not_allowed", id="alg-none"),
    pytest.param(_with_header('{"alg":"HS256"}'), "algorithm_not_allowed", id="hmac"),
    pytest.param(_with_header('{"alg":"EdDSA","crit":["x"],"x":1}'), "unsupported_critical", id="crit"),
    pytest.param(_with_header('{"alg":"EdDSA","jwk":{}}'), "header_not_allowed", id="embedded-jwk"),
    pytest.param(_with_header('{"alg":"EdDSA","b64":false}'), "header_not_allowed", id="b64"),
    pytest.param(_with_header('{"alg":"EdDSA","kid":1}'), "malformed", id="kid-not-string"),
    pytest.param(_with_header('{"alg":"EdDSA","alg":"EdDSA"}'), "malformed", id="duplicate-member"),
    pytest.param(TOKEN.rsplit(".", 1)[0] + ".", "malformed", id="empty-signature"),
    pytest.param(H64 + "." + "e30", "malformed", id="two-parts"),
]


@pytest.mark.parametrize("token, code", CASES)
def test_parser_agrees_with_parse_jws_twice(token: str, code: str | None) -> None:
    """First call (memo miss) and second call (memo hit, or an error that was not memoised)
    give parse_jws's verdict."""
    parser = JWSParser(algorithms=("EdDSA",))
    for _ in range(2):
        assert _error(parser.parse, token) == code
    assert _error(lambda t: parse_jws(t, algorithms=("EdDSA",)), token) == code


def test_memo_is_per_instance_and_bounded() -> None:
    a, b = JWSParser(algorithms=("EdDSA",), memo_size=2), JWSParser(algorithms=("ES256",))
    a.parse(TOKEN)
    # a vetted the header for EdDSA; b's allow-list is another one and must refuse it
    with pytest.raises(VCGateError) as exc:
        b.parse(TOKEN)
    assert exc.value.code == "algorithm_not_allowed"
    assert list(a._vetted) == [H64.encode()] and not b._vetted
    for kid in ("k2", "k3"):
        a.parse(sign_jws(KEY, {"a": 1}, typ="JWT", kid=kid))
    assert len(a._vetted) <= 2
    a.clear()
    assert not a._vetted


def test_memo_hit_still_checks_payload_and_signature_segment() -> None:
    parser = JWSParser(algorithms=("EdDSA",))
    parser.parse(TOKEN)
    h64, _, s64 = TOKEN.split(".")
    for token, code in ((f"{h64}.W10.{s64}", "malformed"), (f"{h64}.e30.", "malformed"), (f"{h64}.e30.a", "malformed")):
        assert _error(parser.parse, token) == code, token
    jws = parser.parse(TOKEN)
    with pytest.raises(TypeError):
        jws.header["alg"] = "none"  # type: ignore[index]  # the memoised header is read-only


def test_no_module_level_memo() -> None:
    """issue 9: the memos live in parser instances, not in the module."""
    assert not [name for name, value in vars(jws_module).items() if isinstance(value, (dict, list, set)) and not name.startswith("__")]
    assert not any(hasattr(value, "cache_info") for value in vars(jws_module).values())


def test_verifier_parser_follows_changed_limits() -> None:
    """A Verifier's limits are attributes callers change (the Bitstring status method raises
    max_token_bytes on a shallow copy); its parser must follow, and the original keep its own."""
    from vcgate.credentials import Verifier

    big = sign_jws(KEY, {"pad": "x" * 70_000}, typ="JWT", kid="k1")
    verifier = Verifier()
    with pytest.raises(VCGateError) as exc:
        verifier._parse(big)
    assert exc.value.code == "too_large"
    import copy

    larger = copy.copy(verifier)
    larger.max_token_bytes = 1 << 20
    assert larger._parse(big).payload["pad"] == "x" * 70_000
    with pytest.raises(VCGateError):
        verifier._parse(big)
    verifier.algorithms = frozenset({"ES256"})
    with pytest.raises(VCGateError) as exc:
        verifier._parse(TOKEN)
    assert exc.value.code == "algorithm_not_allowed"
