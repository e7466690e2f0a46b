"""Chain access: one :class:`Chain` object per node connection, built by :func:`connect`.

Two backends behind the same ``Web3`` interface:

* ``embedded`` (``rpc_url`` ``None`` or ``"embedded"``): an in-process EVM (eth-tester on
  py-evm), with funded, unlocked development accounts; it lives and dies with the ``Chain``
  object. The default for the demo and the unit tests.
* any ``http://`` or ``https://`` JSON-RPC URL: web3's ``HTTPProvider`` with a timeout on every
  request, no automatic retries unless asked (a poll loop above this layer decides when to try
  again, and a down node must show up quickly), and request caching limited to
  ``eth_chainId``: web3.py 8 otherwise asks the node for its chain id around every
  ``eth_call`` (measured here: three requests per call instead of one). Nothing else is cached,
  so block and log queries always see the node's current view -- the mirror needs that.

Every failure to talk to the node becomes a :class:`ChainUnavailableError`
(``raise ... from exc``); no web3/requests exception escapes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import requests
from eth_typing import HexStr
from web3 import HTTPProvider, Web3
from web3.exceptions import BlockNotFound, TimeExhausted, Web3Exception
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import RPCEndpoint, Wei

from ._limits import keep_recursion_limit
from .accounts import checksum_address
from ..errors import ChainError, ChainUnavailableError, TransactionFailedError, TransactionPendingError

__all__ = ["EMBEDDED", "BlockRef", "Chain", "connect"]

EMBEDDED = "embedded"


@dataclass(frozen=True)
class BlockRef:
    """What the mirror needs to know about a block: where it is and what it follows."""

    number: int
    hash: str
    parent_hash: str
    timestamp: int


def _redact(url: str) -> str:
    # RPC URLs often carry an API key in the path or query (Infura, Alchemy): never log it.
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


class Chain:
    """A connection to one Ethereum node (embedded or JSON-RPC), wrapping a ``Web3`` instance.

    Build it with :func:`connect`. ``w3`` is the underlying ``Web3`` for adapters that need
    more than this class offers; they should go through :meth:`guard` to keep errors typed.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        kind: str,
        endpoint: str,
        receipt_timeout: float = 120.0,
        probe: HTTPProvider | None = None,
    ) -> None:
        self._w3 = w3
        # An uncached provider for identity probes (``eth_chainId``): ``w3``'s provider caches
        # that answer for web3's own sake, which would hide a node replaced by another chain.
        self._probe = probe
        self.kind = kind
        #: Where the node is, without credentials (safe to log and to show).
        self.endpoint = endpoint
        self.receipt_timeout = receipt_timeout
        self._chain_id: int | None = None

    def __repr__(self) -> str:
        return f"Chain(kind={self.kind!r}, endpoint={self.endpoint!r})"

    @property
    def w3(self) -> Web3:
        return self._w3

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Turn any failure to talk to the node into :class:`ChainUnavailableError`."""
        node_errors: tuple[type[BaseException], ...] = (Web3Exception, *embedded_errors())
        try:
            yield
        except ChainError:
            raise
        except (requests.RequestException, OSError) as exc:
            why = f"{type(exc).__name__}: {exc}" if isinstance(exc, (ResponseTooSlowError, ResponseTooLargeError)) else type(exc).__name__
            raise ChainUnavailableError(
                f"{what}: cannot reach the node at {self.endpoint} ({why})",
                endpoint=self.endpoint,
            ) from exc
        except node_errors as exc:
            raise ChainUnavailableError(
                f"{what}: the node answered with an error: {exc}", endpoint=self.endpoint
            ) from exc
        except (ValueError, LookupError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
            # Malformed JSON-RPC responses surface as these from web3's formatters (and a
            # hostile, deeply nested answer as RecursionError from the JSON decoder).
            raise ChainUnavailableError(
                f"{what}: unusable answer from the node: {exc}", endpoint=self.endpoint
            ) from exc

    # --- reads ------------------------------------------------------------------------------

    def chain_id(self) -> int:
        """The chain id (asked once per ``Chain``; a node does not change chains)."""
        if self._chain_id is None:
            with self.guard("eth_chainId"):
                self._chain_id = int(self._w3.eth.chain_id)
        return self._chain_id

    def node_chain_id(self) -> int:
        """The chain id the node reports *now* (never cached): for callers that must notice a
        node replaced by one of another chain behind the same URL (the mirror asks every sync)."""
        with self.guard("eth_chainId"):
            if self._probe is None:  # embedded: the chain lives in this process
                return int(self._w3.eth.chain_id)
            response = self._probe.make_request(RPCEndpoint("eth_chainId"), [])
            if not isinstance(response, dict) or "result" not in response:
                raise ChainUnavailableError(
                    f"eth_chainId: the node answered without a result: {str(response)[:200]}",
                    endpoint=self.endpoint,
                )
            result = response["result"]
            if not isinstance(result, str) or not result.startswith("0x"):
                raise ChainUnavailableError(
                    f"eth_chainId: unusable answer from the node: {str(result)[:80]!r}", endpoint=self.endpoint
                )
            return int(result, 16)

    def block_number(self) -> int:
        with self.guard("eth_blockNumber"):
            return int(self._w3.eth.block_number)

    def block(self, ident: int | str = "latest") -> BlockRef | None:
        """A block by number, hash or tag (``latest``, ``safe``, ``finalized``); ``None`` if
        the node has no such block (a number past the head, a hash reorganised away)."""
        with self.guard(f"eth_getBlock({ident})"):
            try:
                block = self._w3.eth.get_block(cast(Any, ident))
            except BlockNotFound:
                return None
            return BlockRef(
                number=int(block["number"]),
                hash=Web3.to_hex(block["hash"]),
                parent_hash=Web3.to_hex(block["parentHash"]),
                timestamp=int(block["timestamp"]),
            )

    def code_at(self, address: str, block: int | str = "latest") -> bytes:
        with self.guard("eth_getCode"):
            return bytes(self._w3.eth.get_code(checksum_address(address), block_identifier=cast(Any, block)))

    def balance(self, address: str) -> int:
        with self.guard("eth_getBalance"):
            return int(self._w3.eth.get_balance(checksum_address(address)))

    # --- transactions -------------------------------------------------------------------------

    def wait_for_receipt(self, tx_hash: str, *, timeout: float | None = None) -> Any:
        """Wait until ``tx_hash`` is mined; :class:`TransactionPendingError` after ``timeout``."""
        limit = self.receipt_timeout if timeout is None else timeout
        # Automining nodes (embedded, anvil) have the receipt at once; real chains need polling.
        latency = 0.05 if self.kind == EMBEDDED else 0.5
        try:
            with self.guard("eth_getTransactionReceipt"):
                return self._w3.eth.wait_for_transaction_receipt(
                    cast(HexStr, tx_hash), timeout=limit, poll_latency=latency
                )
        except ChainUnavailableError as exc:
            if isinstance(exc.__cause__, TimeExhausted):
                raise TransactionPendingError(
                    f"transaction {tx_hash} was not mined within {limit:g} s", tx_hash=tx_hash
                ) from exc.__cause__
            raise

    def fund(self, address: str, value_wei: int) -> str:
        """Development nodes only: send ``value_wei`` from the node's first unlocked account.

        Embedded chains and anvil have funded, unlocked accounts; a real network has none and
        this raises :class:`ChainError`.
        """
        to = checksum_address(address)
        with self.guard("eth_accounts"):
            accounts = self._w3.eth.accounts
        if not accounts:
            raise ChainError("this node has no unlocked development account to fund from")
        with self.guard("eth_sendTransaction"):
            tx_hash = Web3.to_hex(
                self._w3.eth.send_transaction({"from": accounts[0], "to": to, "value": Wei(value_wei)})
            )
        receipt = self.wait_for_receipt(tx_hash)
        if receipt["status"] != 1:
            raise TransactionFailedError("funding transaction failed", tx_hash=tx_hash)
        return tx_hash


#: Default cap on one JSON-RPC answer (an ``eth_getLogs`` page of 2,000 blocks is far below).
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class ResponseTooSlowError(requests.RequestException):
    """The node's answer did not arrive in full within the request's total time."""


class ResponseTooLargeError(requests.RequestException):
    """The node's answer exceeds the response size cap."""


