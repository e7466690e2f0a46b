"""``EthrRevocationRegistry2022`` status entries: build, parse, and check them.

An entry points at one key of one list in an ERC-5539 registry::

    {
      "id": "0x<registry>#<list-hex>-<key-hex>",
      "type": "EthrRevocationRegistry2022",
      "registry": "0x<registry address>",
      "chainId": 1,
      "namespace": "0x<issuer's Ethereum address>",
      "revocationList": "0x<32 bytes hex>",
      "revocationKey": "0x<32 bytes hex>"
    }

The credential is revoked when the registry's ``isRevoked(namespace, revocationList,
revocationKey)`` is true on chain ``chainId`` -- the key itself, or its whole list.

* :func:`status_entry` builds an entry (issuing); :func:`parse_status_entry` reads one strictly.
* :class:`OnchainStatusMethod` -- the request path: answers from local
  :class:`~vcgate.status.mirror.RevocationMirror` instances, never from the network.
* :class:`DirectRegistryStatus` -- asks the node (``eth_call``); for the CLI
  (``vcgate verify --rpc``, ``vcgate status``), not for gateways.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..chain import Chain, RegistryClient
from ..chain.accounts import checksum_address
from ..credentials.models import VerifiedCredential
from ..errors import (
    ChainError,
    ChainUnavailableError,
    MalformedError,
    RegistryNotFoundError,
    RevokedError,
    StatusListInvalidError,
    StatusUnavailableError,
    StatusUnsupportedError,
)
from . import StatusResult
from .mirror import RevocationMirror

__all__ = [
    "ENTRY_TYPE",
    "DirectRegistryStatus",
    "OnchainStatus",
    "OnchainStatusMethod",
    "RegistryStatusEntry",
    "parse_status_entry",
    "status_entry",
]

ENTRY_TYPE = "EthrRevocationRegistry2022"
_MAX_ID = 2048
_MAX_CHAIN_ID = 2**64 - 1
# Validated addresses per parser instance: EIP-55 checking costs ~19 us (keccak), a request
# path budget of its own; issuers and registries are few, so a small cache answers nearly all.
_ADDRESS_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class RegistryStatusEntry:
    """A parsed, validated ``EthrRevocationRegistry2022`` entry (addresses checksummed)."""

    id: str | None
    registry: str
    chain_id: int
    namespace: str
    revocation_list: bytes
    revocation_key: bytes

    @property
    def namespace_bytes(self) -> bytes:
        return bytes.fromhex(self.namespace[2:])

    @property
    def source(self) -> str:
        """The registry as a CAIP-10 account id (``eip155:<chainId>:<address>``)."""
        return f"eip155:{self.chain_id}:{self.registry}"

    def to_dict(self) -> dict[str, Any]:
        return status_entry(
            self.registry,
            self.chain_id,
            self.namespace,
            self.revocation_list,
            self.revocation_key,
            id=self.id,
        )


def _hex32(value: object, what: str) -> bytes:
    # Exactly "0x" + 64 hex digits. bytes.fromhex alone would also take spaces between digit
    # pairs; with the length fixed at 66, any space leaves fewer than 32 bytes and is refused.
    if type(value) is not str or len(value) != 66 or value[:2] != "0x":
        raise MalformedError(f"credentialStatus {what} must be 0x followed by 64 hex digits")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise MalformedError(f"credentialStatus {what} is not hex") from exc
    if len(raw) != 32:
        raise MalformedError(f"credentialStatus {what} must be 0x followed by 64 hex digits")
    return raw


def _as32(value: bytes | str, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        if len(value) != 32:
            raise MalformedError(f"{what} must be 32 bytes, got {len(value)}")
        return bytes(value)
    return _hex32(value, what)


def status_entry(
    registry: str,
    chain_id: int,
    namespace: str,
    revocation_list: bytes | str,
    revocation_key: bytes | str,
    *,
    id: str | None = None,
) -> dict[str, Any]:
    """The ``credentialStatus`` entry an issuer embeds (validated, addresses checksummed).

    ``id`` defaults to ``<registry>#<list-hex>-<key-hex>``.
    """
    reg = checksum_address(registry, what="registry address")
    ns = checksum_address(namespace, what="namespace")
    if type(chain_id) is not int or not 1 <= chain_id <= _MAX_CHAIN_ID:
        raise MalformedError(f"chain id must be a positive integer, got {chain_id!r}")
    lst = _as32(revocation_list, "revocation list")
    key = _as32(revocation_key, "revocation key")
    if id is not None and (type(id) is not str or not id or len(id) > _MAX_ID):
        raise MalformedError("a status entry id must be a non-empty string")
    return {
        "id": id if id is not None else f"{reg}#{lst.hex()}-{key.hex()}",
        "type": ENTRY_TYPE,
        "registry": reg,
        "chainId": chain_id,
        "namespace": ns,
        "revocationList": "0x" + lst.hex(),
        "revocationKey": "0x" + key.hex(),
    }


class _EntryParser:
    """Strict parsing with a bounded per-instance cache of validated addresses."""

    def __init__(self, cache_size: int = _ADDRESS_CACHE_SIZE) -> None:
        self._addresses: dict[str, str] = {}
        self._cache_size = cache_size

    def address(self, value: object, what: str) -> str:
        if type(value) is str:
            hit = self._addresses.get(value)
            if hit is not None:
                return hit
        checked = checksum_address(value, what=f"credentialStatus {what}")
        if self._cache_size:
            if len(self._addresses) >= self._cache_size:
                self._addresses.clear()
            self._addresses[value] = checked  # type: ignore[index]  # only a str passes the check
        return checked

    def parse(self, entry: Mapping[str, Any]) -> RegistryStatusEntry:
        if not isinstance(entry, Mapping):
            raise MalformedError("credentialStatus entry must be a JSON object")
        if entry.get("type") != ENTRY_TYPE:
            raise MalformedError(f"credentialStatus type must be {ENTRY_TYPE!r}")
        id_ = entry.get("id")
        if id_ is not None and (type(id_) is not str or not id_ or len(id_) > _MAX_ID):
            raise MalformedError("credentialStatus id must be a non-empty string")
        for name in ("registry", "chainId", "namespace", "revocationList", "revocationKey"):
            if name not in entry:
                raise MalformedError(f"credentialStatus {ENTRY_TYPE} lacks {name!r}")
        chain_id = entry["chainId"]
        # JSON numbers only: no bool (an int subclass), no float, no numeric string.
        if type(chain_id) is not int or not 1 <= chain_id <= _MAX_CHAIN_ID:
            raise MalformedError("credentialStatus chainId must be a positive integer")
        return RegistryStatusEntry(
            id=id_,
            registry=self.address(entry["registry"], "registry"),
            chain_id=chain_id,
            namespace=self.address(entry["namespace"], "namespace"),
            revocation_list=_hex32(entry["revocationList"], "revocationList"),
            revocation_key=_hex32(entry["revocationKey"], "revocationKey"),
        )


def parse_status_entry(entry: Mapping[str, Any]) -> RegistryStatusEntry:
    """Parse an ``EthrRevocationRegistry2022`` entry strictly; :class:`MalformedError` otherwise.

    Required: ``type``, ``registry`` and ``namespace`` (``0x`` + 40 hex digits; a mixed-case
    spelling must carry a valid EIP-55 checksum), ``chainId`` (a JSON integer >= 1),
    ``revocationList`` and ``revocationKey`` (``0x`` + exactly 64 hex digits). ``id``, if
    present, is a non-empty string. Other members are ignored.
    """
    return _EntryParser(cache_size=0).parse(entry)


class _Route(NamedTuple):
    mirror: tuple[int, str]  # (chainId, registry)
    namespace: bytes
    revocation_list: bytes
    revocation_key: bytes
    source: str


class OnchainStatusMethod:
    """The request-path :class:`~vcgate.status.StatusMethod` for ``EthrRevocationRegistry2022``.

    Each entry goes to the mirror registered for its ``(chainId, registry)``; the answer is an
    in-memory lookup. Outcomes:

    * revoked (key or list) -- :class:`~vcgate.errors.RevokedError` (``revoked``);
    * the mirror's last good sync is older than its ``max_staleness``, or it has not synced
      yet -- :class:`~vcgate.errors.StatusUnavailableError` (``status_unavailable``, 503);
    * no mirror for that chain and registry, or the mirror does not follow that namespace --
      :class:`~vcgate.errors.StatusUnsupportedError` (``status_unsupported``): this gateway
      cannot check that entry at all, and retrying will not change it;
    * a malformed entry -- :class:`~vcgate.errors.MalformedError`.
    """

    types: tuple[str, ...] = (ENTRY_TYPE,)

    def __init__(self, mirrors: Iterable[RevocationMirror] = (), *, cache_size: int = 4096) -> None:
        self._mirrors: dict[tuple[int, str], RevocationMirror] = {}
        self._parser = _EntryParser()
        # Parsed entries by their raw values: a credential is presented many times, and
        # parsing (hex, checksums, a frozen dataclass) costs ~4 us against a ~1 us lookup.
        self._entries: dict[tuple[Any, ...], _Route] = {}
        self._cache_size = cache_size
        for mirror in mirrors:
            self.register(mirror)

    def register(self, mirror: RevocationMirror) -> None:
        """Serve entries naming ``mirror.chain_id`` and ``mirror.registry`` from ``mirror``."""
        self._mirrors[(mirror.chain_id, mirror.registry)] = mirror

    @property
    def mirrors(self) -> tuple[RevocationMirror, ...]:
        return tuple(self._mirrors.values())

    def _route(self, entry: Mapping[str, Any]) -> _Route:
        try:
            chain_id = entry["chainId"]
            # type(chainId) is part of the key: True == 1 == 1.0 would otherwise share a slot.
            raw = (
                entry["type"],
                entry.get("id"),
                entry["registry"],
                type(chain_id),
                chain_id,
                entry["namespace"],
                entry["revocationList"],
                entry["revocationKey"],
            )
            route = self._entries.get(raw)
        except (KeyError, TypeError, AttributeError):  # missing member, unhashable value: parse says why
            raw, route = None, None
        if route is None:
            parsed = self._parser.parse(entry)
            route = _Route(
                (parsed.chain_id, parsed.registry),
                parsed.namespace_bytes,
                parsed.revocation_list,
                parsed.revocation_key,
                parsed.source,
            )
            if raw is not None and self._cache_size:
                if len(self._entries) >= self._cache_size:
                    self._entries.clear()
                self._entries[raw] = route
        return route

    def check(self, credential: VerifiedCredential, entry: Mapping[str, Any]) -> StatusResult:
        route = self._route(entry)
        mirror = self._mirrors.get(route.mirror)
        if mirror is None:
            chain_id, registry = route.mirror
            raise StatusUnsupportedError(
                f"no revocation mirror for registry {registry} on chain {chain_id}", source=route.source
            )
        as_of = mirror.check(route.namespace, route.revocation_list, route.revocation_key)
        return StatusResult(type=ENTRY_TYPE, purpose="revocation", source=route.source, as_of=as_of)


@dataclass(frozen=True, slots=True)
class OnchainStatus:
    """What the chain says about one entry, read at one block.

    ``revoked`` is the contract's ``isRevoked`` (the key or its whole list); ``list_revoked``
    its ``listIsRevoked``. The key's own flag is not readable while its list is revoked.
    """

    entry: RegistryStatusEntry
    block_number: int
    revoked: bool
    list_revoked: bool


class DirectRegistryStatus:
    """A :class:`~vcgate.status.StatusMethod` that reads the registry over JSON-RPC.

    One or more ``eth_call`` per check: meant for the CLI (``vcgate verify --rpc``,
    ``vcgate status``) and one-off checks, never for a gateway's request path (use
    :class:`OnchainStatusMethod` with a mirror). ``registries`` restricts which registry
    addresses it will ask (``None``: any named by the entry -- fine for a person running the
    CLI, who sees the answer's source).
    """

    types: tuple[str, ...] = (ENTRY_TYPE,)

    def __init__(
        self,
        chain: Chain,
        *,
        registries: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chain = chain
        self._allowed = (
            None if registries is None else frozenset(checksum_address(r, what="registry") for r in registries)
        )
        self._clock = clock
        self._clients: dict[str, RegistryClient] = {}

    def _client(self, parsed: RegistryStatusEntry) -> RegistryClient:
        if self._allowed is not None and parsed.registry not in self._allowed:
            raise StatusUnsupportedError(
                f"registry {parsed.registry} is not one this checker trusts", source=parsed.source
            )
        try:
            chain_id = self.chain.chain_id()
        except ChainUnavailableError as exc:
            raise StatusUnavailableError(f"cannot reach the node: {exc.message}", source=parsed.source) from exc
        if chain_id != parsed.chain_id:
            raise StatusUnsupportedError(
                f"the entry names chain {parsed.chain_id}, the node is chain {chain_id}", source=parsed.source
            )
        client = self._clients.get(parsed.registry)
        if client is None:
            client = self._clients[parsed.registry] = RegistryClient(self.chain, parsed.registry)
        return client

    def read(self, entry: Mapping[str, Any] | RegistryStatusEntry) -> OnchainStatus:
        """The key's and the list's status, both read at the same (latest) block."""
        parsed = entry if isinstance(entry, RegistryStatusEntry) else parse_status_entry(entry)
        client = self._client(parsed)
        try:
            block = self.chain.block_number()
            revoked = client.is_revoked(
                parsed.namespace, parsed.revocation_list, parsed.revocation_key, block=block
            )
            list_revoked = client.list_is_revoked(parsed.namespace, parsed.revocation_list, block=block)
        except RegistryNotFoundError as exc:
            raise StatusListInvalidError(
                f"no revocation registry at {parsed.registry} on chain {parsed.chain_id}", source=parsed.source
            ) from exc
        except ChainError as exc:
            raise StatusUnavailableError(
                f"cannot read the registry: {exc.message}", source=parsed.source
            ) from exc
        return OnchainStatus(parsed, block, revoked, list_revoked)

    def check(self, credential: VerifiedCredential, entry: Mapping[str, Any]) -> StatusResult:
        status = self.read(entry)
        if status.revoked:
            raise RevokedError(
                "the credential's revocation list has been revoked by its issuer"
                if status.list_revoked
                else None,
                source=status.entry.source,
            )
        return StatusResult(
            type=ENTRY_TYPE, purpose="revocation", source=status.entry.source, as_of=self._clock()
        )
