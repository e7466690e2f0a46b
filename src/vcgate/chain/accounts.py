"""Ethereum accounts from vcgate keys.

An issuer's Ethereum account is its ES256K (secp256k1) vcgate key: the same 32-byte secret
signs JWTs (ES256K) and Ethereum transactions, and its Ethereum address -- the namespace it
owns in the ERC-5539 registry -- is the last 20 bytes of keccak256 of the uncompressed public
point without its 0x04 prefix (Yellow Paper, eq. 284). Keccak, the address derivation and the
EIP-55 checksum come from eth-keys / eth-utils, not from code of ours.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys.datatypes import PublicKey as EthPublicKey
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address

from vcgate.errors import MalformedError, UnsupportedKeyError
from vcgate.keys import PrivateKey, PublicKey

__all__ = ["bytes32", "checksum_address", "eth_account_from_key", "eth_address"]


def _require_secp256k1(alg: str) -> None:
    if alg != "ES256K":
        raise UnsupportedKeyError(f"an Ethereum account needs an ES256K (secp256k1) key, not {alg}")


def eth_address(public_key: PublicKey) -> ChecksumAddress:
    """The EIP-55 checksummed Ethereum address of an ES256K public key."""
    _require_secp256k1(public_key.alg)
    point = public_key.raw(compressed=False)  # 0x04 || X || Y
    return EthPublicKey(point[1:]).to_checksum_address()


def eth_account_from_key(private_key: PrivateKey) -> LocalAccount:
    """An eth-account signer for an ES256K vcgate key (same secret, same address)."""
    _require_secp256k1(private_key.alg)
    account: LocalAccount = Account.from_key(private_key.private_bytes_raw())
    return account


def checksum_address(value: object, *, what: str = "address") -> ChecksumAddress:
    """Validate an address (any case, ``0x`` + 40 hex) and return its EIP-55 form."""
    if not isinstance(value, str) or not value.startswith("0x") or not is_address(value):
        raise MalformedError(f"{what} is not an Ethereum address: {value!r}")
    if value != value.lower() and value[2:] != value[2:].upper() and to_checksum_address(value) != value:
        # Mixed case claims an EIP-55 checksum; a wrong one is a typo, not a different address.
        raise MalformedError(f"{what} has a bad EIP-55 checksum: {value!r}")
    return to_checksum_address(value)


def bytes32(value: object, *, what: str = "value") -> bytes:
    """A 32-byte identifier from bytes or a ``0x``-prefixed 64-digit hex string."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    elif isinstance(value, str) and value[:2] in ("0x", "0X"):
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError as exc:
            raise MalformedError(f"{what} is not hex: {value!r}") from exc
    else:
        raise MalformedError(f"{what} must be 32 bytes or 0x-prefixed hex, got {type(value).__name__}")
    if len(raw) != 32:
        raise MalformedError(f"{what} must be exactly 32 bytes, got {len(raw)}")
    return raw
