"""On-chain revocation end to end against a real anvil: issue, verify, revoke, refuse, recover.

Each test starts its own anvil (npm ``@foundry-rs/anvil``, pinned in tools/chain) on
127.0.0.1; without it the tests skip with the install hint, and fail under CI=true. The
mirrors poll every 0.25 s, as a gateway next to a local node would.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import pytest

from tests.chain.helpers import require_chain_stack
from tests.support import require_real

require_chain_stack()

from vcgate.chain import (  # noqa: E402
    AnvilNode,
    RegistryClient,
    connect,
    deploy_registry,
    eth_account_from_key,
    eth_address,
    find_anvil,
)
from vcgate.errors import NotAuthorizedError  # noqa: E402
from vcgate.chain.anvil import ANVIL_INSTALL_HINT  # noqa: E402
from vcgate.credentials import Verifier, issue_credential  # noqa: E402
from vcgate.did import did_key_from_public_key  # noqa: E402
from vcgate.errors import VCGateError  # noqa: E402
from vcgate.keys import PrivateKey  # noqa: E402
from vcgate.status import StatusChecker  # noqa: E402
from vcgate.status.mirror import RevocationMirror  # noqa: E402
from vcgate.status.registry import OnchainStatusMethod, status_entry  # noqa: E402

pytestmark = pytest.mark.integration

POLL = 0.25


def _require_anvil() -> None:
    if find_anvil() is None:
        require_real("anvil", ANVIL_INSTALL_HINT)


@pytest.fixture(scope="module")
def anvil():
    """Automine: each transaction is mined into its own block as it arrives."""
    _require_anvil()
    with AnvilNode() as node:
        yield node


@pytest.fixture(scope="module")
def anvil_1s():
    """A block every second, like a (fast) real network."""
    _require_anvil()
    with AnvilNode(block_time=1) as node:
        yield node


class Setup:
    def __init__(self, url: str) -> None:
        self.chain = connect(url, timeout=5)
        self.issuer_key = PrivateKey.generate("ES256K")  # signs the VCs and the transactions
        self.issuer = eth_account_from_key(self.issuer_key)
        self.chain.fund(self.issuer.address, 10**18)
        self.registry = RegistryClient(self.chain, deploy_registry(self.chain, self.issuer))
        self.did = did_key_from_public_key(self.issuer_key.public_key)

    def mirror(self, **kw) -> RevocationMirror:
        kw.setdefault("poll_interval", POLL)
        kw.setdefault("confirmations", 3)
        return RevocationMirror(
            chain=connect(self.chain.w3.provider.endpoint_uri, timeout=2),  # the gateway's own connection
            registry=self.registry.address,
            chain_id=self.chain.chain_id(),
            **kw,
        )

    def issue(self, lst: bytes, key: bytes) -> str:
        now = time.time()
        entry = status_entry(
            self.registry.address, self.chain.chain_id(), eth_address(self.issuer_key.public_key), lst, key
        )
        return issue_credential(
            self.issuer_key,
            issuer=self.did,
            kid=f"{self.did}#{self.did.method_specific_id}",
            subject="did:example:agent",
            types=["ModelAccessCredential"],
            claims={"models": ["llama-3-70b"]},
            valid_from=now - 60,
            valid_until=now + 3600,
            status=entry,
        )


def _code(check: Callable[[], object]) -> str | None:
    try:
        check()
    except VCGateError as exc:
        return exc.code
    return None


def _until(check: Callable[[], object], code: str | None, timeout: float) -> float:
    """Seconds until ``check`` answers with ``code`` (None: accepted), polling every 5 ms."""
    t0 = time.monotonic()
    while True:
        got = _code(check)
        if got == code:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"still {got!r} after {timeout} s, expected {code!r}")
        time.sleep(0.005)


def test_issue_verify_revoke_refused_within_a_poll_and_a_block(anvil_1s):
    """The issue's flow on a node with 1 s blocks: revoke -> refused within one poll + one block
    (from sending the transaction) -> unrevoke -> accepted again."""
    s = Setup(anvil_1s.url)
    lst, key = os.urandom(32), os.urandom(32)
    token = s.issue(lst, key)
    vc = Verifier().verify_credential(token)
    assert vc.status[0]["namespace"] == s.issuer.address  # the issuer's own key is its namespace

    with s.mirror() as mirror:
        mirror.wait_ready(10)
        checker = StatusChecker([OnchainStatusMethod([mirror])])

        def check() -> object:
            return checker.check(Verifier().verify_credential(token))

        assert _code(check) is None
        # One poll + one block, with slack: a functional bound (revocation is seen within it),
        # loose enough that a loaded 2-core CI machine does not turn it into a timing test.
        budget = POLL + anvil_1s.block_time + 2.0
        latencies = []
        for revoked, expect in ((True, "revoked"), (False, None)):
            t_send = time.monotonic()
            s.registry.change_status(s.issuer, revoked=revoked, revocation_list=lst, revocation_key=key)
            t_mined = time.monotonic() - t_send
            waited = _until(check, expect, timeout=10)
            latencies.append((t_mined, t_mined + waited))
        for t_mined, t_refused in latencies:
            print(f"\nreceipt after {t_mined:.2f} s, mirror answer changed {t_refused:.2f} s after sending")
            assert t_refused <= budget, f"{t_refused:.2f} s > one poll + one block ({budget:.2f} s)"
        assert mirror.stats().errors == 0


def test_revocation_seen_within_a_poll_on_automine(anvil):
    """Automine: from the mined receipt to the mirror refusing, over a few trials."""
    s = Setup(anvil.url)
    lst = os.urandom(32)
    with s.mirror() as mirror:
        mirror.wait_ready(10)
        method = OnchainStatusMethod([mirror])
        latencies = []
        for _ in range(4):
            key = os.urandom(32)
            vc = Verifier().verify_credential(s.issue(lst, key))
            checker = StatusChecker([method])
            assert _code(lambda: checker.check(vc)) is None
            s.registry.change_status(s.issuer, revoked=True, revocation_list=lst, revocation_key=key)
            latencies.append(_until(lambda: checker.check(vc), "revoked", timeout=5))
    print(f"\nautomine: receipt -> refused median {statistics.median(latencies):.3f} s, max {max(latencies):.3f} s")
    assert max(latencies) <= POLL + 2.0  # within a poll, with room for a loaded machine


def test_list_revocation_and_a_strangers_write(anvil):
    s = Setup(anvil.url)
    lst, k1, k2 = os.urandom(32), os.urandom(32), os.urandom(32)
    stranger = eth_account_from_key(PrivateKey.generate("ES256K"))
    s.chain.fund(stranger.address, 10**18)
    vc1, vc2 = (Verifier().verify_credential(s.issue(lst, k)) for k in (k1, k2))
    with s.mirror() as mirror:
        mirror.wait_ready(10)
        checker = StatusChecker([OnchainStatusMethod([mirror])])
        s.registry.change_list_status(s.issuer, revoked=True, revocation_list=lst)
        _until(lambda: checker.check(vc1), "revoked", timeout=3)
        assert _code(lambda: checker.check(vc2)) == "revoked"  # every key of the list

        # A stranger may not reinstate the list, nor touch a key, in the issuer's namespace.
        for write in (
            lambda: s.registry.change_list_status(
                stranger, revoked=False, revocation_list=lst, namespace=s.issuer.address
            ),
            lambda: s.registry.change_status(
                stranger, revoked=True, revocation_list=os.urandom(32), revocation_key=k1, namespace=s.issuer.address
            ),
        ):
            with pytest.raises(NotAuthorizedError) as excinfo:
                write()
            assert excinfo.value.code == "registry_not_authorized"
            assert excinfo.value.revert.name == "NotListOwner"
        time.sleep(2 * POLL)
        assert _code(lambda: checker.check(vc1)) == "revoked"

        s.registry.change_list_status(s.issuer, revoked=False, revocation_list=lst)
        _until(lambda: checker.check(vc1), None, timeout=3)
        assert _code(lambda: checker.check(vc2)) is None


def test_node_down_fails_closed_then_recovers(tmp_path):
    _require_anvil()
    state = tmp_path / "anvil-state.json"
    node = AnvilNode(state=state).start()
    try:
        s = Setup(node.url)
        lst, old, new = os.urandom(32), os.urandom(32), os.urandom(32)
        s.registry.change_status(s.issuer, revoked=True, revocation_list=lst, revocation_key=old)
        mirror = s.mirror(max_staleness=1.0)
        with mirror:
            mirror.wait_ready(10)
            assert _code(lambda: mirror.check(s.issuer.address, lst, old)) == "revoked"
            assert _code(lambda: mirror.check(s.issuer.address, lst, new)) is None

            node.stop()  # SIGTERM: anvil writes its state file
            t_down = time.monotonic()
            waited = _until(lambda: mirror.check(s.issuer.address, lst, new), "status_unavailable", timeout=5)
            print(f"\nnode down: refused with status_unavailable after {waited:.2f} s (max_staleness 1 s)")
            assert 0.5 <= waited <= 1.0 + POLL + 3.0  # never before max_staleness; soon after it
            assert not mirror.healthy and mirror.stats().errors >= 1
            # A revoked key stays refused too, but for the honest reason: the status is unknown.
            assert _code(lambda: mirror.check(s.issuer.address, lst, old)) == "status_unavailable"
            assert mirror.lag().seconds > 1.0

            node = AnvilNode(state=state, port=node.port).start()  # same URL, same chain
            recovered = _until(lambda: mirror.check(s.issuer.address, lst, new), None, timeout=8)
            print(f"node back: accepted again {recovered:.2f} s after restart ({time.monotonic() - t_down:.2f} s down)")
            assert _code(lambda: mirror.check(s.issuer.address, lst, old)) == "revoked"
            s.registry.change_status(s.issuer, revoked=True, revocation_list=lst, revocation_key=new)
            _until(lambda: mirror.check(s.issuer.address, lst, new), "revoked", timeout=3)
            assert mirror.stats().chain_mismatches == 0  # anvil kept its blocks: the same chain
    finally:
        node.stop()


def test_reorg_snapshot_revert(anvil):
    s = Setup(anvil.url)
    lst, key = os.urandom(32), os.urandom(32)
    rpc = s.chain.w3.provider.make_request
    with s.mirror(confirmations=5) as mirror:
        mirror.wait_ready(10)
        snapshot = rpc("evm_snapshot", [])["result"]
        s.registry.change_status(s.issuer, revoked=True, revocation_list=lst, revocation_key=key)
        _until(lambda: mirror.check(s.issuer.address, lst, key), "revoked", timeout=3)

        assert rpc("evm_revert", [snapshot])["result"] is True
        for _ in range(3):
            rpc("evm_mine", [])  # another, longer branch without the revocation
        _until(lambda: mirror.check(s.issuer.address, lst, key), None, timeout=3)
        assert not s.registry.is_revoked(s.issuer.address, lst, key)
        stats = mirror.stats()
        assert stats.reorgs >= 1 and stats.blocks_rolled_back >= 1 and stats.chain_mismatches == 0
        deadline = time.monotonic() + 3
        while mirror.lag().synced_block != s.chain.block_number():
            assert time.monotonic() < deadline, mirror.lag()
            time.sleep(0.05)
