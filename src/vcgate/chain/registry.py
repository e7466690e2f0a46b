"""Deploy and use the ERC-5539 revocation registry.

Reads are ``eth_call``s. Writes are built here, signed locally by an eth-account
``LocalAccount`` (an issuer's ES256K key, see :func:`vcgate.chain.accounts.eth_account_from_key`),
sent raw, and waited for; the node never holds a key. Before sending, each write is simulated
(gas estimation), so a write the contract would refuse fails with the contract's own reason
and costs nothing; a transaction that still reverts once mined is replayed to recover its
reason. Reverts become typed errors: :class:`NotAuthorizedError` when the registry refused the
sender or signer, :class:`TransactionFailedError` otherwise, each carrying the decoded custom
error in ``revert``.

The ``*Signed`` (EIP-712 meta-transaction) variants are split in two steps: ``sign_*`` makes a
:class:`SignedWrite` with the list owner's (or delegate's) key, possibly offline, and
:meth:`RegistryClient.submit` sends it from any funded account -- the signer needs no ether.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_typing import ABIError
from eth_utils.abi import (
    abi_to_signature,
    function_signature_to_4byte_selector,
    get_abi_input_names,
    get_abi_input_types,
)
from web3 import Web3
from web3.exceptions import BadFunctionCallOutput, ContractLogicError

from .accounts import bytes32, checksum_address
from .artifact import Artifact, load_artifact
from .backend import Chain, embedded_revert_errors
from ..errors import NotAuthorizedError, RegistryNotFoundError, TransactionFailedError

__all__ = [
    "EIP712_TYPES",
    "RegistryClient",
    "RevertReason",
    "SignedWrite",
    "TxResult",
    "decode_revert",
    "deploy_registry",
]

#: The EIP-712 struct of each ``*Signed`` function, exactly as RevocationRegistry.sol hashes it:
#: the ERC function's parameters without ``signature``, then the signer's ``nonce``.
EIP712_TYPES: dict[str, tuple[tuple[str, str], ...]] = {
    "ChangeStatus": (
        ("revoked", "bool"),
        ("namespace", "address"),
        ("revocationList", "bytes32"),
        ("revocationKey", "bytes32"),
    ),
    "ChangeStatusDelegated": (
        ("revoked", "bool"),
        ("namespace", "address"),
        ("revocationList", "bytes32"),
        ("revocationKey", "bytes32"),
    ),
    "ChangeStatusesInList": (
        ("revoked", "bool[]"),
        ("namespace", "address"),
        ("revocationList", "bytes32"),
        ("revocationKeys", "bytes32[]"),
    ),
    "ChangeStatusesInListDelegated": (
        ("revoked", "bool[]"),
        ("namespace", "address"),
        ("revocationList", "bytes32"),
        ("revocationKeys", "bytes32[]"),
    ),
    "ChangeListStatus": (("revoked", "bool"), ("namespace", "address"), ("revocationList", "bytes32")),
    "ChangeListOwner": (("newOwner", "address"), ("namespace", "address"), ("revocationList", "bytes32")),
    "AddListDelegate": (("delegate", "address"), ("namespace", "address"), ("revocationList", "bytes32")),
    "RemoveListDelegate": (("delegate", "address"), ("namespace", "address"), ("revocationList", "bytes32")),
}
_SIGNER_FIELDS = (("signer", "address"), ("nonce", "uint256"))

# Custom errors by which the registry refuses an identity (as opposed to a malformed call).
_REFUSALS = frozenset(
    {
        "NotListOwner",
        "NotListDelegate",
        "InvalidSigner",
        "ECDSAInvalidSignature",
        "ECDSAInvalidSignatureLength",
        "ECDSAInvalidSignatureS",
    }
)
_BUILTIN_ERRORS: dict[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    bytes.fromhex("08c379a0"): ("Error", ("string",), ("reason",)),
    bytes.fromhex("4e487b71"): ("Panic", ("uint256",), ("code",)),
}


@dataclass(frozen=True)
class RevertReason:
    """A decoded revert: the Solidity error's name and arguments (``name`` is ``""`` if unknown)."""

    name: str
    args: dict[str, Any]
    data: bytes

    def __str__(self) -> str:
        if not self.name:
            return f"unknown revert data 0x{self.data.hex()}" if self.data else "reverted without a reason"
        inner = ", ".join(f"{k}={_show(v)}" for k, v in self.args.items())
        return f"{self.name}({inner})"


