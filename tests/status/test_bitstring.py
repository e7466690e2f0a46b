"""Bitstring Status List v1.0 / StatusList2021: encoding, the issuer's list, the verifier's method.

Most verifier tests inject the fetcher (a dict of URL -> bytes); the round trip and the
transport attacks also run against a real HTTPS server on 127.0.0.1 whose certificate (for
``status.test``) comes from a throwaway CA, through :class:`vcgate.fetch.SafeFetcher`.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import stat
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.https_server import PKI, HTTPSServer, QuietHandler, make_pki, resolve_hosts, serving
from tests.support import NOW, Party, forge, make_party
from vcgate.credentials import Verifier, issue_credential
from vcgate.credentials.models import VerifiedCredential
from vcgate.errors import MalformedError, StatusUnsupportedError, VCGateError
from vcgate.fetch import AddressForbiddenError, HTTPStatusError, SafeFetcher
from vcgate.keys import b64url_encode
from vcgate.status import StatusChecker, StatusResult
from vcgate.status.bitstring import (
    CONTEXT_2021,
    ENTRY_TYPE,
    ENTRY_TYPE_2021,
    LIST_CREDENTIAL_TYPE,
    LIST_CREDENTIAL_TYPE_2021,
    LIST_TYPE,
    LIST_TYPE_2021,
    MIN_ENTRIES,
    BitstringStatusMethod,
    StatusList,
    StatusListFullError,
    decode_encoded_list,
    encode_bitstring,
    get_status,
    parse_entry,
)

URL = "https://status.example/lists/1"
SUSPEND_URL = "https://status.example/lists/2"

# The example BitstringStatusListCredential of the W3C specification (section 2.2) and the
# same list as StatusList2021 wrote it (no multibase prefix): 131,072 zero bits.
SPEC_ENCODED_LIST = "uH4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA"
SPEC_ENCODED_LIST_2021 = "H4sIAAAAAAAAA-3BMQEAAADCoPVPbQwfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAQAAA"


# --- helpers ----------------------------------------------------------------------------------


class Clock:
    """A settable clock shared by the verifier and the status method."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Publisher:
    """The injected fetcher: serves published bytes per URL and counts fetches."""

    def __init__(self) -> None:
        self.lists: dict[str, bytes] = {}
        self.calls: list[str] = []
        self.error: BaseException | None = None
        self.delay = 0.0

    def publish(self, url: str, body: str | bytes) -> None:
        self.lists[url] = body.encode() if isinstance(body, str) else body

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        if url not in self.lists:
            raise ConnectionError("nothing published there")
        return self.lists[url]


