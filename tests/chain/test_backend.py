"""connect(): backends, configuration, and typed failures when the node is not there."""

from __future__ import annotations

import socket
import time

import pytest

from tests.chain.helpers import require_chain_stack

require_chain_stack()

from vcgate.chain import EMBEDDED, connect  # noqa: E402
from vcgate.errors import ChainError, ChainUnavailableError, TransactionPendingError  # noqa: E402


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_embedded_is_the_default():
    chain = connect()
    assert chain.kind == EMBEDDED and connect("embedded").kind == EMBEDDED
    assert chain.block_number() == 0
    assert chain.w3.eth.accounts  # funded development accounts


@pytest.mark.parametrize(
    "url", ["ws://127.0.0.1:8545", "ipc:///tmp/geth.ipc", "127.0.0.1:8545", "file:///etc/passwd"]
)
def test_unsupported_urls_refused(url):
    with pytest.raises(ValueError):
        connect(url)


def test_endpoint_never_shows_credentials():
    chain = connect("https://user:secret@rpc.example/v3/APIKEY?token=t", timeout=1)  # no I/O yet
    assert chain.endpoint == "https://rpc.example"
    assert "APIKEY" not in repr(chain) and "secret" not in repr(chain)


def test_unreachable_node_is_chain_unavailable():
    chain = connect(f"http://127.0.0.1:{_closed_port()}", timeout=1)
    started = time.monotonic()
    with pytest.raises(ChainUnavailableError) as excinfo:
        chain.block_number()
    assert time.monotonic() - started < 5
    assert excinfo.value.code == "chain_unavailable" and excinfo.value.status == 503
    assert isinstance(excinfo.value.__cause__, Exception)


def test_expected_chain_id_checked():
    chain = connect()
    assert connect(expected_chain_id=chain.chain_id()).chain_id() == chain.chain_id()
    with pytest.raises(ChainError):
        connect(expected_chain_id=1)


def test_missing_block_is_none():
    chain = connect()
    assert chain.block(10_000) is None
    head = chain.block("latest")
    assert head is not None and head.number == chain.block_number()


def test_unmined_transaction_is_pending():
    with pytest.raises(TransactionPendingError) as excinfo:
        connect().wait_for_receipt("0x" + "ab" * 32, timeout=0.2)
    assert excinfo.value.details["tx_hash"] == "0x" + "ab" * 32
