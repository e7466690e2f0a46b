"""On-chain revocation: the ERC-5539 registry contract and a thin web3.py adapter around it.

* :func:`connect` -- a :class:`Chain`: ``embedded`` (in-process EVM) or any JSON-RPC URL.
* :func:`deploy_registry` and :class:`RegistryClient` -- deploy, read and write the registry;
  writes are signed locally with an issuer's ES256K key (:func:`eth_account_from_key`).
* :func:`fetch_events` -- the registry's revocation events, for the mirror.
* :class:`AnvilNode` -- a local anvil for development and integration tests.

Needs the ``chain`` extra (web3, eth-account, eth-tester with py-evm). Nothing here is used on
the request path: gateways read revocations from the mirror, never from the chain.
"""

from __future__ import annotations

from ._limits import keep_recursion_limit

# web3 / eth-account / py-evm raise the recursion limit on import; see _limits.
with keep_recursion_limit():
    from .accounts import eth_account_from_key, eth_address
    from .anvil import AnvilNode, find_anvil
    from .artifact import Artifact, load_artifact
    from .backend import EMBEDDED, BlockRef, Chain, connect
    from .events import RevocationEvent, fetch_events
    from .registry import (
        EIP712_TYPES,
        RegistryClient,
        RevertReason,
        SignedWrite,
        TxResult,
        decode_revert,
        deploy_registry,
        deploy_registry_tx,
    )

__all__ = [
    "EIP712_TYPES",
    "EMBEDDED",
    "AnvilNode",
    "Artifact",
    "BlockRef",
    "Chain",
    "RegistryClient",
    "RevertReason",
    "RevocationEvent",
    "SignedWrite",
    "TxResult",
    "connect",
    "decode_revert",
    "deploy_registry",
    "deploy_registry_tx",
    "eth_account_from_key",
    "eth_address",
    "fetch_events",
    "find_anvil",
    "load_artifact",
]
