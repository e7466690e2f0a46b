"""EthrRevocationRegistry2022 entries: the builder, the strict parser, and both status methods."""

from __future__ import annotations

import os
import time

import pytest

from tests.chain.helpers import require_chain_stack

require_chain_stack()

from tests.chain.conftest import chain, owner, registry  # noqa: E402,F401 - shared fixtures
from vcgate.chain import RegistryClient, connect, deploy_registry  # noqa: E402
from vcgate.credentials.models import FORMAT_VC_JOSE, VerifiedCredential  # noqa: E402
from vcgate.errors import (  # noqa: E402
    MalformedError,
    RevokedError,
    StatusUnavailableError,
    StatusUnsupportedError,
    VCGateError,
)
from vcgate.keys import PrivateKey  # noqa: E402
from vcgate.status import StatusChecker  # noqa: E402
from vcgate.status.mirror import RevocationMirror  # noqa: E402
from vcgate.status.registry import (  # noqa: E402
    ENTRY_TYPE,
    DirectRegistryStatus,
    OnchainStatusMethod,
    RegistryStatusEntry,
    parse_status_entry,
    status_entry,
)

REG = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # a well-known checksummed address (anvil's first deploy)
NS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
LIST = "0x" + "11" * 32
KEY = "0x" + "22" * 32


def good_entry(**changes):
    entry = status_entry(REG, 31337, NS, LIST, KEY)
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not _DROP}


_DROP = object()


def credential(*entries) -> VerifiedCredential:
    key = PrivateKey.generate("EdDSA")
    return VerifiedCredential(
        format=FORMAT_VC_JOSE,
        issuer="did:example:issuer",
        subject="did:example:holder",
        types=("VerifiableCredential",),
        claims={},
        valid_from=None,
        valid_until=None,
        status=tuple(entries),
        id="urn:uuid:1",
        kid="did:example:issuer#k",
        issuer_key=key.public_key,
        payload={},
        token="",
    )


# --- builder and parser ------------------------------------------------------------------------


def test_status_entry_shape():
    entry = status_entry(REG.lower(), 31337, NS.lower(), bytes.fromhex(LIST[2:]), KEY)
    assert entry == {
        "id": f"{REG}#{'11' * 32}-{'22' * 32}",
        "type": "EthrRevocationRegistry2022",
        "registry": REG,  # checksummed on the way in
        "chainId": 31337,
        "namespace": NS,
        "revocationList": LIST,
        "revocationKey": KEY,
    }
    parsed = parse_status_entry(entry)
    assert parsed == RegistryStatusEntry(entry["id"], REG, 31337, NS, b"\x11" * 32, b"\x22" * 32)
    assert parsed.namespace_bytes == bytes.fromhex(NS[2:])
    assert parsed.source == f"eip155:31337:{REG}"
    assert parsed.to_dict() == entry
    assert status_entry(REG, 1, NS, LIST, KEY, id="urn:uuid:x")["id"] == "urn:uuid:x"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((REG, 0, NS, LIST, KEY), id="chain-0"),
        pytest.param((REG, True, NS, LIST, KEY), id="chain-bool"),
        pytest.param((REG, 1, NS, b"\x11" * 31, KEY), id="short-list"),
        pytest.param((REG, 1, NS, LIST, KEY[:-2]), id="short-key"),
        pytest.param((REG[:-1], 1, NS, LIST, KEY), id="short-address"),
        pytest.param((REG, 1, NS.replace("f", "F"), LIST, KEY), id="bad-checksum"),
    ],
)
def test_status_entry_refuses_bad_input(args):
    with pytest.raises(MalformedError):
        status_entry(*args)
    with pytest.raises(MalformedError):
        status_entry(REG, 1, NS, LIST, KEY, id="")


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("not an object", id="not-a-mapping"),
        pytest.param(good_entry(type="BitstringStatusListEntry"), id="other-type"),
        pytest.param(good_entry(type=_DROP), id="no-type"),
        pytest.param(good_entry(registry=_DROP), id="no-registry"),
        pytest.param(good_entry(chainId=_DROP), id="no-chainId"),
        pytest.param(good_entry(namespace=_DROP), id="no-namespace"),
        pytest.param(good_entry(revocationList=_DROP), id="no-list"),
        pytest.param(good_entry(revocationKey=_DROP), id="no-key"),
        pytest.param(good_entry(chainId="31337"), id="chainId-string"),
        pytest.param(good_entry(chainId=31337.0), id="chainId-float"),
        pytest.param(good_entry(chainId=True), id="chainId-bool"),
        pytest.param(good_entry(chainId=0), id="chainId-zero"),
        pytest.param(good_entry(chainId=-1), id="chainId-negative"),
        pytest.param(good_entry(chainId=2**64), id="chainId-huge"),
        pytest.param(good_entry(registry=REG.replace("F", "f", 1)), id="registry-bad-checksum"),
        pytest.param(good_entry(registry=REG[2:]), id="registry-no-0x"),
        pytest.param(good_entry(registry=REG + "00"), id="registry-long"),
        pytest.param(good_entry(registry=None), id="registry-null"),
        pytest.param(good_entry(namespace=NS.replace("f", "F", 1)), id="namespace-bad-checksum"),
        pytest.param(good_entry(namespace=123), id="namespace-number"),
        pytest.param(good_entry(revocationList=LIST[:-2]), id="list-31-bytes"),
        pytest.param(good_entry(revocationList=LIST + "11"), id="list-33-bytes"),
        pytest.param(good_entry(revocationList=LIST[2:]), id="list-no-0x"),
        pytest.param(good_entry(revocationList="0X" + LIST[2:]), id="list-0X"),
        pytest.param(good_entry(revocationList="0x" + "zz" * 32), id="list-not-hex"),
        pytest.param(good_entry(revocationList="0x" + "11 " * 21 + "1"), id="list-with-spaces"),
        pytest.param(good_entry(revocationKey=["0x" + "22" * 32]), id="key-array"),
        pytest.param(good_entry(revocationKey=-1), id="key-number"),
        pytest.param(good_entry(id=""), id="id-empty"),
        pytest.param(good_entry(id=42), id="id-number"),
        pytest.param(good_entry(id="x" * 5000), id="id-huge"),
    ],
)
def test_parser_refuses(entry):
    with pytest.raises(MalformedError) as excinfo:
        parse_status_entry(entry)
    assert excinfo.value.code == "malformed"


