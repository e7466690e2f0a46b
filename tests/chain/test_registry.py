"""The registry on the embedded chain: who may write what, and what the chain then says."""

from __future__ import annotations

import os

import pytest

from tests.chain.helpers import require_chain_stack

require_chain_stack()

from vcgate.chain import RegistryClient, RevocationEvent, deploy_registry, fetch_events  # noqa: E402
from vcgate.errors import NotAuthorizedError, RegistryNotFoundError, TransactionFailedError  # noqa: E402
from vcgate.errors import MalformedError  # noqa: E402

ZERO = "0x" + "00" * 20


def _refused(excinfo, name: str, **args) -> None:
    """The write was refused by the contract itself, with the custom error ``name``."""
    revert = excinfo.value.revert
    assert revert.name == name, str(revert)
    for arg, value in args.items():
        assert revert.args[arg] == value


def test_deployed_with_its_eip712_domain(chain, registry):
    assert chain.code_at(registry.address)
    assert registry.eip712_domain() == {
        "name": "EthereumRevocationRegistry",
        "version": "1",
        "chainId": chain.chain_id(),
        "verifyingContract": registry.address,
    }


def test_owner_revokes_and_reinstates_a_key(registry, owner, stranger, list_id, key):
    other_key = os.urandom(32)
    assert registry.is_revoked(owner.address, list_id, key) is False

    result = registry.change_status(owner, revoked=True, revocation_list=list_id, revocation_key=key)
    assert result.gas_used > 21_000
    assert registry.is_revoked(owner.address, list_id, key) is True
    assert registry.is_revoked(owner.address, list_id, other_key) is False
    # The same list and key in another namespace are another entry.
    assert registry.is_revoked(stranger.address, list_id, key) is False

    registry.change_status(owner, revoked=False, revocation_list=list_id, revocation_key=key)
    assert registry.is_revoked(owner.address, list_id, key) is False


def test_hex_identifiers_accepted(registry, owner, list_id, key):
    registry.change_status(
        owner, revoked=True, revocation_list="0x" + list_id.hex(), revocation_key="0x" + key.hex()
    )
    assert registry.is_revoked(owner.address.lower(), list_id, key)


def test_batch_change(registry, owner, list_id):
    keys = [os.urandom(32) for _ in range(5)]
    registry.change_statuses(
        owner, revoked=[True, False, True, True, False], revocation_list=list_id, revocation_keys=keys
    )
    assert [registry.is_revoked(owner.address, list_id, k) for k in keys] == [True, False, True, True, False]


def test_batch_length_mismatch_is_a_failure_not_a_refusal(registry, owner, list_id):
    with pytest.raises(TransactionFailedError) as excinfo:
        registry.change_statuses(
            owner, revoked=[True], revocation_list=list_id, revocation_keys=[os.urandom(32)] * 2
        )
    assert not isinstance(excinfo.value, NotAuthorizedError)
    _refused(excinfo, "LengthMismatch", revoked=1, revocationKeys=2)


def test_revoking_a_list_revokes_all_its_keys(registry, owner, list_id, key):
    own_revoked = os.urandom(32)
    registry.change_status(owner, revoked=True, revocation_list=list_id, revocation_key=own_revoked)

    registry.change_list_status(owner, revoked=True, revocation_list=list_id)
    assert registry.list_is_revoked(owner.address, list_id)
    assert registry.is_revoked(owner.address, list_id, key)
    assert registry.is_revoked(owner.address, list_id, os.urandom(32))

    # Reinstating the list gives each key its own status back.
    registry.change_list_status(owner, revoked=False, revocation_list=list_id)
    assert not registry.list_is_revoked(owner.address, list_id)
    assert registry.is_revoked(owner.address, list_id, key) is False
    assert registry.is_revoked(owner.address, list_id, own_revoked) is True


