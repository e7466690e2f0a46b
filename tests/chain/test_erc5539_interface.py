"""The contract's interface is ERC-5539's, function for function and event for event.

The declarations below are copied verbatim from the ERC's text (ERCS/erc-5539.md, ethereum/ERCs;
status Stagnant). Selectors and topics are computed from that text with eth-utils and compared
with the committed artifact's ABI -- so a wrong parameter type, order or ``indexed`` flag fails
here -- and the selectors are looked for in the deployed bytecode's dispatcher.
"""

from __future__ import annotations

import re

import pytest

from tests.chain.helpers import require_chain_stack

require_chain_stack()

from eth_utils import (  # noqa: E402
    event_abi_to_log_topic,
    event_signature_to_log_topic,
    function_abi_to_4byte_selector,
    function_signature_to_4byte_selector,
)

from vcgate.chain import load_artifact  # noqa: E402

# --- copied from ERC-5539, "Specification" -------------------------------------------------

ERC_FUNCTIONS = """
function isRevoked(address namespace, bytes32 list, bytes32 key) public view returns (bool);
function changeStatus(bool revoked, address namespace, bytes32 revocationList, bytes32 revocationKey) public;
function changeStatusSigned(bool revoked, address namespace, bytes32 revocationList, bytes32 revocationKey, address signer, bytes calldata signature) public;
function changeStatusDelegated(bool revoked, address namespace, bytes32 revocationList, bytes32 revocationKey) public;
function changeStatusDelegatedSigned(bool revoked, address namespace, bytes32 revocationList, bytes32 revocationKey, address signer, bytes calldata signature) public;
function changeStatusesInList(bool[] memory revoked, address namespace, bytes32 revocationList, bytes32[] memory revocationKeys) public;
function changeStatusesInListSigned(bool[] memory revoked, address namespace, bytes32 revocationList, bytes32[] memory revocationKeys, address signer, bytes calldata signature) public;
function changeStatusesInListDelegated(bool[] memory revoked, address namespace, bytes32 revocationList, bytes32[] memory revocationKeys) public;
function changeStatusesInListDelegatedSigned(bool[] memory revoked, address namespace, bytes32 revocationList, bytes32[] memory revocationKeys, address signer, bytes calldata signature) public;
function listIsRevoked(address namespace, bytes32 revocationList) view public returns (bool);
function changeListStatus(bool revoked, address namespace, bytes32 revocationList) public;
function changeListStatusSigned(bool revoked, address namespace, bytes32 revocationList, address signer, bytes calldata signature) public;
function changeListOwner(address newOwner, address namespace, bytes32 revocationList) public;
function changeListOwnerSigned(address newOwner, address namespace, bytes32 revocationList, address signer, bytes calldata signature) public;
function addListDelegate(address delegate, address namespace, bytes32 revocationList) public;
function addListDelegateSigned(address delegate, address namespace, bytes32 revocationList, address signer, bytes calldata signature) public;
function removeListDelegate(address delegate, address owner, bytes32 revocationList) public;
function removeListDelegateSigned(address delegate, address namespace, bytes32 revocationList, address signer, bytes calldata signature) public;
"""

ERC_EVENTS = """
event RevocationStatusChanged(
    address indexed namespace,
    bytes32 indexed revocationList,
    bytes32 indexed revocationKey,
    bool revoked
);
event RevocationListOwnerChanged(
    address indexed namespace,
    bytes32 indexed revocationList,
    address indexed newOwner
);
event RevocationListDelegateAdded(
    address indexed namespace,
    bytes32 indexed revocationList,
    address indexed delegate
);
event RevocationListDelegateRemoved(
    address indexed namespace,
    bytes32 indexed revocationList,
    address indexed delegate
);
event RevocationListStatusChanged(
    address indexed namespace,
    bytes32 indexed revocationlist,
    bool revoked
);
"""