def test_parser_accepts_lowercase_and_no_id():
    entry = good_entry(registry=REG.lower(), namespace=NS.lower(), revocationKey=KEY.upper().replace("0X", "0x"))
    del entry["id"]
    parsed = parse_status_entry({**entry, "extra": "ignored"})
    assert (parsed.id, parsed.registry, parsed.namespace, parsed.revocation_key) == (None, REG, NS, b"\x22" * 32)


# --- the request-path method (mirrors) ---------------------------------------------------------


@pytest.fixture
def mirror(chain, registry):  # noqa: F811
    m = RevocationMirror(chain=chain, registry=registry.address, chain_id=chain.chain_id(), confirmations=1)
    assert m.sync_once().ok
    yield m
    m.stop()


def _code(fn, *args) -> str:
    with pytest.raises(VCGateError) as excinfo:
        fn(*args)
    return excinfo.value.code


def test_onchain_method_refuses_revoked_and_routes_by_registry(chain, registry, owner, mirror):  # noqa: F811
    lst, key = os.urandom(32), os.urandom(32)
    entry = status_entry(registry.address, chain.chain_id(), owner.address, lst, key)
    method = OnchainStatusMethod([mirror])
    checker = StatusChecker([method])
    (result,) = checker.check(credential(entry))
    assert (result.type, result.purpose) == (ENTRY_TYPE, "revocation")
    assert result.source == f"eip155:{chain.chain_id()}:{registry.address}"
    assert 0 <= time.time() - result.as_of < 60  # the mirror's last good sync

    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=key)
    assert mirror.sync_once().ok
    with pytest.raises(RevokedError) as excinfo:
        checker.check(credential(entry))
    assert excinfo.value.code == "revoked" and excinfo.value.status == 401

    # A second registry on the same chain, with its own mirror: entries go to the right one.
    other = RegistryClient(chain, deploy_registry(chain, owner))
    other_mirror = RevocationMirror(chain=chain, registry=other.address, chain_id=chain.chain_id(), confirmations=1)
    assert other_mirror.sync_once().ok
    method.register(other_mirror)
    assert len(method.mirrors) == 2
    other_entry = status_entry(other.address, chain.chain_id(), owner.address, lst, key)
    checker.check(credential(other_entry))  # same list and key, other registry: not revoked
    assert _code(checker.check, credential(entry, other_entry)) == "revoked"  # every entry must pass


def test_onchain_method_unknown_registry_or_chain_is_unsupported(chain, registry, owner, mirror):  # noqa: F811
    method = OnchainStatusMethod([mirror])
    cred = credential()
    lst, key = os.urandom(32), os.urandom(32)
    for entry in (
        status_entry(REG, chain.chain_id(), owner.address, lst, key),  # no mirror for that registry
        status_entry(registry.address, chain.chain_id() + 1, owner.address, lst, key),  # nor that chain
    ):
        with pytest.raises(StatusUnsupportedError) as excinfo:
            method.check(cred, entry)
        assert excinfo.value.code == "status_unsupported"
    assert _code(method.check, cred, {"type": ENTRY_TYPE}) == "malformed"


