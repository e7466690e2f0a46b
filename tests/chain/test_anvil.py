"""Against a real node: anvil from the pinned npm package, on 127.0.0.1, started here."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.chain.helpers import require_chain_stack
from tests.support import require_real

require_chain_stack()

from vcgate.chain import (  # noqa: E402
    AnvilNode,
    RegistryClient,
    connect,
    deploy_registry_tx,
    eth_account_from_key,
    fetch_events,
    find_anvil,
)
from vcgate.errors import ChainUnavailableError, NotAuthorizedError  # noqa: E402
from vcgate.chain.anvil import ANVIL_INSTALL_HINT  # noqa: E402
from vcgate.keys import PrivateKey  # noqa: E402

pytestmark = pytest.mark.integration

LIST = b"\x11" * 32
KEY = b"\x22" * 32


def _require_anvil() -> None:
    if find_anvil() is None:
        require_real("anvil", ANVIL_INSTALL_HINT)


@pytest.fixture(scope="module")
def anvil():
    _require_anvil()
    with AnvilNode() as node:
        yield node


def _issuer(chain):
    account = eth_account_from_key(PrivateKey.generate("ES256K"))
    chain.fund(account.address, 10**18)
    return account


def test_deploy_revoke_read_back(anvil):
    assert anvil.url.startswith("http://127.0.0.1:")
    chain = connect(anvil.url, timeout=5)
    issuer, stranger = _issuer(chain), _issuer(chain)
    deployed = deploy_registry_tx(chain, issuer)
    registry = RegistryClient(chain, deployed.contract_address)

    revoke = registry.change_status(issuer, revoked=True, revocation_list=LIST, revocation_key=KEY)
    # A second connection (as a verifier would have) reads the same state.
    reader = RegistryClient(connect(anvil.url, timeout=5), registry.address)
    assert reader.is_revoked(issuer.address, LIST, KEY)
    assert not reader.is_revoked(stranger.address, LIST, KEY)

    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.change_status(
            stranger, namespace=issuer.address, revoked=False, revocation_list=LIST, revocation_key=KEY
        )
    assert excinfo.value.revert.name == "NotListOwner"

    (event,) = fetch_events(chain, registry.address, deployed.block_number, chain.block_number())
    assert (event.tx_hash, event.namespace, event.revocation_key, event.revoked) == (
        revoke.tx_hash,
        issuer.address,
        KEY,
        True,
    )
    print(f"\nanvil gas: deploy {deployed.gas_used}, changeStatus {revoke.gas_used}")


def test_eth_call_costs_one_request(anvil):
    """web3.py 8 asks eth_chainId around each eth_call unless it may cache it (DESIGN.md)."""
    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(json.loads(body)["method"])
            request = urllib.request.Request(
                anvil.url, data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                answer = response.read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        direct = connect(anvil.url, timeout=5)
        registry = RegistryClient(direct, deploy_registry_tx(direct, _issuer(direct)).contract_address)
        proxied = RegistryClient(
            connect(f"http://127.0.0.1:{server.server_port}", timeout=5), registry.address
        )
        proxied.is_revoked(registry.address, LIST, KEY)  # warm: may ask the chain id once
        seen.clear()
        for _ in range(5):
            proxied.is_revoked(registry.address, LIST, KEY)
        assert seen == ["eth_call"] * 5
    finally:
        server.shutdown()
        server.server_close()


def test_state_survives_restart_and_a_stopped_node_is_unavailable(tmp_path):
    _require_anvil()
    state = tmp_path / "anvil-state.json"
    with AnvilNode(state=state) as node:
        assert len(node.dev_private_keys) == 10
        chain = connect(node.url, timeout=5)
        issuer = _issuer(chain)
        address = deploy_registry_tx(chain, issuer).contract_address
        RegistryClient(chain, address).change_status(
            issuer, revoked=True, revocation_list=LIST, revocation_key=KEY
        )
    assert state.is_file()

    with AnvilNode(state=state) as node:
        registry = RegistryClient(connect(node.url, timeout=5), address)
        assert registry.is_revoked(issuer.address, LIST, KEY)
    with pytest.raises(ChainUnavailableError):
        registry.is_revoked(issuer.address, LIST, KEY)


def test_chain_dev_on_a_taken_port_is_a_coded_error_with_anvils_message(tmp_path):
    """Issue 10 finding 3: this crashed with AttributeError ('NoneType' ... 'returncode')."""
    import socket

    from click.testing import CliRunner

    from vcgate.cli import cli

    _require_anvil()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ChainUnavailableError) as excinfo:
            AnvilNode(port=port).start()
        assert "Address already in use" in excinfo.value.message and excinfo.value.details["exit_code"] != 0
        res = CliRunner().invoke(cli, ["chain", "dev", "--port", str(port), "--state", str(tmp_path / "s.json"),
                                       "--key-out", str(tmp_path / "dev.key")])
    assert res.exit_code != 0
    assert "AttributeError" not in res.output and "internal_error" not in res.output
    assert "chain_unavailable" in res.output and "Address already in use" in res.output, res.output