def sign_list(
    party: Party,
    *,
    url: str = URL,
    encoded: str | None = None,
    purpose: Any = "revocation",
    issuer: str | None = None,
    types: tuple[str, ...] = (LIST_CREDENTIAL_TYPE,),
    subject_type: Any = LIST_TYPE,
    valid_from: float = NOW - 60,
    valid_until: float | None = None,
    credential_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A list credential built by hand, to vary what the issuer-side API keeps right."""
    claims: dict[str, Any] = {"type": subject_type, "statusPurpose": purpose}
    claims["encodedList"] = encoded if encoded is not None else encode_bitstring(bytes(MIN_ENTRIES // 8))
    claims.update(extra or {})
    return issue_credential(
        party.key,
        issuer=issuer or party.did,
        kid=party.kid,
        subject=f"{url}#list",
        types=types,
        claims=claims,
        valid_from=valid_from,
        valid_until=valid_until,
        credential_id=credential_id or url,
    )


def credential_with(issuer: Party, holder: Party, verifier: Verifier, *entries: dict[str, Any]) -> VerifiedCredential:
    token = issue_credential(
        issuer.key,
        issuer=issuer.did,
        kid=issuer.kid,
        subject=holder.did,
        types=["AgentCredential"],
        claims={"model": "gpt"},
        valid_from=NOW - 3600,
        status=list(entries) if len(entries) != 1 else entries[0],
    )
    return verifier.verify_credential(token)


def code_of(info: pytest.ExceptionInfo[BaseException]) -> str:
    exc = info.value
    assert isinstance(exc, VCGateError), repr(exc)
    return exc.code


@pytest.fixture
def clock() -> Clock:  # overrides the fixed clock of tests/conftest.py
    return Clock()


@pytest.fixture
def verifier(clock: Clock) -> Verifier:
    return Verifier(clock=clock)


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
def method(verifier: Verifier, publisher: Publisher) -> BitstringStatusMethod:
    return BitstringStatusMethod(verifier=verifier, fetch=publisher)


@pytest.fixture
def status_list() -> StatusList:
    return StatusList.create(URL)


# --- encoding: known answers and bit order ----------------------------------------------------


def test_spec_example_encoded_list_decodes_to_131072_zero_bits() -> None:
    bits = decode_encoded_list(SPEC_ENCODED_LIST, max_bytes=1 << 20)
    assert bits == bytes(16 * 1024)
    assert decode_encoded_list(SPEC_ENCODED_LIST_2021, max_bytes=1 << 20, multibase=False) == bits
    # StatusList2021 decoders also read the prefixed and the padded spellings.
    assert decode_encoded_list(SPEC_ENCODED_LIST, max_bytes=1 << 20, multibase=False) == bits
    assert decode_encoded_list(SPEC_ENCODED_LIST_2021 + "==", max_bytes=1 << 20, multibase=False) == bits


def test_empty_list_encodes_like_the_spec_example(status_list: StatusList) -> None:
    encoded = status_list.encode()
    assert encoded.startswith("uH4sI")  # multibase 'u' + base64url of the GZIP magic
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    assert decode_encoded_list(encoded, max_bytes=1 << 20) == decode_encoded_list(SPEC_ENCODED_LIST, max_bytes=1 << 20)
    assert encoded == StatusList.create(URL).encode()  # deterministic: no timestamp in the header


@pytest.mark.parametrize(
    ("index", "byte", "value"),
    [
        pytest.param(0, 0, 0x80, id="first-bit-is-msb-of-first-byte"),
        pytest.param(1, 0, 0x40, id="second-bit"),
        pytest.param(7, 0, 0x01, id="lsb-of-first-byte"),
        pytest.param(8, 1, 0x80, id="msb-of-second-byte"),
        pytest.param(MIN_ENTRIES - 1, MIN_ENTRIES // 8 - 1, 0x01, id="last-bit-is-lsb-of-last-byte"),
    ],
)
def test_bit_order(index: int, byte: int, value: int) -> None:
    lst = StatusList.create(URL)
    lst._allocated[index >> 3] |= 0x80 >> (index & 7)  # allocate this exact index
    lst._allocated_count += 1
    lst.set(index)
    bits = decode_encoded_list(lst.encode(), max_bytes=1 << 20)
    expected = bytearray(MIN_ENTRIES // 8)
    expected[byte] = value
    assert bits == bytes(expected)
    assert get_status(bits, index) == 1
    assert sum(get_status(bits, i) for i in range(max(0, index - 9), min(MIN_ENTRIES, index + 9))) == 1


def test_multi_bit_entries_read_msb_first_across_bytes() -> None:
    bits = bytes([0b10_01_11_00, 0b01_00_00_00])
    assert [get_status(bits, i, 2) for i in range(5)] == [2, 1, 3, 0, 1]
    # statusSize 3: entry 2 covers bits 6..8 and so straddles the byte boundary.
    assert get_status(bits, 2, 3) == 0b000
    assert get_status(bytes([0b00000011, 0b10000000]), 2, 3) == 0b111
    with pytest.raises(IndexError):
        get_status(bits, 8, 2)


# --- issuer side: the list --------------------------------------------------------------------


def test_allocation_is_random_unique_and_spread(status_list: StatusList) -> None:
    indices = [status_list.allocate() for _ in range(2000)]
    assert len(set(indices)) == 2000
    assert all(0 <= i < MIN_ENTRIES for i in indices)
    assert indices != sorted(indices)
    assert max(indices) - min(indices) > MIN_ENTRIES // 2
    low = sum(1 for i in indices if i < MIN_ENTRIES // 2)
    assert 800 < low < 1200  # roughly uniform (p of failing ~ 1e-19)
    assert status_list.allocated_count == 2000
    assert status_list.free_count == MIN_ENTRIES - 2000


def test_allocation_never_reuses_and_refuses_when_full(tmp_path: Path) -> None:
    lst = StatusList.create(URL)
    state = lst.to_json()
    allocated = bytearray(b"\xff" * (MIN_ENTRIES // 8))
    free = {5, 70_000, MIN_ENTRIES - 1}
    for i in free:
        allocated[i >> 3] &= ~(0x80 >> (i & 7)) & 0xFF
    state["allocated"] = encode_bitstring(bytes(allocated))
    state["allocatedCount"] = MIN_ENTRIES - len(free)
    nearly_full = StatusList.from_json(state)
    got = {nearly_full.allocate() for _ in range(3)}
    assert got == free
    with pytest.raises(StatusListFullError) as info:
        nearly_full.allocate()
    assert info.value.code == "status_list_full"


def test_set_and_clear_need_an_allocated_index(status_list: StatusList) -> None:
    index = status_list.allocate()
    other = (index + 1) % MIN_ENTRIES
    with pytest.raises(ValueError):
        status_list.set(other)
    with pytest.raises(ValueError):
        status_list.entry(other)
    with pytest.raises(IndexError):
        status_list.set(MIN_ENTRIES)
    assert status_list.set(index) is True
    assert status_list.set(index) is False  # no change
    assert status_list.get(index) is True
    assert status_list.clear(index) is True
    assert status_list.get(index) is False


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        pytest.param(("http://status.example/1",), {}, ValueError, id="http"),
        pytest.param(("https://127.0.0.1/1",), {}, ValueError, id="ip-literal"),
        pytest.param((URL,), {"length": MIN_ENTRIES - 8}, ValueError, id="too-short-for-privacy"),
        pytest.param((URL,), {"length": MIN_ENTRIES + 1}, ValueError, id="not-whole-bytes"),
        pytest.param((URL,), {"length": 1 << 30}, ValueError, id="too-long"),
        pytest.param((URL,), {"purpose": "message"}, ValueError, id="message-purpose"),
    ],
)
def test_list_parameters_refused(args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        StatusList.create(*args, **kwargs)


def test_entry_shape(status_list: StatusList) -> None:
    index = status_list.allocate()
    assert status_list.entry(index) == {
        "id": f"{URL}#{index}",
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": str(index),
        "statusListCredential": URL,
    }
    parsed = parse_entry(status_list.entry(index))
    assert (parsed.index, parsed.list_url, parsed.size, parsed.family) == (index, URL, 1, "bitstring")


def test_list_credential_shape(status_list: StatusList, issuer: Party, verifier: Verifier) -> None:
    index = status_list.allocate()
    status_list.set(index)
    token = status_list.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=NOW - 5,
                                      valid_until=NOW + 86400, ttl=30)
    vc = verifier.verify_credential(token)
    assert vc.types == ("VerifiableCredential", "BitstringStatusListCredential")
    assert vc.id == URL and vc.issuer == issuer.did
    assert vc.payload["credentialSubject"]["id"] == f"{URL}#list"
    assert vc.claims["type"] == "BitstringStatusList"
    assert vc.claims["statusPurpose"] == "revocation"
    assert vc.claims["ttl"] == 30_000  # milliseconds
    assert vc.payload["@context"] == ["https://www.w3.org/ns/credentials/v2"]
    bits = decode_encoded_list(vc.claims["encodedList"], max_bytes=1 << 20)
    assert get_status(bits, index) == 1 and sum(bin(b).count("1") for b in bits) == 1


def test_state_file_round_trip(tmp_path: Path, status_list: StatusList) -> None:
    indices = [status_list.allocate() for _ in range(50)]
    status_list.set(indices[3])
    path = status_list.save(tmp_path / "list.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.json"]  # no temporary left behind
    loaded = StatusList.load(path)
    assert (loaded.url, loaded.purpose, loaded.length, loaded.allocated_count) == (URL, "revocation", MIN_ENTRIES, 50)
    assert loaded.bits == status_list.bits
    assert all(loaded.is_allocated(i) for i in indices)
    assert loaded.get(indices[3]) and not loaded.get(indices[4])
    assert loaded.allocate() not in indices


def test_edit_saves_on_success_only(tmp_path: Path, status_list: StatusList) -> None:
    path = status_list.save(tmp_path / "list.json")
    with StatusList.edit(path) as lst:
        index = lst.allocate()
    assert StatusList.load(path).is_allocated(index)
    with pytest.raises(RuntimeError):
        with StatusList.edit(path) as lst:
            lst.set(index)
            raise RuntimeError("the CLI failed before publishing")
    assert not StatusList.load(path).get(index)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda s: s.update(format="other"), id="not-a-state-file"),
        pytest.param(lambda s: s.update(version=2), id="unknown-version"),
        pytest.param(lambda s: s.update(allocatedCount=7), id="count-mismatch"),
        pytest.param(lambda s: s.update(encodedList=encode_bitstring(b"\x80" + bytes(MIN_ENTRIES // 8 - 1))),
                     id="bit-set-at-unallocated-index"),
        pytest.param(lambda s: s.update(encodedList=encode_bitstring(bytes(16))), id="length-mismatch"),
        pytest.param(lambda s: s.update(url="http://status.example/1"), id="bad-url"),
        pytest.param(lambda s: s.update(allocated="not-encoded"), id="bad-encoding"),
    ],
)
def test_corrupt_state_refused(tmp_path: Path, status_list: StatusList, mutate: Callable[[dict[str, Any]], None]) -> None:
    status_list.allocate()
    state = status_list.to_json()
    mutate(state)
    path = tmp_path / "list.json"
    path.write_text(json.dumps(state))
    with pytest.raises(MalformedError) as info:
        StatusList.load(path)
    assert info.value.code == "malformed"


# --- entries ----------------------------------------------------------------------------------

GOOD_ENTRY = {
    "type": ENTRY_TYPE,
    "statusPurpose": "revocation",
    "statusListIndex": "94567",
    "statusListCredential": URL,
}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param({"statusListIndex": "-1"}, "malformed", id="negative-index"),
        pytest.param({"statusListIndex": "1.5"}, "malformed", id="fractional-index"),
        pytest.param({"statusListIndex": " 1"}, "malformed", id="space-in-index"),
        pytest.param({"statusListIndex": "0x10"}, "malformed", id="hex-index"),
        pytest.param({"statusListIndex": ""}, "malformed", id="empty-index"),
        pytest.param({"statusListIndex": "1" * 13}, "malformed", id="absurd-index"),
        pytest.param({"statusListIndex": True}, "malformed", id="bool-index"),
        pytest.param({"statusListIndex": -3}, "malformed", id="negative-int-index"),
        pytest.param({"statusListIndex": None}, "malformed", id="missing-index"),
        pytest.param({"statusListCredential": None}, "malformed", id="missing-url"),
        pytest.param({"statusListCredential": 7}, "malformed", id="url-not-string"),
        pytest.param({"statusPurpose": ""}, "malformed", id="empty-purpose"),
        pytest.param({"statusPurpose": ["revocation"]}, "malformed", id="purpose-list"),
        pytest.param({"statusSize": 0}, "malformed", id="size-zero"),
        pytest.param({"statusSize": "1"}, "malformed", id="size-string"),
        pytest.param({"statusSize": 2}, "malformed", id="size-2-without-messages"),
        pytest.param({"statusSize": 9}, "status_unsupported", id="size-too-large"),
        pytest.param({"statusMessage": [{"status": "0x0", "message": "ok"}]}, "malformed", id="too-few-messages"),
        pytest.param({"statusMessage": [{"status": "0x0", "message": "a"}, {"status": "0x0", "message": "b"}]},
                     "malformed", id="duplicate-message"),
        pytest.param({"id": URL}, "malformed", id="entry-id-is-the-list-url"),
        pytest.param({"type": "SomethingElse"}, "status_unsupported", id="other-type"),
    ],
)
def test_malformed_entries(change: dict[str, Any], code: str) -> None:
    entry = {**GOOD_ENTRY, **change}
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(VCGateError) as info:
        parse_entry(entry)
    assert info.value.code == code


def test_integer_index_accepted_for_interop() -> None:
    assert parse_entry({**GOOD_ENTRY, "statusListIndex": 94567}).index == 94567
    assert parse_entry({**GOOD_ENTRY, "type": ENTRY_TYPE_2021}).family == "2021"


# --- verifier: round trip with an injected fetcher ----------------------------------------------


def test_round_trip_revoke_and_unrevoke(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, clock: Clock
) -> None:
    lst = StatusList.create(URL)
    index = lst.allocate()
    publisher.publish(URL, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=NOW - 5))
    method = BitstringStatusMethod(verifier=verifier, fetch=publisher, default_ttl=60)
    checker = StatusChecker([method])
    vc = credential_with(issuer, holder, verifier, lst.entry(index))

    assert checker.check(vc) == (StatusResult(type=ENTRY_TYPE, purpose="revocation", source=URL, as_of=NOW),)
    assert publisher.calls == [URL]

    lst.set(index)  # vcgate revoke: flip the bit and re-sign
    publisher.publish(URL, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=clock.now))
    clock.advance(30)
    checker.check(vc)  # within the TTL the cached list still answers, with its age
    assert len(publisher.calls) == 1
    clock.advance(31)
    with pytest.raises(VCGateError) as info:
        checker.check(vc)
    assert code_of(info) == "revoked"
    assert info.value.to_dict()["details"] == {"value": "0x1"}
    assert len(publisher.calls) == 2

    lst.clear(index)  # vcgate unrevoke
    publisher.publish(URL, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=clock.now))
    with pytest.raises(VCGateError):
        checker.check(vc)  # cached: still revoked until the TTL runs out
    clock.advance(61)
    [result] = checker.check(vc)
    assert result.as_of == clock.now


def test_suspension_refused_with_its_code(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, method: BitstringStatusMethod
) -> None:
    revocations = StatusList.create(URL)
    suspensions = StatusList.create(SUSPEND_URL, purpose="suspension")
    r, s = revocations.allocate(), suspensions.allocate()
    suspensions.set(s)
    for lst in (revocations, suspensions):
        publisher.publish(lst.url, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=NOW))
    vc = credential_with(issuer, holder, verifier, revocations.entry(r), suspensions.entry(s))
    with pytest.raises(VCGateError) as info:
        StatusChecker([method]).check(vc)
    assert code_of(info) == "suspended"


def test_list_ttl_is_honoured_within_bounds(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, clock: Clock
) -> None:
    lst = StatusList.create(URL)
    index = lst.allocate()
    method = BitstringStatusMethod(verifier=verifier, fetch=publisher, default_ttl=60, min_ttl=5, max_ttl=600)
    vc = credential_with(issuer, holder, verifier, lst.entry(index))
    for ttl, expected in [(10, 10), (0.001, 5), (86_400, 600)]:
        method.invalidate()
        publisher.publish(URL, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid,
                                                 valid_from=clock.now, ttl=ttl))
        method.check(vc, lst.entry(index))
        fetched_at, expires_at = method.cached(URL)  # type: ignore[misc]
        assert expires_at - fetched_at == pytest.approx(expected), ttl


def test_valid_until_bounds_the_cache_and_an_expired_list_is_refused(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, clock: Clock
) -> None:
    lst = StatusList.create(URL)
    index = lst.allocate()
    publisher.publish(URL, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid,
                                             valid_from=NOW - 60, valid_until=NOW + 30))
    method = BitstringStatusMethod(verifier=verifier, fetch=publisher, default_ttl=300, stale_grace=300)
    vc = credential_with(issuer, holder, verifier, lst.entry(index))
    method.check(vc, lst.entry(index))
    assert method.cached(URL) == (NOW, NOW + 30)
    clock.advance(30 + 61)  # past validUntil and the verifier's leeway; the host still serves it
    with pytest.raises(VCGateError) as info:
        method.check(vc, lst.entry(index))
    assert code_of(info) == "status_list_invalid"
    assert info.value.details["cause"] == "expired"
    assert len(publisher.calls) == 2


def test_stale_answer_only_within_grace(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, clock: Clock
) -> None:
    lst = StatusList.create(URL)
    index = lst.allocate()
    publisher.publish(URL, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=NOW))
    method = BitstringStatusMethod(verifier=verifier, fetch=publisher, default_ttl=60, stale_grace=120, retry_after=10)
    vc = credential_with(issuer, holder, verifier, lst.entry(index))
    method.check(vc, lst.entry(index))
    publisher.error = ConnectionError("issuer down")
    clock.advance(61)
    assert method.check(vc, lst.entry(index)).as_of == NOW  # stale, and says how old
    assert len(publisher.calls) == 2
    clock.advance(5)
    method.check(vc, lst.entry(index))
    assert len(publisher.calls) == 2  # the failure is remembered for retry_after: no new fetch
    clock.advance(60 + 120)  # past expiry + grace
    with pytest.raises(VCGateError) as info:
        method.check(vc, lst.entry(index))
    assert code_of(info) == "status_unavailable"
    publisher.error = None
    clock.advance(10)
    assert method.check(vc, lst.entry(index)).as_of == clock.now  # recovers


def test_invalid_refresh_is_not_papered_over_with_the_stale_list(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, clock: Clock
) -> None:
    lst = StatusList.create(URL)
    index = lst.allocate()
    publisher.publish(URL, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=NOW))
    method = BitstringStatusMethod(verifier=verifier, fetch=publisher)
    vc = credential_with(issuer, holder, verifier, lst.entry(index))
    method.check(vc, lst.entry(index))
    publisher.publish(URL, sign_list(make_party(), issuer=issuer.did))  # someone else's signature
    clock.advance(61)
    with pytest.raises(VCGateError) as info:
        method.check(vc, lst.entry(index))
    assert code_of(info) == "status_list_invalid"


def test_older_copy_does_not_roll_back_a_revocation(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, clock: Clock
) -> None:
    lst = StatusList.create(URL)
    index = lst.allocate()
    old = lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=NOW - 100)
    lst.set(index)
    publisher.publish(URL, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=NOW))
    method = BitstringStatusMethod(verifier=verifier, fetch=publisher)
    vc = credential_with(issuer, holder, verifier, lst.entry(index))
    with pytest.raises(VCGateError):
        method.check(vc, lst.entry(index))
    publisher.publish(URL, old)  # a lagging CDN edge, or a replay
    clock.advance(61)
    with pytest.raises(VCGateError) as info:
        method.check(vc, lst.entry(index))
    assert code_of(info) == "revoked"


def test_one_fetch_for_concurrent_checks(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, method: BitstringStatusMethod
) -> None:
    lst = StatusList.create(URL)
    index = lst.allocate()
    publisher.publish(URL, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=NOW))
    publisher.delay = 0.2
    vc = credential_with(issuer, holder, verifier, lst.entry(index))
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(method.check(vc, lst.entry(index)))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(results) == 8
    assert publisher.calls == [URL]


def test_cache_is_bounded(issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher) -> None:
    method = BitstringStatusMethod(verifier=verifier, fetch=publisher, max_cached=3)
    for n in range(5):
        lst = StatusList.create(f"https://status.example/lists/{n}")
        index = lst.allocate()
        publisher.publish(lst.url, lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=NOW))
        method.check(credential_with(issuer, holder, verifier, lst.entry(index)), lst.entry(index))
    assert [method.cached(f"https://status.example/lists/{n}") is not None for n in range(5)] == [
        False, False, True, True, True
    ]
    small = BitstringStatusMethod(verifier=verifier, fetch=publisher, max_cache_bytes=MIN_ENTRIES // 8)
    for n in range(2):
        lst_url = f"https://status.example/lists/{n}"
        small.check(credential_with(issuer, holder, verifier, {**GOOD_ENTRY, "statusListCredential": lst_url,
                                                               "statusListIndex": "1"}),
                    {**GOOD_ENTRY, "statusListCredential": lst_url, "statusListIndex": "1"})
    assert small.cached("https://status.example/lists/0") is None
    assert small.cached("https://status.example/lists/1") is not None


# --- purposes beyond revocation and suspension ------------------------------------------------


def _message_entry(index: int) -> dict[str, Any]:
    return {
        "type": ENTRY_TYPE,
        "statusPurpose": "message",
        "statusListIndex": str(index),
        "statusListCredential": URL,
        "statusSize": 2,
        "statusMessage": [
            {"status": "0x0", "message": "pending_review"},
            {"status": "0x1", "message": "accepted"},
            {"status": "0x2", "message": "rejected"},
            {"status": "0x3", "message": "undefined"},
        ],
    }


def test_message_status_zero_passes_non_zero_fails_closed(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, method: BitstringStatusMethod
) -> None:
    bits = bytearray(2 * MIN_ENTRIES // 8)
    bits[0] = 0b00_10_00_00  # entry 1 = 0x2
    publisher.publish(URL, sign_list(issuer, purpose="message", encoded=encode_bitstring(bytes(bits))))
    vc = credential_with(issuer, holder, verifier, _message_entry(0))
    assert method.check(vc, _message_entry(0)).purpose == "message"
    with pytest.raises(StatusUnsupportedError) as info:
        method.check(vc, _message_entry(1))
    assert info.value.code == "status_unsupported"
    assert info.value.details == {"value": "0x2"}


def test_refresh_purpose_does_not_invalidate_and_list_may_have_several_purposes(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, method: BitstringStatusMethod
) -> None:
    publisher.publish(URL, sign_list(issuer, purpose=["refresh", "revocation"],
                                     encoded=encode_bitstring(b"\x80" + bytes(MIN_ENTRIES // 8 - 1))))
    entry = {**GOOD_ENTRY, "statusPurpose": "refresh", "statusListIndex": "0"}
    vc = credential_with(issuer, holder, verifier, entry)
    assert method.check(vc, entry).purpose == "refresh"
    with pytest.raises(VCGateError) as info:
        method.check(vc, {**entry, "statusPurpose": "revocation"})
    assert code_of(info) == "revoked"


# --- StatusList2021 -----------------------------------------------------------------------------


def _list_2021(party: Party, bits: bytes, *, prefixed: bool = False, index_as_int: bool = False) -> str:
    encoded = encode_bitstring(bits)
    return issue_credential(
        party.key,
        issuer=party.did,
        kid=party.kid,
        subject=f"{URL}#list",
        types=[LIST_CREDENTIAL_TYPE_2021],
        claims={"type": LIST_TYPE_2021, "statusPurpose": "revocation",
                "encodedList": encoded if prefixed else encoded[1:]},
        valid_from=NOW - 60,
        credential_id=URL,
        format="vc-jwt11",
        contexts=[CONTEXT_2021],
    )


@pytest.mark.parametrize("prefixed", [pytest.param(False, id="plain-base64url"), pytest.param(True, id="u-prefixed")])
def test_status_list_2021_vc_jwt(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, method: BitstringStatusMethod,
    prefixed: bool,
) -> None:
    bits = bytearray(MIN_ENTRIES // 8)
    bits[12] = 0x08  # index 100
    publisher.publish(URL, _list_2021(issuer, bytes(bits), prefixed=prefixed))
    entry = {"id": f"{URL}#100", "type": ENTRY_TYPE_2021, "statusPurpose": "revocation",
             "statusListIndex": 100, "statusListCredential": URL}
    vc = credential_with(issuer, holder, verifier, entry)
    with pytest.raises(VCGateError) as info:
        method.check(vc, entry)
    assert code_of(info) == "revoked"
    assert method.check(vc, {**entry, "statusListIndex": "101"}).type == ENTRY_TYPE_2021


def test_entry_type_must_match_list_type(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, method: BitstringStatusMethod
) -> None:
    publisher.publish(URL, _list_2021(issuer, bytes(MIN_ENTRIES // 8)))
    vc = credential_with(issuer, holder, verifier, GOOD_ENTRY)
    with pytest.raises(VCGateError) as info:
        method.check(vc, GOOD_ENTRY)
    assert code_of(info) == "status_list_invalid"


# --- hostile or broken lists (injected fetcher) -----------------------------------------------


def _gzip_bomb(total: int = 1 << 30) -> bytes:
    """A valid single-member GZIP of ``total`` zero bytes, about 1 MB for 1 GiB.

    After a full flush, deflate restarts without history, so the compressed form of each
    16 MiB block of zeros is the same bytes: compress one, repeat it.
    """
    block = bytes(16 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    count = total // len(block)
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + segment * count + deflate.flush() + struct.pack("<II", crc, total & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _gzip_bomb()


def test_gzip_bomb_refused_quickly_with_bounded_memory(
    bomb: bytes, issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher
) -> None:
    assert len(bomb) < 1_100_000
    encoded = "u" + b64url_encode(bomb)
    token = sign_list(issuer, encoded=encoded)
    publisher.publish(URL, token)
    # Let the 1.4 MB token through the response cap so the decompression cap is what holds.
    method = BitstringStatusMethod(verifier=verifier, fetch=publisher, max_list_bytes=4 << 20)
    vc = credential_with(issuer, holder, verifier, GOOD_ENTRY)
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(VCGateError) as info:
            method.check(vc, GOOD_ENTRY)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code_of(info) == "status_list_invalid"
    assert "decompresses to more than 1048576 bytes" in info.value.message
    assert elapsed < 2.0
    assert peak < 24 * 1024 * 1024  # the token itself is 1.4 MB; the bomb would be 1 GiB

    tracemalloc.start()
    try:
        with pytest.raises(VCGateError):
            decode_encoded_list(encoded, max_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 1024 * 1024

    # With the default response cap the bomb never gets that far.
    default = BitstringStatusMethod(verifier=verifier, fetch=publisher)
    with pytest.raises(VCGateError) as info:
        default.check(vc, GOOD_ENTRY)
    assert code_of(info) == "status_list_invalid"
    assert "larger than 262144 bytes" in info.value.message


def _bits_with_trailer() -> str:
    return "u" + b64url_encode(_gzip(bytes(MIN_ENTRIES // 8)) + b"junk")


def _gzip(data: bytes) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return deflate.compress(data) + deflate.flush()


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["credentialSubject"]["encodedList"] = encode_bitstring(bytes(MIN_ENTRIES // 8))
    return f"{header}.{b64url_encode(json.dumps(body).encode())}.{signature}"


HOSTILE: list[Any] = [
    pytest.param(lambda p, o: sign_list(o), "status_list_invalid", "not issued by the credential's issuer",
                 id="wrong-issuer"),
    pytest.param(lambda p, o: sign_list(o, issuer=p.did), "status_list_invalid", "not valid", id="bad-signature-other-key"),
    pytest.param(lambda p, o: _tampered(sign_list(p, encoded=encode_bitstring(b"\xff" * (MIN_ENTRIES // 8)))),
                 "status_list_invalid", "not valid", id="tampered-payload"),
    pytest.param(lambda p, o: sign_list(p, purpose="suspension"), "status_list_invalid", "statusPurpose",
                 id="wrong-purpose"),
    pytest.param(lambda p, o: sign_list(p, encoded=encode_bitstring(bytes(MIN_ENTRIES // 8 - 1))),
                 "status_list_invalid", "fewer than the 131072", id="shorter-than-minimum"),
    pytest.param(lambda p, o: sign_list(p, encoded=SPEC_ENCODED_LIST_2021), "status_list_invalid", "multibase",
                 id="not-multibase"),
    pytest.param(lambda p, o: sign_list(p, encoded="u!!not-base64!!"), "status_list_invalid", "base64url",
                 id="not-base64url"),
    pytest.param(lambda p, o: sign_list(p, encoded="u" + b64url_encode(bytes(MIN_ENTRIES // 8))),
                 "status_list_invalid", "not GZIP", id="not-gzip"),
    pytest.param(lambda p, o: sign_list(p, encoded="u" + b64url_encode(_gzip(bytes(MIN_ENTRIES // 8))[:-12])),
                 "status_list_invalid", "truncated", id="truncated-gzip"),
    pytest.param(lambda p, o: sign_list(p, encoded="u" + b64url_encode(b"\x1f\x8b\x08" + b"\x00" * 40)),
                 "status_list_invalid", "corrupt", id="corrupt-gzip"),
    pytest.param(lambda p, o: sign_list(p, encoded=_bits_with_trailer()), "status_list_invalid", "trailing",
                 id="gzip-trailing-bytes"),
    pytest.param(lambda p, o: sign_list(p, encoded=12345), "status_list_invalid", "not a string",
                 id="encoded-list-not-string"),
    pytest.param(lambda p, o: sign_list(p, valid_from=NOW - 7200, valid_until=NOW - 3600), "status_list_invalid",
                 "expired", id="list-expired"),
    pytest.param(lambda p, o: sign_list(p, valid_from=NOW + 3600), "status_list_invalid", "not valid until",
                 id="list-not-yet-valid"),
    pytest.param(lambda p, o: sign_list(p, types=("OtherCredential",)), "status_list_invalid",
                 "neither", id="not-a-status-list-credential"),
    pytest.param(lambda p, o: sign_list(p, subject_type="SomethingElse"), "status_list_invalid",
                 "credentialSubject.type", id="wrong-subject-type"),
    pytest.param(lambda p, o: sign_list(p, credential_id="https://status.example/lists/99"),
                 "status_list_invalid", "id is not the URL", id="list-id-mismatch"),
    pytest.param(lambda p, o: sign_list(p, purpose=[]), "status_list_invalid", "one or more strings",
                 id="empty-purposes"),
    pytest.param(lambda p, o: sign_list(p, extra={"ttl": "soon"}), "status_list_invalid", "ttl", id="bad-ttl"),
    pytest.param(lambda p, o: json.dumps({"@context": [], "proof": {}}), "status_list_invalid",
                 "JSON document", id="data-integrity-json"),
    pytest.param(lambda p, o: "\u00e9t\u00e9", "status_list_invalid", "compact JWT", id="not-ascii"),
    pytest.param(lambda p, o: "garbage", "status_list_invalid", "not valid", id="not-a-jwt"),
    pytest.param(lambda p, o: forge({"alg": "none", "typ": "vc+jwt"}, {"iss": p.did}), "status_list_invalid",
                 "not valid", id="alg-none"),
    pytest.param(lambda p, o: b"x" * (256 * 1024 + 1), "status_list_invalid", "larger than 262144",
                 id="oversized-response"),
]


@pytest.mark.parametrize(("build", "code", "says"), HOSTILE)
def test_hostile_list_refused(
    build: Callable[[Party, Party], Any],
    code: str,
    says: str,
    issuer: Party,
    holder: Party,
    verifier: Verifier,
    publisher: Publisher,
    method: BitstringStatusMethod,
) -> None:
    publisher.publish(URL, build(issuer, make_party()))
    vc = credential_with(issuer, holder, verifier, GOOD_ENTRY)
    with pytest.raises(VCGateError) as info:
        method.check(vc, GOOD_ENTRY)
    assert code_of(info) == code
    assert says in info.value.message


@pytest.mark.parametrize(
    ("build", "cause"),
    [
        pytest.param(lambda p, o: _tampered(sign_list(p)), "signature_invalid", id="tampered"),
        pytest.param(lambda p, o: sign_list(o, issuer=p.did), "untrusted_key", id="key-of-another-did"),
        pytest.param(lambda p, o: sign_list(p, valid_from=NOW - 7200, valid_until=NOW - 3600), "expired",
                     id="expired"),
    ],
)
def test_list_verification_failure_keeps_its_cause(
    build: Callable[[Party, Party], str], cause: str, issuer: Party, holder: Party, verifier: Verifier,
    publisher: Publisher, method: BitstringStatusMethod,
) -> None:
    publisher.publish(URL, build(issuer, make_party()))
    vc = credential_with(issuer, holder, verifier, GOOD_ENTRY)
    with pytest.raises(VCGateError) as info:
        method.check(vc, GOOD_ENTRY)
    assert code_of(info) == "status_list_invalid"
    assert info.value.to_dict()["details"] == {"cause": cause}


def test_index_out_of_range(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher, method: BitstringStatusMethod
) -> None:
    publisher.publish(URL, sign_list(issuer))
    entry = {**GOOD_ENTRY, "statusListIndex": str(MIN_ENTRIES)}
    vc = credential_with(issuer, holder, verifier, entry)
    with pytest.raises(VCGateError) as info:
        method.check(vc, entry)
    assert code_of(info) == "status_list_invalid"
    assert "outside" in info.value.message
    assert method.check(vc, {**entry, "statusListIndex": str(MIN_ENTRIES - 1)}).source == URL


def test_smaller_lists_accepted_only_when_configured(
    issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher
) -> None:
    publisher.publish(URL, sign_list(issuer, encoded=encode_bitstring(bytes(16))))
    entry = {**GOOD_ENTRY, "statusListIndex": "100"}
    vc = credential_with(issuer, holder, verifier, entry)
    relaxed = BitstringStatusMethod(verifier=verifier, fetch=publisher, min_entries=128)
    assert relaxed.check(vc, entry).source == URL


@pytest.mark.parametrize(
    ("url", "says"),
    [
        pytest.param("http://status.example/lists/1", "only https", id="http"),
        pytest.param("https://127.0.0.1/lists/1", "IP address literals", id="ipv4-literal"),
        pytest.param("https://169.254.169.254/latest/meta-data", "IP address literals", id="metadata-literal"),
        pytest.param("https://[::1]/lists/1", "IP address literals", id="ipv6-literal"),
        pytest.param("https://user@status.example/lists/1", "userinfo", id="userinfo"),
        pytest.param("https://status.example/lists/1#frag", "fragment", id="fragment"),
        pytest.param("https://localhost/lists/1", "fully qualified", id="single-label"),
        pytest.param("file:///etc/passwd", "only https", id="file"),
    ],
)
def test_refused_urls_are_never_fetched(
    url: str, says: str, issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher,
    method: BitstringStatusMethod,
) -> None:
    entry = {**GOOD_ENTRY, "statusListCredential": url}
    vc = credential_with(issuer, holder, verifier, entry)
    with pytest.raises(VCGateError) as info:
        method.check(vc, entry)
    assert code_of(info) == "status_list_invalid"
    assert says in info.value.message
    assert publisher.calls == []
    # The default fetcher refuses them the same way, before any name lookup.
    with BitstringStatusMethod(verifier=verifier) as default:
        with pytest.raises(VCGateError) as info:
            default.check(vc, entry)
    assert code_of(info) == "status_list_invalid"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(ConnectionError("down"), "status_unavailable", id="network-failure"),
        pytest.param(TimeoutError(), "status_unavailable", id="timeout"),
        pytest.param(HTTPStatusError("answered HTTP 503", status=503), "status_unavailable", id="http-503"),
        pytest.param(AddressForbiddenError("forbidden address", reason="loopback address"), "status_list_invalid",
                     id="ssrf-address"),
    ],
)
def test_fetch_failures(
    error: BaseException, code: str, issuer: Party, holder: Party, verifier: Verifier, publisher: Publisher,
    method: BitstringStatusMethod,
) -> None:
    publisher.error = error
    vc = credential_with(issuer, holder, verifier, GOOD_ENTRY)
    with pytest.raises(VCGateError) as info:
        method.check(vc, GOOD_ENTRY)
    assert code_of(info) == code
    with pytest.raises(VCGateError) as again:
        method.check(vc, GOOD_ENTRY)  # remembered for retry_after: same answer, no new fetch
    assert code_of(again) == code
    assert len(publisher.calls) == 1


# --- a real HTTPS server on 127.0.0.1 -------------------------------------------------------

HOST = "status.test"  # RFC 6761: never in real DNS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("status-pki"), HOST, ca_name="vcgate status test CA")


class _Handler(QuietHandler):
    server: _Server
    content_type = "application/vc+jwt"

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.server.seen.append(self.path)
        if self.path in self.server.lists:
            self.reply(200, self.server.lists[self.path])
        elif self.path == "/big":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.close_connection = True
            piece = b"A" * 16384
            for _ in range(2048):  # 32 MiB offered, without a Content-Length
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/redirect":
            self.reply(302, b"", {"Location": f"https://{HOST}/lists/1"})
        elif self.path == "/gzip":
            self.reply(200, _gzip(b"x" * 100), {"Content-Encoding": "gzip"})
        elif self.path == "/error":
            self.reply(500, b"internal")
        else:
            self.reply(404, b"")


class _Server(HTTPSServer):
    def __init__(self, tls: ssl.SSLContext) -> None:
        super().__init__(_Handler, tls)
        self.lists: dict[str, bytes] = {}
        self.seen: list[str] = []


@pytest.fixture(scope="module")
def server(pki: PKI) -> Iterator[_Server]:
    with serving(_Server(pki.server_context())) as srv:
        yield srv


@pytest.fixture
def https_fetch(pki: PKI) -> Iterator[Callable[..., SafeFetcher]]:
    made: list[SafeFetcher] = []

    def make(**overrides: Any) -> SafeFetcher:
        config: dict[str, Any] = {
            "resolve_host": resolve_hosts({HOST: ["127.0.0.1"]}),
            "allow_networks": ["127.0.0.1/32"],
            "verify": str(pki.ca),
            "timeout": 2.0,
            "max_bytes": 256 * 1024,
            "label": "status list host",
            "document": "status list",
        }
        config.update(overrides)
        fetcher = SafeFetcher(**config)
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        fetcher.close()


def test_round_trip_over_real_https(
    server: _Server, https_fetch: Callable[..., SafeFetcher], issuer: Party, holder: Party, verifier: Verifier,
    clock: Clock,
) -> None:
    url = f"https://{HOST}:{server.port}/lists/1"
    lst = StatusList.create(url)
    index = lst.allocate()
    server.lists["/lists/1"] = lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid,
                                                 valid_from=NOW).encode()
    method = BitstringStatusMethod(verifier=verifier, fetch=https_fetch().fetch)
    vc = credential_with(issuer, holder, verifier, lst.entry(index))
    [result] = StatusChecker([method]).check(vc)
    assert (result.source, result.as_of) == (url, NOW)

    lst.set(index)
    server.lists["/lists/1"] = lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid,
                                                 valid_from=clock.now).encode()
    clock.advance(61)
    with pytest.raises(VCGateError) as info:
        StatusChecker([method]).check(vc)
    assert code_of(info) == "revoked"
    assert server.seen.count("/lists/1") == 2


@pytest.mark.parametrize(
    ("path", "code", "says"),
    [
        pytest.param("/error", "status_unavailable", "HTTP 500", id="http-500"),
        pytest.param("/missing", "status_unavailable", "HTTP 404", id="http-404"),
        pytest.param("/redirect", "status_unavailable", "redirect", id="redirect-not-followed"),
        pytest.param("/gzip", "status_list_invalid", "compressed", id="unrequested-content-encoding"),
        pytest.param("/big", "status_list_invalid", "larger than 262144", id="oversized-chunked"),
    ],
)
def test_hostile_server_over_real_https(
    server: _Server, https_fetch: Callable[..., SafeFetcher], issuer: Party, holder: Party, verifier: Verifier,
    path: str, code: str, says: str,
) -> None:
    entry = {**GOOD_ENTRY, "statusListCredential": f"https://{HOST}:{server.port}{path}"}
    method = BitstringStatusMethod(verifier=verifier, fetch=https_fetch().fetch)
    vc = credential_with(issuer, holder, verifier, entry)
    tracemalloc.start()
    try:
        with pytest.raises(VCGateError) as info:
            method.check(vc, entry)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code_of(info) == code
    assert says in info.value.message
    assert peak < 4 * 1024 * 1024


def test_ssrf_address_refused_without_connecting(
    server: _Server, https_fetch: Callable[..., SafeFetcher], issuer: Party, holder: Party, verifier: Verifier,
) -> None:
    entry = {**GOOD_ENTRY, "statusListCredential": f"https://{HOST}:{server.port}/lists/1"}
    before = len(server.seen)
    method = BitstringStatusMethod(verifier=verifier, fetch=https_fetch(allow_networks=()).fetch)
    vc = credential_with(issuer, holder, verifier, entry)
    with pytest.raises(VCGateError) as info:
        method.check(vc, entry)
    assert code_of(info) == "status_list_invalid"
    assert "forbidden address (loopback address)" in info.value.message
    assert info.value.details["cause"] == "forbidden_address"
    assert "127.0.0.1" not in info.value.message
    assert len(server.seen) == before


def test_untrusted_certificate_is_unavailable(
    server: _Server, https_fetch: Callable[..., SafeFetcher], issuer: Party, holder: Party, verifier: Verifier,
) -> None:
    entry = {**GOOD_ENTRY, "statusListCredential": f"https://{HOST}:{server.port}/lists/1"}
    method = BitstringStatusMethod(verifier=verifier, fetch=https_fetch(verify=True).fetch)
    vc = credential_with(issuer, holder, verifier, entry)
    with pytest.raises(VCGateError) as info:
        method.check(vc, entry)
    assert code_of(info) == "status_unavailable"
    assert "TLS" in info.value.message
