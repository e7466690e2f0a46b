"""Token Status List: the draft's examples, issuer round trips, the verifier's refusals and cache."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import pytest

from tests.support import NOW, Party, make_party
from vcgate.credentials import Verifier
from vcgate.credentials.jws import sign_jws
from vcgate.credentials.sdjwt import issue_sd_jwt_vc
from vcgate.errors import VCGateError
from vcgate.keys import b64url_encode
from vcgate.status import StatusChecker
from vcgate.status.tokenlist import (
    TokenStatusList,
    TokenStatusListMethod,
    decode_token_list,
    encode_token_list,
    token_status,
)

URL = "https://issuer.example/statuslists/1"


@pytest.mark.parametrize(
    "lst, bits, statuses, raw",
    [
        pytest.param("eNrbuRgAAhcBXQ", 1, [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1], "b9a3", id="1-bit"),
        pytest.param("eNo76fITAAPfAgc", 2, [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3], "c944f9", id="2-bit"),
    ],
)
def test_draft_examples(lst, bits, statuses, raw):
    data = decode_token_list(lst, max_bytes=64)
    assert data.hex() == raw
    assert [token_status(data, i, bits) for i in range(len(statuses))] == statuses
    assert encode_token_list(data) == lst


class Publisher:
    """Serves the issuer's current token at URL; counts fetches (the 'network')."""

    def __init__(self) -> None:
        self.body: bytes = b""
        self.fetches = 0

    def __call__(self, url: str) -> bytes:
        self.fetches += 1
        if not self.body:
            raise ConnectionError("nothing published")
        return self.body


@pytest.fixture
def world(issuer: Party, holder: Party, clock):
    verifier = Verifier(clock=clock)
    publisher = Publisher()
    method = TokenStatusListMethod(verifier=verifier, fetch=publisher, default_ttl=60)
    return issuer, holder, verifier, publisher, method


def _credential(issuer: Party, holder: Party, verifier: Verifier, entry: dict[str, Any]):
    token = issue_sd_jwt_vc(issuer.key, issuer=issuer.did, kid=issuer.kid, vct="X", claims={"a": 1},
                            valid_from=NOW - 60, holder_key=holder.key.public_key, status=entry)
    return verifier.verify_credential(token)


def test_revoke_round_trip_through_the_status_checker(world):
    issuer, holder, verifier, publisher, method = world
    lst = TokenStatusList.create(URL)
    index = lst.allocate()
    cred = _credential(issuer, holder, verifier, lst.entry(index))
    publisher.body = lst.to_token(issuer.key, issuer=issuer.did, kid=issuer.kid, issued_at=NOW).encode()
    checker = StatusChecker([method])
    assert checker.check(cred)[0].type == "TokenStatusList"
    assert checker.check(cred) and publisher.fetches == 1  # cached: the second check fetched nothing
    lst.set(index)
    publisher.body = lst.to_token(issuer.key, issuer=issuer.did, kid=issuer.kid, issued_at=NOW).encode()
    method.invalidate()
    with pytest.raises(VCGateError) as exc:
        checker.check(cred)
    assert exc.value.code == "revoked"


def test_suspension_list_uses_two_bits(world):
    issuer, holder, verifier, publisher, method = world
    lst = TokenStatusList.create(URL, purpose="suspension")
    index = lst.allocate()
    lst.set(index)
    token = lst.to_token(issuer.key, issuer=issuer.did, kid=issuer.kid, issued_at=NOW)
    publisher.body = token.encode()
    with pytest.raises(VCGateError) as exc:
        method.check(_credential(issuer, holder, verifier, lst.entry(index)), lst.entry(index)["status_list"] | {"type": "TokenStatusList"})
    assert exc.value.code == "suspended"


def test_state_file_round_trip_and_format_marker(tmp_path):
    lst = TokenStatusList.create(URL)
    index = lst.allocate()
    lst.set(index)
    path = lst.save(tmp_path / "sl.json")
    again = TokenStatusList.load(path)
    assert again.get(index) and again.token_bytes() == lst.token_bytes()
    from vcgate.status.bitstring import StatusList

    StatusList.create("https://issuer.example/b").save(tmp_path / "bitstring.json")
    with pytest.raises(VCGateError):
        TokenStatusList.load(tmp_path / "bitstring.json")


