"""Revocation events of a registry, fetched with ``eth_getLogs`` and decoded by web3's ABI codec.

This is the raw feed the mirror (``vcgate.status.mirror``) builds its index from: one call per
block range, no filters installed on the node (they expire and do not survive a node restart),
every event with its block hash so a consumer can notice a reorganisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.abi import event_abi_to_log_topic
from web3 import Web3

from .accounts import checksum_address
from .artifact import load_artifact
from .backend import Chain

__all__ = ["STATUS_EVENTS", "RevocationEvent", "fetch_events"]

#: The two ERC-5539 events that change what ``isRevoked`` answers.
STATUS_EVENTS = ("RevocationStatusChanged", "RevocationListStatusChanged")


@dataclass(frozen=True)
class RevocationEvent:
    """One decoded ``RevocationStatusChanged`` or ``RevocationListStatusChanged`` log.

    ``revocation_key`` is ``None`` for a list event: then every key of ``revocation_list``
    reads as revoked while ``revoked`` is true.
    """

    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    namespace: str
    revocation_list: bytes
    revocation_key: bytes | None
    revoked: bool

    @property
    def is_list_event(self) -> bool:
        return self.revocation_key is None


def fetch_events(
    chain: Chain,
    address: str,
    from_block: int,
    to_block: int,
    *,
    namespaces: Sequence[str] | None = None,
) -> list[RevocationEvent]:
    """All status events of the registry at ``address`` in blocks ``from_block..to_block``
    (inclusive), in chain order; ``namespaces`` narrows them to those issuers (a topic filter
    the node applies, so untrusted namespaces cost no bandwidth).

    The range is passed to the node as is: keep it within what the node allows per query
    (often 10,000 blocks on hosted nodes) and page above this call.
    """
    if from_block < 0 or to_block < from_block:
        raise ValueError(f"bad block range {from_block}..{to_block}")
    registry = checksum_address(address, what="registry address")
    contract = chain.w3.eth.contract(address=registry, abi=load_artifact().abi_list)
    events = {Web3.to_hex(_topic(contract, name)): name for name in STATUS_EVENTS}
    topics: list[Any] = [list(events)]
    if namespaces is not None:
        topics.append([_address_topic(checksum_address(ns, what="namespace")) for ns in namespaces])
    with chain.guard("eth_getLogs"):
        logs = chain.w3.eth.get_logs(
            {"address": registry, "fromBlock": from_block, "toBlock": to_block, "topics": topics}
        )
        addresses: dict[bytes, str] = {}
        out = [_decode(events[Web3.to_hex(log["topics"][0])], log, registry, addresses) for log in logs]
    out.sort(key=lambda e: (e.block_number, e.log_index))
    return out


def _topic(contract: Any, name: str) -> bytes:
    return event_abi_to_log_topic(getattr(contract.events, name).abi)


def _address_topic(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


def _decode(name: str, log: Any, registry: str, addresses: dict[bytes, str]) -> RevocationEvent:
    # Both status events index every argument but ``revoked`` (ERC-5539), so a log decodes
    # from its topics and one 32-byte word. web3's generic ``process_log`` costs ~250 us per
    # log -- most of an initial sync (measured on anvil, 5,000 logs); this costs a few us.
    # Malformed logs raise ValueError, which chain.guard reports as an unusable answer.
    topics = log["topics"]
    data = bytes(log["data"])
    arity = 4 if name == "RevocationStatusChanged" else 3
    if len(topics) != arity or len(data) != 32 or any(data[:31]) or data[31] > 1:
        raise ValueError(f"malformed {name} log")
    if str(log["address"]).lower() != registry.lower():
        raise ValueError(f"log from {log['address']}, not from the registry")
    word = bytes(topics[1])
    if len(word) != 32 or any(word[:12]):
        raise ValueError(f"malformed namespace topic in a {name} log")
    namespace = addresses.get(word)
    if namespace is None:  # EIP-55 costs a keccak: once per namespace and query
        namespace = addresses[word] = Web3.to_checksum_address(word[12:])
    lst = bytes(topics[2])
    key = bytes(topics[3]) if arity == 4 else None  # a list event has no key
    if len(lst) != 32 or (key is not None and len(key) != 32):
        raise ValueError(f"malformed {name} log")
    return RevocationEvent(
        block_number=int(log["blockNumber"]),
        block_hash=Web3.to_hex(log["blockHash"]),
        tx_hash=Web3.to_hex(log["transactionHash"]),
        log_index=int(log["logIndex"]),
        namespace=namespace,
        revocation_list=lst,
        revocation_key=key,
        revoked=data[31] == 1,
    )
