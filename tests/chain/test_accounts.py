"""vcgate ES256K keys as Ethereum accounts."""

from __future__ import annotations

import pytest

from tests.chain.helpers import require_chain_stack

require_chain_stack()

from vcgate.chain import eth_account_from_key, eth_address  # noqa: E402
from vcgate.chain.accounts import bytes32, checksum_address  # noqa: E402
from vcgate.errors import MalformedError, UnsupportedKeyError  # noqa: E402
from vcgate.keys import PrivateKey  # noqa: E402

# The first account of the well-known development mnemonic ("test test ... junk") used by
# anvil and Hardhat: a public, independent vector for secret -> address.
DEV_SECRET = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_address_of_known_key():
    key = PrivateKey.from_secp256k1_hex(DEV_SECRET)
    assert eth_address(key.public_key) == DEV_ADDRESS
    assert eth_account_from_key(key).address == DEV_ADDRESS


def test_account_and_address_agree_for_fresh_keys():
    for _ in range(5):
        key = PrivateKey.generate("ES256K")
        assert eth_account_from_key(key).address == eth_address(key.public_key)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_other_curves_refused(alg):
    key = PrivateKey.generate(alg)
    with pytest.raises(UnsupportedKeyError):
        eth_address(key.public_key)
    with pytest.raises(UnsupportedKeyError):
        eth_account_from_key(key)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("0xf39fd6e51aad88f6f4ce6ab8827279cfffb9226", id="short"),
        pytest.param("f39fd6e51aad88f6f4ce6ab8827279cfffb92266", id="no-0x"),
        pytest.param("0xF39fd6e51aad88F6F4ce6aB8827279cffFb92266", id="bad-checksum"),
        pytest.param(b"\x00" * 20, id="bytes"),
    ],
)
def test_bad_addresses_refused(value):
    with pytest.raises(MalformedError):
        checksum_address(value)


def test_address_spellings_accepted():
    assert checksum_address(DEV_ADDRESS.lower()) == DEV_ADDRESS
    assert checksum_address("0x" + DEV_ADDRESS[2:].upper()) == DEV_ADDRESS


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"\x00" * 31, id="31-bytes"),
        pytest.param("0x" + "zz" * 32, id="not-hex"),
        pytest.param("00" * 32, id="no-0x"),
        pytest.param(7, id="int"),
    ],
)
def test_bad_bytes32_refused(value):
    with pytest.raises(MalformedError):
        bytes32(value)


def test_bytes32_forms():
    assert bytes32("0x" + "ab" * 32) == b"\xab" * 32 == bytes32(bytearray(b"\xab" * 32))
