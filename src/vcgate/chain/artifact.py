"""The committed compiler output for the ERC-5539 registry (``artifacts/RevocationRegistry.json``).

The artifact is produced by ``tools/chain/build.mjs`` from ``RevocationRegistry.sol`` with the
pinned solc; tests check that a fresh build reproduces it byte for byte, so what is deployed is
what the source says.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["Artifact", "contract_source", "load_artifact"]

_PACKAGE = "vcgate.chain"
_ARTIFACT = ("artifacts", "RevocationRegistry.json")
_SOURCE = "RevocationRegistry.sol"


@dataclass(frozen=True)
class Artifact:
    contract_name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: str
    deployed_bytecode: str
    compiler: dict[str, Any]
    source_sha256: str

    @property
    def abi_list(self) -> list[dict[str, Any]]:
        """The ABI as web3 wants it (a fresh list each call)."""
        return list(self.abi)


def contract_source() -> str:
    """The Solidity source the artifact was built from."""
    return resources.files(_PACKAGE).joinpath(_SOURCE).read_text(encoding="utf-8")


def load_artifact() -> Artifact:
    """Read the committed artifact (a fresh object on every call: nothing is cached globally)."""
    text = resources.files(_PACKAGE).joinpath(*_ARTIFACT).read_text(encoding="utf-8")
    data = json.loads(text)
    return Artifact(
        contract_name=data["contractName"],
        abi=tuple(data["abi"]),
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler=data["compiler"],
        source_sha256=data["sourceSha256"],
    )


def source_matches_artifact() -> bool:
    """Whether the packaged source is the one the artifact records (a cheap drift check)."""
    digest = hashlib.sha256(contract_source().encode("utf-8")).hexdigest()
    return digest == load_artifact().source_sha256