# Read-only additions (documented in the contract): clients need them for the signed variants
# (nonces, ERC-5267 eip712Domain) and to explain a refusal before sending a transaction.
EXTRA_VIEWS = {"identityIsOwner", "identityIsDelegate", "listOwner", "nonces", "eip712Domain"}
# ERC-5267's event, declared by OpenZeppelin's EIP712 base and never emitted (the domain is fixed).
EXTRA_EVENTS = {"EIP712DomainChanged"}

_DECL = re.compile(r"(function|event)\s+(\w+)\s*\(([^)]*)\)([^;{]*)", re.DOTALL)


def _parse(text: str) -> dict[str, dict]:
    out = {}
    for kind, name, params, tail in _DECL.findall(text):
        inputs = []
        for param in filter(None, (p.strip() for p in params.split(","))):
            words = param.split()
            inputs.append(
                {
                    "type": words[0],
                    "name": words[-1],
                    "indexed": "indexed" in words[1:-1],
                }
            )
        out[name] = {
            "kind": kind,
            "signature": f"{name}({','.join(i['type'] for i in inputs)})",
            "inputs": inputs,
            "view": bool(re.search(r"\bview\b", tail)),
            "returns": re.findall(r"returns\s*\(\s*(\w+)", tail),
        }
    return out


SPEC_FUNCTIONS = _parse(ERC_FUNCTIONS)
SPEC_EVENTS = _parse(ERC_EVENTS)


@pytest.fixture(scope="module")
def abi() -> dict[tuple[str, str], dict]:
    return {(e["type"], e.get("name", "")): e for e in load_artifact().abi}


def test_the_erc_text_parsed_completely():
    assert len(SPEC_FUNCTIONS) == 18 and len(SPEC_EVENTS) == 5


@pytest.mark.parametrize("name", sorted(SPEC_FUNCTIONS))
def test_function_matches_erc(abi, name):
    spec = SPEC_FUNCTIONS[name]
    entry = abi.get(("function", name))
    assert entry is not None, f"{name} missing from the ABI"
    assert function_abi_to_4byte_selector(entry) == function_signature_to_4byte_selector(spec["signature"])
    assert [i["name"] for i in entry["inputs"]] == [i["name"] for i in spec["inputs"]]
    assert entry["stateMutability"] == ("view" if spec["view"] else "nonpayable")
    assert [o["type"] for o in entry["outputs"]] == spec["returns"]


@pytest.mark.parametrize("name", sorted(SPEC_EVENTS))
def test_event_matches_erc(abi, name):
    spec = SPEC_EVENTS[name]
    entry = abi.get(("event", name))
    assert entry is not None, f"{name} missing from the ABI"
    assert event_abi_to_log_topic(entry) == event_signature_to_log_topic(spec["signature"])
    assert [(i["name"], i["indexed"]) for i in entry["inputs"]] == [
        (i["name"], i["indexed"]) for i in spec["inputs"]
    ]
    assert entry["anonymous"] is False


def test_nothing_but_the_erc_can_write(abi):
    functions = {name for (kind, name) in abi if kind == "function"}
    assert functions - set(SPEC_FUNCTIONS) == EXTRA_VIEWS
    for name in EXTRA_VIEWS:
        assert abi[("function", name)]["stateMutability"] == "view", name
    events = {name for (kind, name) in abi if kind == "event"}
    assert events - set(SPEC_EVENTS) == EXTRA_EVENTS
    assert ("fallback", "") not in abi and ("receive", "") not in abi


@pytest.mark.parametrize("name", sorted(SPEC_FUNCTIONS))
def test_selector_is_dispatched_by_the_bytecode(name):
    # The dispatcher compares calldata against each selector pushed with PUSH4 (0x63).
    selector = function_signature_to_4byte_selector(SPEC_FUNCTIONS[name]["signature"])
    runtime = bytes.fromhex(load_artifact().deployed_bytecode[2:])
    assert b"\x63" + selector in runtime