class _BoundedSession(requests.Session):
    """A session whose answers are bounded in *total* time and in size.

    ``requests``' ``timeout`` bounds each socket read, so a node (or a proxy) that trickles
    one byte a second never times out, and one that answers with gigabytes is read into
    memory whole. web3's own streaming mode reads one byte per iteration; hence this small
    reader instead of a library option.
    """

    def __init__(self, *, total_timeout: float, max_bytes: int) -> None:
        super().__init__()
        self.total_timeout = total_timeout
        self.max_bytes = max_bytes

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        deadline = time.monotonic() + self.total_timeout
        kwargs["stream"] = True
        response = super().request(method, url, *args, **kwargs)
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > self.max_bytes:
                    raise ResponseTooLargeError(f"answer larger than {self.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise ResponseTooSlowError(f"answer not complete within {self.total_timeout:g} s")
                chunks.append(chunk)
        finally:
            response.close()
        response._content = b"".join(chunks)  # what .content returns from now on
        response._content_consumed = True
        return response


def connect(
    rpc_url: str | None = None,
    *,
    timeout: float = 10.0,
    retries: int = 0,
    receipt_timeout: float = 120.0,
    expected_chain_id: int | None = None,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
) -> Chain:
    """Connect to a chain.

    ``rpc_url`` ``None`` or ``"embedded"`` starts a fresh in-process EVM; an ``http(s)://`` URL
    talks JSON-RPC to that node, each request bounded by ``timeout`` seconds in total (a node
    that trickles its answer is cut off too) and ``max_response_bytes`` in size, and retried
    ``retries`` times on connection errors. Connecting does no I/O unless
    ``expected_chain_id`` is given, in which case the node's chain id is checked at once
    (a :class:`ChainError` if it differs) -- a credential's status entry names its chain, and
    answering about another chain would be answering about a different registry.
    """
    if rpc_url is None or rpc_url == EMBEDDED:
        chain = Chain(_embedded_web3(), kind=EMBEDDED, endpoint=EMBEDDED, receipt_timeout=receipt_timeout)
    else:
        scheme = urlsplit(rpc_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported RPC URL scheme {scheme!r}: use http(s):// or {EMBEDDED!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        chain = Chain(
            Web3(_http_provider(rpc_url, timeout=timeout, retries=retries, max_response_bytes=max_response_bytes)),
            kind="rpc",
            endpoint=_redact(rpc_url),
            receipt_timeout=receipt_timeout,
            probe=HTTPProvider(
                rpc_url,
                request_kwargs={"timeout": timeout},
                session=_BoundedSession(total_timeout=timeout, max_bytes=64 * 1024),
            ),
        )
    if expected_chain_id is not None and chain.chain_id() != expected_chain_id:
        raise ChainError(
            f"{chain.endpoint} is chain {chain.chain_id()}, expected {expected_chain_id}",
            expected=expected_chain_id,
            actual=chain.chain_id(),
        )
    return chain


def _http_provider(url: str, *, timeout: float, retries: int, max_response_bytes: int) -> HTTPProvider:
    retry = ExceptionRetryConfiguration(retries=retries) if retries > 0 else None
    return HTTPProvider(
        url,
        request_kwargs={"timeout": timeout},
        session=_BoundedSession(total_timeout=timeout, max_bytes=max_response_bytes),
        exception_retry_configuration=retry,
        cache_allowed_requests=True,
        cacheable_requests={"eth_chainId"},
    )


def embedded_errors() -> tuple[type[BaseException], ...]:
    """eth-tester's exception classes (they share no base class with web3's), if installed."""
    try:
        with keep_recursion_limit():
            from eth_tester import exceptions as tester
    except ImportError:  # pragma: no cover - embedded backend not installed
        return ()
    return (
        tester.TransactionFailed,  # first: see embedded_revert_errors
        tester.BlockNotFound,
        tester.TransactionNotFound,
        tester.FilterNotFound,
        tester.ValidationError,
    )


def embedded_revert_errors() -> tuple[type[BaseException], ...]:
    """eth-tester's ``TransactionFailed``: how a revert surfaces on the embedded chain."""
    return embedded_errors()[:1]


def _embedded_web3() -> Web3:
    try:
        with keep_recursion_limit():  # py-evm raises it on import
            from eth_tester import EthereumTester, PyEVMBackend
            from web3 import EthereumTesterProvider
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ChainError(
            "the embedded chain needs eth-tester with py-evm: pip install 'vcgate[chain]'"
        ) from exc
    return Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))