def test_onchain_method_stale_mirror_is_unavailable(chain, registry, owner):  # noqa: F811
    now = [1_000_000.0]
    m = RevocationMirror(
        chain=chain, registry=registry.address, chain_id=chain.chain_id(), max_staleness=10, clock=lambda: now[0]
    )
    method = OnchainStatusMethod([m])
    entry = status_entry(registry.address, chain.chain_id(), owner.address, os.urandom(32), os.urandom(32))
    assert _code(method.check, credential(), entry) == "status_unavailable"  # never synced
    assert m.sync_once().ok
    assert method.check(credential(), entry).as_of == now[0]
    now[0] += 11
    with pytest.raises(StatusUnavailableError) as excinfo:
        method.check(credential(), entry)
    assert excinfo.value.status == 503


def test_onchain_method_is_fast(chain, registry, owner, mirror):  # noqa: F811
    """No network on the request path: a check costs microseconds (budget here is generous)."""
    method = OnchainStatusMethod([mirror])
    entry = status_entry(registry.address, chain.chain_id(), owner.address, os.urandom(32), os.urandom(32))
    cred = credential()
    method.check(cred, entry)  # warms the address cache
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        method.check(cred, entry)
    per_check = (time.perf_counter() - t0) / n
    assert per_check < 100e-6, per_check


# --- the direct (CLI) method -------------------------------------------------------------------


def test_direct_status_reads_the_chain(chain, registry, owner):  # noqa: F811
    lst, key = os.urandom(32), os.urandom(32)
    entry = status_entry(registry.address, chain.chain_id(), owner.address, lst, key)
    direct = DirectRegistryStatus(chain, clock=lambda: 123.0)
    status = direct.read(entry)
    assert (status.revoked, status.list_revoked) == (False, False)
    assert status.block_number == chain.block_number()
    assert direct.check(credential(), entry).as_of == 123.0

    registry.change_status(owner, revoked=True, revocation_list=lst, revocation_key=key)
    assert direct.read(entry).revoked
    assert _code(direct.check, credential(), entry) == "revoked"
    registry.change_status(owner, revoked=False, revocation_list=lst, revocation_key=key)
    registry.change_list_status(owner, revoked=True, revocation_list=lst)
    status = direct.read(parse_status_entry(entry))
    assert (status.revoked, status.list_revoked) == (True, True)
    with pytest.raises(RevokedError) as excinfo:
        direct.check(credential(), entry)
    assert "list" in excinfo.value.message


def test_direct_status_refusals(chain, registry, owner):  # noqa: F811
    lst, key = os.urandom(32), os.urandom(32)
    cred = credential()
    direct = DirectRegistryStatus(chain)
    # Another chain than the node's: the node cannot answer for it.
    wrong_chain = status_entry(registry.address, chain.chain_id() + 1, owner.address, lst, key)
    assert _code(direct.check, cred, wrong_chain) == "status_unsupported"
    # No contract at the named address.
    no_registry = status_entry(owner.address, chain.chain_id(), owner.address, lst, key)
    assert _code(direct.check, cred, no_registry) == "status_list_invalid"
    # A registry outside the allow-list.
    limited = DirectRegistryStatus(chain, registries=[REG])
    entry = status_entry(registry.address, chain.chain_id(), owner.address, lst, key)
    assert _code(limited.check, cred, entry) == "status_unsupported"
    # The node is down.
    down = DirectRegistryStatus(connect("http://127.0.0.1:9", timeout=0.5))
    assert _code(down.check, cred, entry) == "status_unavailable"


def test_onchain_method_parse_cache_keeps_types_apart(mirror):
    """Parsed entries are cached by their raw values; look-alike values must not share a slot."""
    method = OnchainStatusMethod([mirror])
    cred = credential()
    entry = good_entry(chainId=1)
    for _ in range(2):  # the second answer comes from the cache
        assert _code(method.check, cred, entry) == "status_unsupported"  # parsed: no mirror for chain 1
    for bad in (
        good_entry(chainId=True),
        good_entry(chainId=1.0),
        good_entry(revocationKey=[KEY]),  # unhashable: no cache, the parser refuses it
        good_entry(type="Other"),
        good_entry(id=""),
    ):
        assert _code(method.check, cred, bad) == "malformed"
    small = OnchainStatusMethod([mirror], cache_size=2)
    for i in range(5):
        assert _code(small.check, cred, good_entry(chainId=i + 1)) == "status_unsupported"
    assert len(small._entries) <= 2
