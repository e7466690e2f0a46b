"""Faults of the chain behind ``vcgate serve --rpc``: outages, lies, replaced nodes, reorgs.

A real anvil behind :class:`~tests.faults.harness.RPCFaultProxy`, a real ``vcgate serve``
process whose mirror follows the registry through the proxy. For every fault: the revoked
credential is never accepted (checked on every round), the good one gets a coded refusal
(``status_unavailable``, ``/readyz`` 503) within the stated bound while the fault lasts, and
both are answered correctly again within the stated bound once it ends -- by themselves.
"""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.chain.helpers import require_chain_stack
from tests.support import require_real

require_chain_stack()

from tests.faults.harness import ChainWorld, Prober, RPCFaultProxy, rpc, serve, until  # noqa: E402
from vcgate.chain import AnvilNode, find_anvil  # noqa: E402
from vcgate.chain.anvil import ANVIL_INSTALL_HINT  # noqa: E402

pytestmark = pytest.mark.integration

MAX_STALENESS = 2.0  # --max-staleness
POLL = 0.2  # --mirror-poll-interval
RPC_TIMEOUT = 1.0  # --rpc-timeout
CONFIRMATIONS = 2
# Stated bounds. An outage is refused once the last good sync is older than max_staleness (a
# sync in flight may add one RPC timeout); a node that lies is refused at the next sync. After
# the fault the mirror syncs again within its backoff (at most max(poll, 2 s)) + one RPC.
OUTAGE_FAIL_BOUND = MAX_STALENESS + RPC_TIMEOUT + 2.0
IDENTITY_FAIL_BOUND = POLL + RPC_TIMEOUT + 2.0
RECOVER_BOUND = 2.0 + RPC_TIMEOUT + 2.0
SERVE_ARGS = ("--max-staleness", str(MAX_STALENESS), "--mirror-poll-interval", str(POLL),
              "--rpc-timeout", str(RPC_TIMEOUT), "--confirmations", str(CONFIRMATIONS))


def _require_anvil() -> None:
    if find_anvil() is None:
        require_real("anvil", ANVIL_INSTALL_HINT)


class Stage:
    """One anvil, the proxy in front, the world on it, and a serve following the proxy."""

    def __init__(self, tmp, node: AnvilNode) -> None:
        self.node = node
        self.proxy = RPCFaultProxy(node.url)
        self.world = ChainWorld(node.url, tmp)
        self.world.issue("good")
        self.world.issue("revoked")
        self.world.revoke("revoked")


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    _require_anvil()
    with AnvilNode() as node:
        s = Stage(tmp_path_factory.mktemp("chain-faults"), node)
        with serve(s.world.policy, s.world.serve_args(s.proxy.url, *SERVE_ARGS)) as svc:
            s.svc, s.probe = svc, Prober(s.world, svc.url)
            until("serve answers", s.probe.healthy, 60)
            yield s
        s.proxy.close()


def _fault_round(stage: Stage, timing, mode: str, fail_bound: float, *, upstream: str | None = None,
                 reason: str | None = None) -> None:
    probe = stage.probe
    until("healthy before the fault", probe.healthy, RECOVER_BOUND,
          invariant=probe.never_accepts_revoked)
    original = stage.proxy.upstream
    stage.proxy.set(mode, upstream=upstream)
    try:
        took = until(f"{mode}: refused", probe.refusing, fail_bound,
                     invariant=probe.never_accepts_revoked, show=probe.state)
        timing("fail closed", took)
        if reason is not None:
            metrics = stage.svc.metrics()
            assert re.search(r'vcgate_mirror_chain_mismatch\{reason="%s",registry="[^"]+"\} 1\.0' % reason, metrics), metrics
            assert requests.get(stage.svc.url + "/readyz", timeout=5).json()["checks"]["mirror"]["chain_mismatch"] == reason
        # Still refused a while later: the fault, not a passing hiccup, holds the gate closed.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            probe.never_accepts_revoked()
            assert probe("good") == (503, "status_unavailable")
    finally:
        stage.proxy.set("pass", upstream=original)
    took = until(f"{mode}: recovered", probe.healthy, RECOVER_BOUND,
                 invariant=probe.never_accepts_revoked, show=probe.state)
    timing("recover", took)


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("refuse", id="connection-refused"),
        pytest.param("reset", id="connection-reset"),
        pytest.param("hang", id="hang"),
        pytest.param("trickle", id="trickle"),
        pytest.param("garbage", id="garbage-json"),
        pytest.param("huge", id="huge-response"),
    ],
)
def test_node_outage_fails_closed_after_max_staleness_and_recovers(stage, timing, mode):
    _fault_round(stage, timing, mode, OUTAGE_FAIL_BOUND)


def test_node_reporting_another_chain_id_is_refused_at_once(stage, timing):
    _fault_round(stage, timing, "wrong_chain_id", IDENTITY_FAIL_BOUND, reason="chain_id")


def test_node_replaced_by_an_empty_chain_is_refused_at_once(stage, timing):
    with AnvilNode() as empty:  # same chain id, nothing deployed: "no events" must not mean "not revoked"
        _fault_round(stage, timing, "pass", IDENTITY_FAIL_BOUND, upstream=empty.url, reason="registry_code")


def test_shallow_reorg_is_followed(stage, timing):
    """A revocation mined and then reorganised away (within the window) is undone; the one
    before it stays in force at every moment."""
    probe, world, url = stage.probe, stage.world, stage.node.url
    until("healthy", probe.healthy, RECOVER_BOUND)
    world.issue("fleeting")
    snapshot = rpc(url, "evm_snapshot")
    world.revoke("fleeting")
    until("fleeting revoked", lambda: probe("fleeting") == (401, "revoked"), RECOVER_BOUND,
          invariant=probe.never_accepts_revoked)
    rpc(url, "evm_revert", snapshot)
    rpc(url, "anvil_mine", "0x3")  # a longer branch without that revocation
    took = until("reorg followed", lambda: probe("fleeting") == (200, None), RECOVER_BOUND,
                 invariant=probe.never_accepts_revoked)
    timing("reorg followed", took)
    assert probe.healthy()