def test_delegate_can_write_until_removed(registry, owner, delegate, list_id, key):
    ns = owner.address
    assert not registry.is_delegate(ns, list_id, delegate.address)
    registry.add_list_delegate(owner, delegate=delegate.address, revocation_list=list_id)
    assert registry.is_delegate(ns, list_id, delegate.address)

    # The client picks changeStatusDelegated for a delegate.
    registry.change_status(delegate, namespace=ns, revoked=True, revocation_list=list_id, revocation_key=key)
    assert registry.is_revoked(ns, list_id, key)
    registry.change_statuses(
        delegate, namespace=ns, revoked=[False], revocation_list=list_id, revocation_keys=[key]
    )
    assert not registry.is_revoked(ns, list_id, key)

    # A delegate is not an owner: the owner-only functions refuse it.
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.change_status(
            delegate, namespace=ns, revoked=True, revocation_list=list_id, revocation_key=key, delegated=False
        )
    _refused(excinfo, "NotListOwner", caller=delegate.address)
    with pytest.raises(NotAuthorizedError):
        registry.change_list_status(delegate, namespace=ns, revoked=True, revocation_list=list_id)
    with pytest.raises(NotAuthorizedError):
        registry.add_list_delegate(
            delegate, namespace=ns, delegate=delegate.address, revocation_list=os.urandom(32)
        )
    # ... and delegation is per list.
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.change_status(
            delegate,
            namespace=ns,
            revoked=True,
            revocation_list=os.urandom(32),
            revocation_key=key,
            delegated=True,
        )
    _refused(excinfo, "NotListDelegate")

    registry.remove_list_delegate(owner, delegate=delegate.address, revocation_list=list_id)
    assert not registry.is_delegate(ns, list_id, delegate.address)
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.change_status(
            delegate, namespace=ns, revoked=True, revocation_list=list_id, revocation_key=key, delegated=True
        )
    _refused(excinfo, "NotListDelegate", namespace=ns, revocationList=list_id, caller=delegate.address)
    assert not registry.is_revoked(ns, list_id, key)


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(
            lambda r, a, ns, lst, k: r.change_status(
                a, namespace=ns, revoked=True, revocation_list=lst, revocation_key=k, delegated=False
            ),
            id="changeStatus",
        ),
        pytest.param(
            lambda r, a, ns, lst, k: r.change_status(
                a, namespace=ns, revoked=True, revocation_list=lst, revocation_key=k, delegated=True
            ),
            id="changeStatusDelegated",
        ),
        pytest.param(
            lambda r, a, ns, lst, k: r.change_statuses(
                a, namespace=ns, revoked=[True], revocation_list=lst, revocation_keys=[k], delegated=False
            ),
            id="changeStatusesInList",
        ),
        pytest.param(
            lambda r, a, ns, lst, k: r.change_statuses(
                a, namespace=ns, revoked=[True], revocation_list=lst, revocation_keys=[k], delegated=True
            ),
            id="changeStatusesInListDelegated",
        ),
        pytest.param(
            lambda r, a, ns, lst, k: r.change_list_status(a, namespace=ns, revoked=True, revocation_list=lst),
            id="changeListStatus",
        ),
        pytest.param(
            lambda r, a, ns, lst, k: r.change_list_owner(
                a, namespace=ns, new_owner=a.address, revocation_list=lst
            ),
            id="changeListOwner",
        ),
        pytest.param(
            lambda r, a, ns, lst, k: r.add_list_delegate(
                a, namespace=ns, delegate=a.address, revocation_list=lst
            ),
            id="addListDelegate",
        ),
        pytest.param(
            lambda r, a, ns, lst, k: r.remove_list_delegate(
                a, namespace=ns, delegate=a.address, revocation_list=lst
            ),
            id="removeListDelegate",
        ),
    ],
)
def test_stranger_cannot_write(registry, owner, stranger, list_id, key, write):
    with pytest.raises(NotAuthorizedError) as excinfo:
        write(registry, stranger, owner.address, list_id, key)
    assert excinfo.value.code == "registry_not_authorized" and excinfo.value.status == 403
    assert excinfo.value.revert.args["caller"] == stranger.address
    assert not registry.is_revoked(owner.address, list_id, key)
    assert registry.list_owner(owner.address, list_id) == owner.address


def test_mined_revert_is_decoded(chain, registry, owner, stranger, list_id, key):
    # With an explicit gas limit nothing is simulated: the transaction is mined, reverts, and
    # the client replays it to recover the contract's reason.
    before = chain.block_number()
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.change_status(
            stranger,
            namespace=owner.address,
            revoked=True,
            revocation_list=list_id,
            revocation_key=key,
            delegated=False,
            gas=100_000,
        )
    assert chain.block_number() == before + 1
    assert excinfo.value.details["tx_hash"].startswith("0x")
    _refused(excinfo, "NotListOwner", caller=stranger.address)
    assert not registry.is_revoked(owner.address, list_id, key)