@dataclass(frozen=True)
class TxResult:
    """A mined, successful transaction."""

    tx_hash: str
    block_number: int
    block_hash: str
    gas_used: int
    contract_address: str | None = None


@dataclass(frozen=True)
class SignedWrite:
    """An EIP-712-signed registry write, ready for anyone to submit with :meth:`RegistryClient.submit`."""

    function: str  # the contract function, e.g. "changeStatusSigned"
    args: tuple[Any, ...]  # its arguments before ``signer`` and ``signature``
    signer: str
    nonce: int
    signature: bytes
    typed_data: dict[str, Any] = field(repr=False)  # the EIP-712 message that was signed


def _show(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return str(value)


def _error_table(abi: Sequence[dict[str, Any]]) -> dict[bytes, tuple[str, tuple[str, ...], tuple[str, ...]]]:
    table = dict(_BUILTIN_ERRORS)
    for entry in abi:
        if entry.get("type") == "error":
            error = cast(ABIError, entry)
            selector = function_signature_to_4byte_selector(abi_to_signature(error))
            table[selector] = (
                entry["name"],
                tuple(get_abi_input_types(error)),
                tuple(str(n) for n in get_abi_input_names(error)),
            )
    return table


def decode_revert(data: bytes | str | None, abi: Sequence[dict[str, Any]]) -> RevertReason:
    """Decode revert data against ``abi``'s custom errors plus ``Error(string)``/``Panic(uint256)``.

    A ``str`` is a reason the node already decoded (``Error(string)``).
    """
    if isinstance(data, str):
        return RevertReason("Error", {"reason": data}, b"")
    raw = bytes(data or b"")
    known = _error_table(abi).get(raw[:4]) if len(raw) >= 4 else None
    if known is None:
        return RevertReason("", {}, raw)
    name, types, names = known
    try:
        values = abi_decode(list(types), raw[4:])
    except (DecodingError, ValueError, TypeError):
        return RevertReason("", {}, raw)
    args = {
        arg: (Web3.to_checksum_address(v) if typ == "address" else v)
        for arg, typ, v in zip(names, types, values)
    }
    return RevertReason(name, args, raw)


def _revert_data(exc: BaseException) -> bytes | str | None:
    """The revert data of a failed call, from a JSON-RPC node or from eth-tester."""
    if isinstance(exc, ContractLogicError):
        data = exc.data
        if isinstance(data, dict):
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
        return exc.message
    text = str(exc.args[0]) if exc.args else ""
    text = text.removeprefix("execution reverted: ")
    # web3's eth-tester bridge hands custom-error data over as the repr of a bytes object; a
    # literal parse (no evaluation) gets the exact bytes back.
    if text[:2] in ("b'", 'b"'):
        with contextlib.suppress(ValueError, SyntaxError):
            value = ast.literal_eval(text)
            if isinstance(value, bytes):
                return value
    return text or None


def _failure(what: str, reason: RevertReason, **details: Any) -> TransactionFailedError:
    if reason.name in _REFUSALS:
        err: TransactionFailedError = NotAuthorizedError(
            f"{what} refused by the registry: {reason}", revert=reason.name, **details
        )
    else:
        err = TransactionFailedError(f"{what} reverted: {reason}", revert=reason.name, **details)
    err.revert = reason
    return err


class RegistryClient:
    """Reads and writes one deployed ERC-5539 registry on one :class:`Chain`.

    ``revocation_list`` / ``revocation_key`` arguments take 32 bytes or ``0x`` + 64 hex digits;
    addresses take any ``0x`` + 40 hex spelling (a mixed-case one must carry a valid EIP-55
    checksum). Results use checksummed addresses and raw 32-byte ``bytes``.
    """

    def __init__(self, chain: Chain, address: str, *, artifact: Artifact | None = None) -> None:
        self.chain = chain
        self.address = checksum_address(address, what="registry address")
        self._artifact = artifact or load_artifact()
        self._contract = chain.w3.eth.contract(address=self.address, abi=self._artifact.abi_list)
        self._domain: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"RegistryClient({self.address}, {self.chain!r})"

    @property
    def contract(self) -> Any:
        """The web3 contract object (for adapters such as the event mirror)."""
        return self._contract

    # --- plumbing -------------------------------------------------------------------------

    def _call(self, fn_name: str, *args: Any, block: int | str = "latest") -> Any:
        with _calling(self.chain, self._artifact, fn_name, registry=self.address):
            return getattr(self._contract.functions, fn_name)(*args).call(block_identifier=block)

    def _send(self, account: LocalAccount, fn: Any, what: str, *, gas: int | None) -> TxResult:
        return _send(self.chain, self._artifact, account, fn, what, gas=gas, registry=self.address)

    # --- reads ----------------------------------------------------------------------------

    def is_revoked(
        self,
        namespace: str,
        revocation_list: bytes | str,
        revocation_key: bytes | str,
        *,
        block: int | str = "latest",
    ) -> bool:
        """Whether the key is revoked (also true when its whole list is revoked)."""
        return bool(
            self._call(
                "isRevoked",
                checksum_address(namespace, what="namespace"),
                bytes32(revocation_list, what="revocation list"),
                bytes32(revocation_key, what="revocation key"),
                block=block,
            )
        )

    def list_is_revoked(
        self, namespace: str, revocation_list: bytes | str, *, block: int | str = "latest"
    ) -> bool:
        return bool(
            self._call(
                "listIsRevoked",
                checksum_address(namespace, what="namespace"),
                bytes32(revocation_list, what="revocation list"),
                block=block,
            )
        )

    def list_owner(self, namespace: str, revocation_list: bytes | str) -> str:
        """The list's current owner: the namespace address until it hands the list on."""
        return Web3.to_checksum_address(
            self._call(
                "listOwner",
                checksum_address(namespace, what="namespace"),
                bytes32(revocation_list, what="revocation list"),
            )
        )

    def is_owner(self, namespace: str, revocation_list: bytes | str, identity: str) -> bool:
        return bool(
            self._call(
                "identityIsOwner",
                checksum_address(namespace, what="namespace"),
                bytes32(revocation_list, what="revocation list"),
                checksum_address(identity, what="identity"),
            )
        )

    def is_delegate(self, namespace: str, revocation_list: bytes | str, identity: str) -> bool:
        return bool(
            self._call(
                "identityIsDelegate",
                checksum_address(namespace, what="namespace"),
                bytes32(revocation_list, what="revocation list"),
                checksum_address(identity, what="identity"),
            )
        )

    def nonce(self, signer: str) -> int:
        """The signer's next meta-transaction nonce."""
        return int(self._call("nonces", checksum_address(signer, what="signer")))

    def eip712_domain(self) -> dict[str, Any]:
        """The contract's EIP-712 domain (ERC-5267), read once per client."""
        if self._domain is None:
            _fields, name, version, chain_id, verifying_contract, _salt, _ext = self._call("eip712Domain")
            self._domain = {
                "name": name,
                "version": version,
                "chainId": int(chain_id),
                "verifyingContract": Web3.to_checksum_address(verifying_contract),
            }
        return dict(self._domain)

    # --- writes, sent and signed by ``account`` --------------------------------------------

    def _namespace(self, account: LocalAccount, namespace: str | None) -> str:
        return account.address if namespace is None else checksum_address(namespace, what="namespace")

    def _as_delegate(
        self, account: LocalAccount, namespace: str, revocation_list: bytes, delegated: bool | None
    ) -> bool:
        if delegated is not None:
            return delegated
        # Pick the function the sender is entitled to; if it is entitled to neither, send the
        # owner's one and let the contract refuse (its reason is the authoritative one).
        if self.is_owner(namespace, revocation_list, account.address):
            return False
        return self.is_delegate(namespace, revocation_list, account.address)

    def change_status(
        self,
        account: LocalAccount,
        *,
        revoked: bool,
        revocation_list: bytes | str,
        revocation_key: bytes | str,
        namespace: str | None = None,
        delegated: bool | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Revoke (``revoked=True``) or reinstate one key. ``namespace`` defaults to the sender's own.

        ``delegated`` picks ``changeStatusDelegated``; ``None`` picks it when the sender is a
        delegate rather than the owner. ``gas`` skips the pre-send simulation.
        """
        ns = self._namespace(account, namespace)
        lst = bytes32(revocation_list, what="revocation list")
        key = bytes32(revocation_key, what="revocation key")
        name = "changeStatusDelegated" if self._as_delegate(account, ns, lst, delegated) else "changeStatus"
        fn = getattr(self._contract.functions, name)(bool(revoked), ns, lst, key)
        return self._send(account, fn, name, gas=gas)

    def change_statuses(
        self,
        account: LocalAccount,
        *,
        revoked: Sequence[bool],
        revocation_list: bytes | str,
        revocation_keys: Sequence[bytes | str],
        namespace: str | None = None,
        delegated: bool | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Change many keys of one list in one transaction (``changeStatusesInList``)."""
        ns = self._namespace(account, namespace)
        lst = bytes32(revocation_list, what="revocation list")
        keys = [bytes32(k, what="revocation key") for k in revocation_keys]
        name = (
            "changeStatusesInListDelegated"
            if self._as_delegate(account, ns, lst, delegated)
            else "changeStatusesInList"
        )
        fn = getattr(self._contract.functions, name)([bool(r) for r in revoked], ns, lst, keys)
        return self._send(account, fn, name, gas=gas)

    def change_list_status(
        self,
        account: LocalAccount,
        *,
        revoked: bool,
        revocation_list: bytes | str,
        namespace: str | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Revoke or reinstate a whole list (all its keys read as revoked while it is revoked)."""
        fn = self._contract.functions.changeListStatus(
            bool(revoked),
            self._namespace(account, namespace),
            bytes32(revocation_list, what="revocation list"),
        )
        return self._send(account, fn, "changeListStatus", gas=gas)

    def change_list_owner(
        self,
        account: LocalAccount,
        *,
        new_owner: str,
        revocation_list: bytes | str,
        namespace: str | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Hand a list (and the right to name its delegates) to ``new_owner``; current delegates lapse."""
        fn = self._contract.functions.changeListOwner(
            checksum_address(new_owner, what="new owner"),
            self._namespace(account, namespace),
            bytes32(revocation_list, what="revocation list"),
        )
        return self._send(account, fn, "changeListOwner", gas=gas)

    def add_list_delegate(
        self,
        account: LocalAccount,
        *,
        delegate: str,
        revocation_list: bytes | str,
        namespace: str | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """Let ``delegate`` write keys of this list (``*Delegated`` functions) until removed."""
        fn = self._contract.functions.addListDelegate(
            checksum_address(delegate, what="delegate"),
            self._namespace(account, namespace),
            bytes32(revocation_list, what="revocation list"),
        )
        return self._send(account, fn, "addListDelegate", gas=gas)

    def remove_list_delegate(
        self,
        account: LocalAccount,
        *,
        delegate: str,
        revocation_list: bytes | str,
        namespace: str | None = None,
        gas: int | None = None,
    ) -> TxResult:
        """End ``delegate``'s rights on this list."""
        fn = self._contract.functions.removeListDelegate(
            checksum_address(delegate, what="delegate"),
            self._namespace(account, namespace),
            bytes32(revocation_list, what="revocation list"),
        )
        return self._send(account, fn, "removeListDelegate", gas=gas)

    # --- EIP-712 signed writes (ERC-5539 meta transactions) ------------------------------------

    def typed_data(self, primary_type: str, message: dict[str, Any]) -> dict[str, Any]:
        """The full EIP-712 message for ``primary_type`` (one of :data:`EIP712_TYPES`)."""
        if primary_type not in EIP712_TYPES:
            raise ValueError(f"unknown signed write {primary_type!r}")
        fields = EIP712_TYPES[primary_type] + _SIGNER_FIELDS
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                primary_type: [{"name": n, "type": t} for n, t in fields],
            },
            "primaryType": primary_type,
            "domain": self.eip712_domain(),
            "message": message,
        }

    def _sign(
        self, signer: LocalAccount, primary_type: str, args: dict[str, Any], nonce: int | None
    ) -> SignedWrite:
        use_nonce = self.nonce(signer.address) if nonce is None else int(nonce)
        message = {**args, "signer": signer.address, "nonce": use_nonce}
        typed = self.typed_data(primary_type, message)
        signature = bytes(signer.sign_message(encode_typed_data(full_message=typed)).signature)
        function = primary_type[0].lower() + primary_type[1:] + "Signed"
        return SignedWrite(function, tuple(args.values()), signer.address, use_nonce, signature, typed)

    def sign_change_status(
        self,
        signer: LocalAccount,
        *,
        revoked: bool,
        revocation_list: bytes | str,
        revocation_key: bytes | str,
        namespace: str | None = None,
        delegated: bool = False,
        nonce: int | None = None,
    ) -> SignedWrite:
        """Sign ``changeStatus[Delegated]Signed`` for someone else to submit."""
        args = {
            "revoked": bool(revoked),
            "namespace": self._namespace(signer, namespace),
            "revocationList": bytes32(revocation_list, what="revocation list"),
            "revocationKey": bytes32(revocation_key, what="revocation key"),
        }
        return self._sign(signer, "ChangeStatusDelegated" if delegated else "ChangeStatus", args, nonce)

    def sign_change_statuses(
        self,
        signer: LocalAccount,
        *,
        revoked: Sequence[bool],
        revocation_list: bytes | str,
        revocation_keys: Sequence[bytes | str],
        namespace: str | None = None,
        delegated: bool = False,
        nonce: int | None = None,
    ) -> SignedWrite:
        """Sign ``changeStatusesInList[Delegated]Signed``."""
        args = {
            "revoked": [bool(r) for r in revoked],
            "namespace": self._namespace(signer, namespace),
            "revocationList": bytes32(revocation_list, what="revocation list"),
            "revocationKeys": [bytes32(k, what="revocation key") for k in revocation_keys],
        }
        return self._sign(
            signer, "ChangeStatusesInListDelegated" if delegated else "ChangeStatusesInList", args, nonce
        )

    def sign_change_list_status(
        self,
        signer: LocalAccount,
        *,
        revoked: bool,
        revocation_list: bytes | str,
        namespace: str | None = None,
        nonce: int | None = None,
    ) -> SignedWrite:
        """Sign ``changeListStatusSigned``."""
        args = {
            "revoked": bool(revoked),
            "namespace": self._namespace(signer, namespace),
            "revocationList": bytes32(revocation_list, what="revocation list"),
        }
        return self._sign(signer, "ChangeListStatus", args, nonce)

    def sign_change_list_owner(
        self,
        signer: LocalAccount,
        *,
        new_owner: str,
        revocation_list: bytes | str,
        namespace: str | None = None,
        nonce: int | None = None,
    ) -> SignedWrite:
        """Sign ``changeListOwnerSigned``."""
        args = {
            "newOwner": checksum_address(new_owner, what="new owner"),
            "namespace": self._namespace(signer, namespace),
            "revocationList": bytes32(revocation_list, what="revocation list"),
        }
        return self._sign(signer, "ChangeListOwner", args, nonce)

    def sign_add_list_delegate(
        self,
        signer: LocalAccount,
        *,
        delegate: str,
        revocation_list: bytes | str,
        namespace: str | None = None,
        nonce: int | None = None,
    ) -> SignedWrite:
        """Sign ``addListDelegateSigned``."""
        args = {
            "delegate": checksum_address(delegate, what="delegate"),
            "namespace": self._namespace(signer, namespace),
            "revocationList": bytes32(revocation_list, what="revocation list"),
        }
        return self._sign(signer, "AddListDelegate", args, nonce)

    def sign_remove_list_delegate(
        self,
        signer: LocalAccount,
        *,
        delegate: str,
        revocation_list: bytes | str,
        namespace: str | None = None,
        nonce: int | None = None,
    ) -> SignedWrite:
        """Sign ``removeListDelegateSigned``."""
        args = {
            "delegate": checksum_address(delegate, what="delegate"),
            "namespace": self._namespace(signer, namespace),
            "revocationList": bytes32(revocation_list, what="revocation list"),
        }
        return self._sign(signer, "RemoveListDelegate", args, nonce)

    def submit(self, sender: LocalAccount, signed: SignedWrite, *, gas: int | None = None) -> TxResult:
        """Send a :class:`SignedWrite` from ``sender`` (who pays the gas; the signer pays nothing)."""
        fn = getattr(self._contract.functions, signed.function)(*signed.args, signed.signer, signed.signature)
        return self._send(sender, fn, signed.function, gas=gas)


def deploy_registry(chain: Chain, account: LocalAccount, *, gas: int | None = None) -> str:
    """Deploy the registry from the committed artifact; returns its checksummed address."""
    return deploy_registry_tx(chain, account, gas=gas).contract_address or ""


def deploy_registry_tx(chain: Chain, account: LocalAccount, *, gas: int | None = None) -> TxResult:
    """Like :func:`deploy_registry`, returning the whole :class:`TxResult` (gas used, block)."""
    artifact = load_artifact()
    factory = chain.w3.eth.contract(abi=artifact.abi_list, bytecode=artifact.bytecode)
    result = _send(chain, artifact, account, factory.constructor(), "deploy registry", gas=gas)
    if not result.contract_address or not chain.code_at(result.contract_address):
        raise TransactionFailedError("deployment left no contract code", tx_hash=result.tx_hash)
    return result


# --- sending and error mapping, shared by the client and deployment ------------------------


@contextlib.contextmanager
def _calling(
    chain: Chain, artifact: Artifact, what: str, *, registry: str | None = None, **details: Any
) -> Iterator[None]:
    reverts: tuple[type[BaseException], ...] = (ContractLogicError, *embedded_revert_errors())
    with chain.guard(what):
        try:
            yield
        except BadFunctionCallOutput as exc:
            raise RegistryNotFoundError(
                f"{what}: no registry at {registry} on {chain.endpoint}", registry=registry
            ) from exc
        except reverts as exc:
            raise _failure(what, decode_revert(_revert_data(exc), artifact.abi), **details) from exc


def _send(
    chain: Chain,
    artifact: Artifact,
    account: LocalAccount,
    fn: Any,
    what: str,
    *,
    gas: int | None,
    registry: str | None = None,
) -> TxResult:
    w3 = chain.w3
    sender = account.address
    with _calling(chain, artifact, what, registry=registry, sender=sender):
        params: dict[str, Any] = {
            "from": sender,
            "chainId": chain.chain_id(),
            "nonce": w3.eth.get_transaction_count(sender, "pending"),
        }
        if gas is not None:
            params["gas"] = gas
        # build_transaction estimates gas when none is given: a refused write fails here,
        # with the contract's reason, before anything is signed or paid for.
        tx = fn.build_transaction(params)
        signed = account.sign_transaction(tx)
        tx_hash = Web3.to_hex(w3.eth.send_raw_transaction(signed.raw_transaction))
    receipt = chain.wait_for_receipt(tx_hash)
    if receipt["status"] != 1:
        raise _replay_failure(chain, artifact, tx, receipt, what, tx_hash)
    address = receipt.get("contractAddress")
    return TxResult(
        tx_hash=tx_hash,
        block_number=int(receipt["blockNumber"]),
        block_hash=Web3.to_hex(receipt["blockHash"]),
        gas_used=int(receipt["gasUsed"]),
        contract_address=Web3.to_checksum_address(address) if address else None,
    )


def _replay_failure(
    chain: Chain, artifact: Artifact, tx: dict[str, Any], receipt: Any, what: str, tx_hash: str
) -> TransactionFailedError:
    # A mined revert carries no reason; re-running the call on the state it met recovers it.
    call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
    try:
        with _calling(chain, artifact, what, sender=tx["from"], tx_hash=tx_hash):
            chain.w3.eth.call(cast(Any, call), block_identifier=int(receipt["blockNumber"]))
    except TransactionFailedError as exc:
        return exc
    return TransactionFailedError(
        f"{what}: transaction {tx_hash} reverted (reason not recoverable)", tx_hash=tx_hash
    )
