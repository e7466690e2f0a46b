"""ERC-5539 meta transactions: EIP-712 signatures made here, verified by the contract.

The signer is an unfunded key (it pays nothing); a relayer submits. Each payload works once
(nonce), only under its own domain (chain and deployment), and only for its own signer.
"""

from __future__ import annotations

import dataclasses
import os
import re

import pytest

from tests.chain.helpers import CHAIN_SRC, require_chain_stack

require_chain_stack()

from eth_account import Account  # noqa: E402
from eth_account.messages import encode_typed_data  # noqa: E402

from vcgate.chain import EIP712_TYPES, RegistryClient, deploy_registry, eth_account_from_key  # noqa: E402
from vcgate.errors import NotAuthorizedError  # noqa: E402
from vcgate.keys import PrivateKey  # noqa: E402

# The struct types as the contract hashes them, copied from RevocationRegistry.sol.
SOLIDITY_TYPES = {
    "ChangeStatus(bool revoked,address namespace,bytes32 revocationList,bytes32 revocationKey,address signer,uint256 nonce)",
    "ChangeStatusDelegated(bool revoked,address namespace,bytes32 revocationList,bytes32 revocationKey,address signer,uint256 nonce)",
    "ChangeStatusesInList(bool[] revoked,address namespace,bytes32 revocationList,bytes32[] revocationKeys,address signer,uint256 nonce)",
    "ChangeStatusesInListDelegated(bool[] revoked,address namespace,bytes32 revocationList,bytes32[] revocationKeys,address signer,uint256 nonce)",
    "ChangeListStatus(bool revoked,address namespace,bytes32 revocationList,address signer,uint256 nonce)",
    "ChangeListOwner(address newOwner,address namespace,bytes32 revocationList,address signer,uint256 nonce)",
    "AddListDelegate(address delegate,address namespace,bytes32 revocationList,address signer,uint256 nonce)",
    "RemoveListDelegate(address delegate,address namespace,bytes32 revocationList,address signer,uint256 nonce)",
}


@pytest.fixture
def signer():
    """A list owner with no ether at all."""
    return eth_account_from_key(PrivateKey.generate("ES256K"))


def test_type_strings_agree_with_the_source():
    in_source = set(
        re.findall(
            r'keccak256\(\s*"([A-Za-z]+\([^"]*\))"', (CHAIN_SRC / "RevocationRegistry.sol").read_text()
        )
    )
    assert in_source == SOLIDITY_TYPES
    in_client = {
        f"{name}({','.join(f'{t} {n}' for n, t in fields)},address signer,uint256 nonce)"
        for name, fields in EIP712_TYPES.items()
    }
    assert in_client == SOLIDITY_TYPES


def test_signed_change_status(chain, registry, signer, relayer, list_id, key):
    assert chain.balance(signer.address) == 0
    signed = registry.sign_change_status(signer, revoked=True, revocation_list=list_id, revocation_key=key)
    assert signed.function == "changeStatusSigned" and signed.nonce == 0
    # An independent check of the signature over the EIP-712 message.
    assert (
        Account.recover_message(encode_typed_data(full_message=signed.typed_data), signature=signed.signature)
        == signer.address
    )

    registry.submit(relayer, signed)
    assert registry.is_revoked(signer.address, list_id, key)
    assert registry.nonce(signer.address) == 1
    assert chain.balance(signer.address) == 0

    # The same payload cannot be sent twice, by anyone.
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.submit(relayer, signed)
    assert excinfo.value.revert.name == "InvalidSigner"


def test_signature_must_be_the_signers(registry, signer, stranger, relayer, list_id, key):
    forged = registry.sign_change_status(
        stranger, namespace=signer.address, revoked=True, revocation_list=list_id, revocation_key=key
    )
    claimed = dataclasses.replace(forged, signer=signer.address)
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.submit(relayer, claimed)
    assert excinfo.value.revert.name == "InvalidSigner"
    assert excinfo.value.revert.args["recovered"] != signer.address
    # Signed honestly by the stranger, it is refused for what it is: not the owner.
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.submit(relayer, forged)
    assert excinfo.value.revert.name == "NotListOwner"
    assert not registry.is_revoked(signer.address, list_id, key)


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(b"", id="empty"),
        pytest.param(os.urandom(64), id="64-bytes"),
        pytest.param(b"\x00" * 65, id="zeros"),
    ],
)
def test_malformed_signature_refused(registry, signer, relayer, list_id, key, signature):
    signed = registry.sign_change_status(signer, revoked=True, revocation_list=list_id, revocation_key=key)
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.submit(relayer, dataclasses.replace(signed, signature=signature))
    assert excinfo.value.revert.name.startswith("ECDSAInvalidSignature")