def test_change_list_owner_moves_the_rights(registry, owner, delegate, stranger, list_id, key):
    ns = owner.address
    registry.add_list_delegate(owner, delegate=delegate.address, revocation_list=list_id)
    registry.change_list_owner(owner, new_owner=stranger.address, revocation_list=list_id)
    assert registry.list_owner(ns, list_id) == stranger.address
    assert registry.is_owner(ns, list_id, stranger.address) and not registry.is_owner(ns, list_id, ns)

    # The namespace address gave its rights away ...
    with pytest.raises(NotAuthorizedError) as excinfo:
        registry.change_status(owner, revoked=True, revocation_list=list_id, revocation_key=key)
    _refused(excinfo, "NotListOwner", caller=ns)
    # ... the delegate it had named lapsed with the transfer ...
    assert not registry.is_delegate(ns, list_id, delegate.address)
    with pytest.raises(NotAuthorizedError):
        registry.change_status(
            delegate, namespace=ns, revoked=True, revocation_list=list_id, revocation_key=key, delegated=True
        )
    # ... and the new owner writes in the namespace's list (the namespace is not renamed).
    registry.change_status(stranger, namespace=ns, revoked=True, revocation_list=list_id, revocation_key=key)
    assert registry.is_revoked(ns, list_id, key)
    # Other lists of the namespace stay with the namespace.
    assert registry.list_owner(ns, os.urandom(32)) == ns

    # Handing the list back restores the default.
    registry.change_list_owner(stranger, namespace=ns, new_owner=ns, revocation_list=list_id)
    assert registry.list_owner(ns, list_id) == ns
    registry.change_status(owner, revoked=False, revocation_list=list_id, revocation_key=key)
    assert not registry.is_revoked(ns, list_id, key)


def test_list_cannot_go_to_the_zero_address(registry, owner, list_id):
    with pytest.raises(TransactionFailedError) as excinfo:
        registry.change_list_owner(owner, new_owner=ZERO, revocation_list=list_id)
    _refused(excinfo, "ZeroAddress")
    assert registry.list_owner(owner.address, list_id) == owner.address


def test_fetch_events_decodes_status_changes(chain, registry, owner, stranger, list_id, key):
    start = chain.block_number() + 1
    t1 = registry.change_status(owner, revoked=True, revocation_list=list_id, revocation_key=key)
    t2 = registry.change_list_status(owner, revoked=True, revocation_list=list_id)
    t3 = registry.change_status(owner, revoked=False, revocation_list=list_id, revocation_key=key)
    # Noise: another namespace, and a non-status event.
    registry.change_status(stranger, revoked=True, revocation_list=list_id, revocation_key=key)
    registry.add_list_delegate(owner, delegate=stranger.address, revocation_list=list_id)

    events = fetch_events(chain, registry.address, start, chain.block_number(), namespaces=[owner.address])
    assert [(e.revocation_key, e.revoked) for e in events] == [(key, True), (None, True), (key, False)]
    for event, tx in zip(events, (t1, t2, t3)):
        assert isinstance(event, RevocationEvent)
        assert (event.tx_hash, event.block_number, event.block_hash) == (
            tx.tx_hash,
            tx.block_number,
            tx.block_hash,
        )
        assert event.block_hash == chain.block(event.block_number).hash
        assert event.namespace == owner.address and event.revocation_list == list_id
        assert event.log_index == 0
    assert events[1].is_list_event and not events[0].is_list_event

    everyone = fetch_events(chain, registry.address, start, chain.block_number())
    assert len(everyone) == 4 and everyone[-1].namespace == stranger.address


def test_owner_and_delegate_events_emitted(chain, registry, owner, delegate, list_id):
    start = chain.block_number() + 1
    registry.add_list_delegate(owner, delegate=delegate.address, revocation_list=list_id)
    registry.remove_list_delegate(owner, delegate=delegate.address, revocation_list=list_id)
    registry.change_list_owner(owner, new_owner=delegate.address, revocation_list=list_id)
    events = registry.contract.events
    expected = {"namespace": owner.address, "revocationList": list_id}
    for event, who in (
        (events.RevocationListDelegateAdded, {"delegate": delegate.address}),
        (events.RevocationListDelegateRemoved, {"delegate": delegate.address}),
        (events.RevocationListOwnerChanged, {"newOwner": delegate.address}),
    ):
        (log,) = event().get_logs(from_block=start)
        assert dict(log["args"]) == {**expected, **who}


def test_events_block_range_checked(chain, registry):
    with pytest.raises(ValueError):
        fetch_events(chain, registry.address, 5, 4)


def test_no_registry_at_address(chain, owner, key):
    empty = RegistryClient(chain, "0x" + os.urandom(20).hex())
    with pytest.raises(RegistryNotFoundError):
        empty.is_revoked(owner.address, key, key)


def test_bad_inputs_refused_before_any_io(registry, owner):
    with pytest.raises(MalformedError):
        registry.is_revoked("not-an-address", b"\x00" * 32, b"\x00" * 32)
    with pytest.raises(MalformedError):
        registry.change_status(owner, revoked=True, revocation_list=b"short", revocation_key=b"\x00" * 32)
    with pytest.raises(MalformedError):
        RegistryClient(registry.chain, "0x1234")


def test_second_deployment_is_independent(chain, registry, owner, list_id, key):
    other = RegistryClient(chain, deploy_registry(chain, owner))
    registry.change_status(owner, revoked=True, revocation_list=list_id, revocation_key=key)
    assert other.address != registry.address
    assert not other.is_revoked(owner.address, list_id, key)