def _signed(issuer: Party, payload: dict[str, Any], typ: str = "statuslist+jwt") -> bytes:
    return sign_jws(issuer.key, payload, typ=typ, kid=issuer.kid).encode()


def _payload(issuer: Party, data: bytes = bytes(16), bits: int = 1, **extra: Any) -> dict[str, Any]:
    return {"iss": issuer.did, "sub": URL, "iat": int(NOW), "status_list": {"bits": bits, "lst": encode_token_list(data)}, **extra}


def _bomb() -> str:
    return b64url_encode(zlib.compress(bytes(8 * 1024 * 1024), 9))


REFUSALS: list[tuple[str, Callable[[Party, Party], bytes], str]] = [
    ("wrong-typ", lambda i, o: _signed(i, _payload(i), typ="JWT"), "status_list_invalid"),
    ("sub-is-not-the-url", lambda i, o: _signed(i, _payload(i) | {"sub": "https://elsewhere.example/x"}), "status_list_invalid"),
    ("another-issuer", lambda i, o: _signed(o, _payload(o)), "status_list_invalid"),
    ("iss-claims-issuer-signed-by-other", lambda i, o: sign_jws(o.key, _payload(i), typ="statuslist+jwt", kid=i.kid).encode(), "status_list_invalid"),
    ("expired-token", lambda i, o: _signed(i, _payload(i, exp=int(NOW) - 3600)), "status_list_invalid"),
    ("bad-bits", lambda i, o: _signed(i, _payload(i, bits=3)), "status_list_invalid"),
    ("decompression-bomb", lambda i, o: _signed(i, _payload(i) | {"status_list": {"bits": 1, "lst": _bomb()}}), "status_list_invalid"),
    ("index-outside-the-list", lambda i, o: _signed(i, _payload(i, data=bytes(1))), "status_list_invalid"),
    ("alg-none", lambda i, o: b".".join([b64url_encode(b'{"alg":"none","typ":"statuslist+jwt"}').encode(),
                                         b64url_encode(b'{}').encode(), b""]), "status_list_invalid"),
    ("json-not-jwt", lambda i, o: b'{"status_list": {}}', "status_list_invalid"),
    ("status-3-is-not-understood", lambda i, o: _signed(i, _payload(i, data=bytes([0b11] + [0] * 15), bits=2)), "status_unsupported"),
    ("fetch-fails", lambda i, o: b"", "status_unavailable"),
]


@pytest.mark.parametrize("case_id", [r[0] for r in REFUSALS])
def test_refusals(case_id, world):
    issuer, holder, verifier, publisher, method = world
    make, code = next((m, c) for cid, m, c in REFUSALS if cid == case_id)
    publisher.body = make(issuer, make_party())
    idx = 100 if case_id == "index-outside-the-list" else 0
    entry = {"type": "TokenStatusList", "idx": idx, "uri": URL}
    cred = _credential(issuer, holder, verifier, {"status_list": {"idx": idx, "uri": URL}})
    with pytest.raises(VCGateError) as exc:
        method.check(cred, entry)
    assert exc.value.code == code, exc.value.message


@pytest.mark.parametrize("entry", [
    pytest.param({"idx": -1, "uri": URL}, id="negative-idx"),
    pytest.param({"idx": "1", "uri": URL}, id="string-idx"),
    pytest.param({"idx": 1, "uri": "http://issuer.example/sl"}, id="not-https"),
    pytest.param({"idx": 1, "uri": "https://127.0.0.1/sl"}, id="loopback-address"),
])
def test_bad_references_are_refused_before_any_fetch(entry, world):
    issuer, holder, verifier, publisher, method = world
    cred = _credential(issuer, holder, verifier, {"status_list": {"idx": 0, "uri": URL}})
    with pytest.raises(VCGateError) as exc:
        method.check(cred, {"type": "TokenStatusList", **entry})
    assert exc.value.code in ("malformed", "status_list_invalid")
    assert publisher.fetches == 0
