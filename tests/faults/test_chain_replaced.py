"""Finding 1 of issue 10: the node behind ``vcgate serve --rpc`` replaced on the same port.

Before the fix the mirror resynced from block 0 on the new chain, found no events, reported
itself healthy, and the revoked credential was accepted again. Now: a fresh anvil (with the
registry even redeployed at the same address, same code), or one with chain id 999, on the
same port is refused ``status_unavailable`` with ``/readyz`` 503 -- and the original chain
(anvil restarted from its state file: same blocks) is answered again, by itself. A reorg
deeper than the confirmation window is the same case: refused until that history is back.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from tests.chain.helpers import require_chain_stack

require_chain_stack()

from tests.faults.harness import ChainWorld, Prober, rpc, serve, until  # noqa: E402
from tests.faults.test_chain import (  # noqa: E402
    IDENTITY_FAIL_BOUND,
    RECOVER_BOUND,
    SERVE_ARGS,
    _require_anvil,
)
from tests.integration.gateway_support import AuthService  # noqa: E402
from vcgate.chain import AnvilNode, RegistryClient, connect, deploy_registry  # noqa: E402

pytestmark = pytest.mark.integration

START_BOUND = 20.0  # an anvil restart plus one sync


def _mismatch(svc: AuthService) -> str | None:
    return requests.get(svc.url + "/readyz", timeout=5).json()["checks"]["mirror"]["chain_mismatch"]


def test_node_replaced_on_the_same_port_then_back(tmp_path, timing):
    _require_anvil()
    state = tmp_path / "anvil-state.json"
    node = AnvilNode(state=state).start()
    port = node.port
    try:
        world = ChainWorld(node.url, tmp_path)
        world.issue("good")
        world.issue("revoked")
        world.revoke("revoked")
        with serve(world.policy, world.serve_args(node.url, *SERVE_ARGS)) as svc:
            probe = Prober(world, svc.url)
            until("healthy", probe.healthy, START_BOUND)

            for label, chain_id, redeploy, reason in (
                ("fresh anvil, registry redeployed at the same address", None, True, "history"),
                ("anvil with chain id 999", 999, False, "chain_id"),
            ):
                node.stop()  # SIGTERM: anvil writes its state file (the original chain)
                with AnvilNode(port=port, chain_id=chain_id) as other:
                    if redeploy:
                        # The same deployer at nonce 0 gives the same address and the same
                        # code: only the block history tells this chain from the original.
                        chain = connect(other.url)
                        chain.fund(world.issuer.address, 10**18)
                        assert deploy_registry(chain, world.issuer) == world.registry.address
                        assert RegistryClient(chain, world.registry.address).is_revoked(
                            world.issuer.address, *world.credentials["revoked"][1:]) is False
                    took = until(label, probe.refusing, IDENTITY_FAIL_BOUND + 2,
                                 invariant=probe.never_accepts_revoked,
                                 show=probe.state)
                    timing(f"fail closed ({label[:20]})", took)
                    # (Before the redeploy the fresh node had no code there: registry_code.)
                    until(f"reason {reason}", lambda: _mismatch(svc) == reason, IDENTITY_FAIL_BOUND,
                          invariant=probe.never_accepts_revoked)
                    metrics = svc.metrics()
                    assert re.search(r'vcgate_mirror_chain_mismatch\{reason="%s",registry="[^"]+"\} 1\.0' % reason,
                                     metrics)
                    for _ in range(5):
                        probe.never_accepts_revoked()
                node = AnvilNode(port=port, state=state).start()  # the original chain is back
                took = until("original chain back", probe.healthy, START_BOUND,
                             invariant=probe.never_accepts_revoked, show=probe.state)
                timing(f"recover ({label[:20]})", took)
                assert _mismatch(svc) is None
    finally:
        node.stop()


def test_reorg_deeper_than_the_window_fails_closed(tmp_path, timing):
    """Revocation confirmed (deeper than --confirmations), then the chain reorganises below it:
    refused, and not "healed" by adopting the new history on its own."""
    _require_anvil()
    with AnvilNode() as node:
        world = ChainWorld(node.url, tmp_path)
        world.issue("good")
        world.issue("revoked")
        with serve(world.policy, world.serve_args(node.url, *SERVE_ARGS)) as svc:
            probe = Prober(world, svc.url)
            until("healthy", lambda: probe("good") == (200, None), START_BOUND)
            snapshot = rpc(node.url, "evm_snapshot")
            world.revoke("revoked")
            rpc(node.url, "anvil_mine", "0x6")  # the revocation is now past the window (2)
            until("revoked", probe.healthy, RECOVER_BOUND)
            head = world.chain.block_number()
            # The mirror must have confirmed the revocation (synced to the head, 6 > 2 blocks
            # past it) -- else the revert below is a reorg within the window, rightly followed.
            until("synced to the head", lambda: requests.get(svc.url + "/readyz", timeout=5).json()["checks"]
                  ["mirror"]["synced_block"] == head, RECOVER_BOUND)
            rpc(node.url, "evm_revert", snapshot)
            rpc(node.url, "anvil_mine", "0xa")  # a longer branch without the revocation
            took = until("deep reorg refused", probe.refusing, IDENTITY_FAIL_BOUND,
                         invariant=probe.never_accepts_revoked, show=probe.state)
            timing("fail closed (history)", took)
            assert _mismatch(svc) == "history"
            status = json.loads(requests.get(svc.url + "/readyz", timeout=5).text)
            assert status["status"] == "not_ready"
            for _ in range(10):  # no recovery onto a history that dropped a confirmed revocation
                probe.never_accepts_revoked()
                assert probe("good") == (503, "status_unavailable")