def test_signature_bound_to_its_deployment(chain, registry, signer, relayer, owner, list_id, key):
    other = RegistryClient(chain, deploy_registry(chain, owner))
    signed = registry.sign_change_status(signer, revoked=True, revocation_list=list_id, revocation_key=key)
    with pytest.raises(NotAuthorizedError) as excinfo:
        other.submit(relayer, signed)
    assert excinfo.value.revert.name == "InvalidSigner"


def test_signed_batch_and_list_status(registry, signer, relayer, list_id):
    keys = [os.urandom(32) for _ in range(3)]
    registry.submit(
        relayer,
        registry.sign_change_statuses(
            signer, revoked=[True, False, True], revocation_list=list_id, revocation_keys=keys
        ),
    )
    assert [registry.is_revoked(signer.address, list_id, k) for k in keys] == [True, False, True]

    registry.submit(relayer, registry.sign_change_list_status(signer, revoked=True, revocation_list=list_id))
    assert registry.list_is_revoked(signer.address, list_id)
    assert registry.nonce(signer.address) == 2


def test_signed_delegation_and_delegated_writes(registry, signer, delegate, relayer, list_id, key):
    ns = signer.address
    registry.submit(
        relayer, registry.sign_add_list_delegate(signer, delegate=delegate.address, revocation_list=list_id)
    )
    assert registry.is_delegate(ns, list_id, delegate.address)

    signed = registry.sign_change_status(
        delegate, namespace=ns, delegated=True, revoked=True, revocation_list=list_id, revocation_key=key
    )
    assert signed.function == "changeStatusDelegatedSigned"
    registry.submit(relayer, signed)
    assert registry.is_revoked(ns, list_id, key)
    registry.submit(
        relayer,
        registry.sign_change_statuses(
            delegate,
            namespace=ns,
            delegated=True,
            revoked=[False],
            revocation_list=list_id,
            revocation_keys=[key],
        ),
    )
    assert not registry.is_revoked(ns, list_id, key)

    # A delegate's signature does not pass for an owner's.
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.submit(
            relayer,
            registry.sign_change_status(
                delegate, namespace=ns, revoked=True, revocation_list=list_id, revocation_key=key
            ),
        )
    assert excinfo.value.revert.name == "NotListOwner"

    registry.submit(
        relayer,
        registry.sign_remove_list_delegate(signer, delegate=delegate.address, revocation_list=list_id),
    )
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.submit(
            relayer,
            registry.sign_change_status(
                delegate,
                namespace=ns,
                delegated=True,
                revoked=True,
                revocation_list=list_id,
                revocation_key=key,
            ),
        )
    assert excinfo.value.revert.name == "NotListDelegate"


def test_signed_owner_change(registry, signer, stranger, relayer, list_id, key):
    ns = signer.address
    registry.submit(
        relayer, registry.sign_change_list_owner(signer, new_owner=stranger.address, revocation_list=list_id)
    )
    assert registry.list_owner(ns, list_id) == stranger.address
    with pytest.raises(NotAuthorizedError):
        registry.submit(
            relayer,
            registry.sign_change_status(signer, revoked=True, revocation_list=list_id, revocation_key=key),
        )
    registry.submit(
        relayer,
        registry.sign_change_status(
            stranger, namespace=ns, revoked=True, revocation_list=list_id, revocation_key=key
        ),
    )
    assert registry.is_revoked(ns, list_id, key)


def test_stale_nonce_refused(registry, signer, relayer, list_id, key):
    first = registry.sign_change_status(signer, revoked=True, revocation_list=list_id, revocation_key=key)
    second = registry.sign_change_status(signer, revoked=False, revocation_list=list_id, revocation_key=key)
    assert first.nonce == second.nonce == 0
    registry.submit(relayer, second)
    # Both were signed for nonce 0; only the first one submitted counts.
    with pytest.raises(NotAuthorizedError):
        registry.submit(relayer, first)
    assert not registry.is_revoked(signer.address, list_id, key)
