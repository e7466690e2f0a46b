"""W3C Bitstring Status List v1.0 (and its predecessor StatusList2021): issuing and checking.

An issuer keeps one bit per credential in a list of at least 131,072 entries, publishes the
list GZIP-compressed and base64url-encoded inside a signed *status list credential*, and
points each credential at its bit with a ``credentialStatus`` entry::

    {"id": "https://issuer.example/status/1#94567", "type": "BitstringStatusListEntry",
     "statusPurpose": "revocation", "statusListIndex": "94567",
     "statusListCredential": "https://issuer.example/status/1"}

Issuer side (pure; files only through :meth:`StatusList.save` / :meth:`StatusList.load` /
:meth:`StatusList.edit`): :class:`StatusList` -- random index allocation that never reuses
an index, set/clear bits, encode, the entry for an index, the signed list credential
(``vc+jwt``), and a JSON state file written atomically.

Verifier side: :class:`BitstringStatusMethod`, a :class:`vcgate.status.StatusMethod` for
``BitstringStatusListEntry`` and ``StatusList2021Entry``. It fetches the list credential with
:class:`vcgate.fetch.SafeFetcher` (or an injected callable), verifies it with the
:class:`vcgate.credentials.Verifier` (signature, issuer key, validity), requires it to come
from the credential's own issuer, decodes it with hard caps that hold against gzip bombs,
and keeps it in a bounded TTL cache so the request path does not wait on the network once
warm. The decisions (error codes, limits, what is accepted) are in ``docs/status-list.md``.

Bit order (both specifications): index 0 is the left-most (most significant) bit of the first
byte; an entry of ``statusSize`` bits starts at bit ``statusListIndex * statusSize``.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import json
import math
import os
import re
import secrets
import tempfile
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..credentials.jwt import issue_credential
from ..credentials.models import VerifiedCredential
from ..credentials.verifier import Verifier
from ..errors import (
    DIDResolutionError,
    ForbiddenAddressError,
    MalformedError,
    RevokedError,
    StatusListFullError,
    StatusListInvalidError,
    StatusUnavailableError,
    StatusUnsupportedError,
    SuspendedError,
    VCGateError,
)
from ..fetch import (
    AddressForbiddenError,
    BodyTooLargeError,
    EncodedBodyError,
    FetchError,
    SafeFetcher,
    URLRefusedError,
    parse_https_url,
)
from ..keys import PrivateKey, b64url_decode, b64url_encode
from ..strictjson import loads_strict
from . import StatusResult

__all__ = [
    "BitstringStatusMethod",
    "StatusList",
    "StatusEntry",
    "StatusListFullError",
    "parse_entry",
    "encode_bitstring",
    "decode_encoded_list",
    "inflate_bounded",
    "get_status",
    "MIN_ENTRIES",
    "DEFAULT_LENGTH",
    "MAX_LENGTH",
    "ENTRY_TYPE",
    "LIST_CREDENTIAL_TYPE",
    "LIST_TYPE",
    "ENTRY_TYPE_2021",
    "LIST_CREDENTIAL_TYPE_2021",
    "LIST_TYPE_2021",
    "CONTEXT_2021",
]

#: The specification's minimum list length (16 KiB of one-bit entries), for group privacy.
MIN_ENTRIES = 131_072
#: The length of a new list unless the issuer asks for more.
DEFAULT_LENGTH = MIN_ENTRIES
#: The longest list an issuer may create, in entries: 1 MiB uncompressed, which is also the
#: verifier's default cap, so every list vcgate issues is one vcgate accepts.
MAX_LENGTH = 8 * 1024 * 1024

ENTRY_TYPE = "BitstringStatusListEntry"
LIST_CREDENTIAL_TYPE = "BitstringStatusListCredential"
LIST_TYPE = "BitstringStatusList"
ENTRY_TYPE_2021 = "StatusList2021Entry"
LIST_CREDENTIAL_TYPE_2021 = "StatusList2021Credential"
LIST_TYPE_2021 = "StatusList2021"
#: The JSON-LD context of StatusList2021 (VCDM 2.0 defines the Bitstring terms itself).
CONTEXT_2021 = "https://w3id.org/vc/status-list/2021/v1"

_FAMILY_OF_ENTRY = {ENTRY_TYPE: "bitstring", ENTRY_TYPE_2021: "2021"}
_LIST_CREDENTIAL_TYPES = {"bitstring": LIST_CREDENTIAL_TYPE, "2021": LIST_CREDENTIAL_TYPE_2021}
_LIST_TYPES = {"bitstring": LIST_TYPE, "2021": LIST_TYPE_2021}

_INDEX_RE = re.compile(r"[0-9]{1,12}")
_STATUS_HEX_RE = re.compile(r"0x[0-9a-fA-F]{1,4}")
_GZIP_MAGIC = b"\x1f\x8b\x08"
#: statusSize above this is refused as unsupported: a larger entry needs 2**size messages.
_MAX_STATUS_SIZE = 8
_MAX_PURPOSE_LENGTH = 64
_ISSUER_PURPOSES = ("revocation", "suspension")
_STATE_FORMAT = "vcgate-bitstring-status-list"
_STATE_VERSION = 1
_STATE_MAX_BYTES = 4 * 1024 * 1024


# --- encoding ---------------------------------------------------------------------------------


def encode_bitstring(bits: bytes) -> str:
    """GZIP the bitstring and multibase-encode it as base64url without padding (``u...``).

    The GZIP header carries no timestamp or file name, so equal lists encode equally.
    """
    return "u" + b64url_encode(gzip.compress(bytes(bits), compresslevel=9, mtime=0))


def _invalid(message: str, **details: Any) -> StatusListInvalidError:
    return StatusListInvalidError(message, **details)


def decode_encoded_list(value: Any, *, max_bytes: int, multibase: bool = True) -> bytes:
    """Decode an ``encodedList`` into the raw bitstring, refusing more than ``max_bytes``.

    ``multibase=True`` (Bitstring Status List): the value must be ``u`` + unpadded base64url.
    ``multibase=False`` (StatusList2021): plain base64url; padding and a ``u`` prefix are
    tolerated because implementations of that draft differ.

    The GZIP stream is inflated with ``zlib.decompressobj(...).decompress(data, max_length)``,
    never with ``gzip.decompress``: at most ``max_bytes + 1`` bytes are ever produced, so a
    bomb (1 GiB of zeros in 1 MiB) costs one bounded buffer and stops at once. The encoded
    (compressed) size is capped too. Raises ``StatusListInvalidError``.
    """
    if not isinstance(value, str) or not value:
        raise _invalid("the status list's encodedList is not a string")
    # GZIP never shrinks incompressible data by more than its header, so an honest list of
    # max_bytes needs at most about max_bytes + 1 KiB compressed; base64 adds a third.
    max_chars = (max_bytes + 1024) * 4 // 3 + 8
    if len(value) > max_chars:
        raise _invalid(f"the status list's encodedList is longer than {max_chars} characters")
    if multibase:
        if value[0] != "u":
            raise _invalid("the status list's encodedList is not multibase base64url (no 'u' prefix)")
        text = value[1:]
    else:
        text = value[1:] if value.startswith("uH4sI") else value
        text = text.rstrip("=")
    try:
        compressed = b64url_decode(text)
    except MalformedError as exc:
        raise _invalid("the status list's encodedList is not valid base64url") from exc
    if not compressed.startswith(_GZIP_MAGIC):
        raise _invalid("the status list's encodedList is not GZIP-compressed")
    return inflate_bounded(compressed, max_bytes=max_bytes, wbits=16 + zlib.MAX_WBITS, what="GZIP")


def inflate_bounded(compressed: bytes, *, max_bytes: int, wbits: int, what: str) -> bytes:
    """Inflate one complete stream (``wbits``: GZIP or ZLIB wrapper) into at most ``max_bytes``.

    ``decompressobj(...).decompress(data, max_length)`` never produces more than
    ``max_bytes + 1`` bytes, so a bomb costs one bounded buffer. Shared by the Bitstring and the
    Token Status List. Raises ``StatusListInvalidError``.
    """
    inflater = zlib.decompressobj(wbits=wbits)
    try:
        bits = inflater.decompress(compressed, max_bytes + 1)
    except zlib.error as exc:
        raise _invalid(f"the status list's {what} data is corrupt") from exc
    if len(bits) > max_bytes:
        raise _invalid(f"the status list decompresses to more than {max_bytes} bytes", limit=max_bytes)
    if not inflater.eof:
        raise _invalid(f"the status list's {what} data is truncated")
    if inflater.unused_data:
        raise _invalid(f"the status list's {what} data has trailing bytes or several members")
    if not bits:
        raise _invalid("the status list is empty")
    return bits


def get_status(bits: bytes, index: int, size: int = 1) -> int:
    """The ``size``-bit value at entry ``index``; index 0 is the left-most bit of byte 0.

    Raises ``IndexError`` if the entry lies outside the bitstring.
    """
    if index < 0 or size < 1:
        raise IndexError("negative index or size")
    start = index * size
    end = start + size
    if end > len(bits) * 8:
        raise IndexError("entry outside the bitstring")
    if size == 1:
        return (bits[start >> 3] >> (7 - (start & 7))) & 1
    first, last = start >> 3, (end - 1) >> 3
    chunk = int.from_bytes(bits[first : last + 1], "big")
    return (chunk >> ((last + 1) * 8 - end)) & ((1 << size) - 1)


# --- entries ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """A parsed ``BitstringStatusListEntry`` or ``StatusList2021Entry``.

    ``messages`` maps status values to the issuer's messages (``statusMessage``), if given.
    """

    type: str
    purpose: str
    index: int
    list_url: str
    size: int = 1
    messages: Mapping[int, str] | None = None
    id: str | None = None

    @property
    def family(self) -> str:
        """``"bitstring"`` or ``"2021"``."""
        return _FAMILY_OF_ENTRY[self.type]


def _parse_messages(value: Any, size: int) -> dict[int, str]:
    if not isinstance(value, list) or len(value) != 1 << size:
        raise MalformedError(f"'statusMessage' must be a list of {1 << size} objects for a statusSize of {size}")
    out: dict[int, str] = {}
    for item in value:
        if not isinstance(item, dict):
            raise MalformedError("each 'statusMessage' element must be an object")
        status, message = item.get("status"), item.get("message")
        if not isinstance(status, str) or not _STATUS_HEX_RE.fullmatch(status):
            raise MalformedError("'statusMessage[].status' must be a hexadecimal string such as 0x1")
        if not isinstance(message, str):
            raise MalformedError("'statusMessage[].message' must be a string")
        number = int(status, 16)
        if number >= 1 << size or number in out:
            raise MalformedError("'statusMessage' has a duplicate or out-of-range status")
        out[number] = message
    return out


def parse_entry(entry: Mapping[str, Any]) -> StatusEntry:
    """Read a status entry strictly; raise ``MalformedError`` (or ``StatusUnsupportedError``).

    ``statusListIndex`` must be a base-10 string of digits (the specification); a
    non-negative JSON integer is accepted too, as some StatusList2021 issuers write one.
    """
    if not isinstance(entry, Mapping):
        raise MalformedError("a credentialStatus entry must be an object")
    type_ = entry.get("type")
    if type_ not in _FAMILY_OF_ENTRY:
        raise StatusUnsupportedError(f"not a status list entry: {str(type_)[:60]!r}")
    purpose = entry.get("statusPurpose")
    if not isinstance(purpose, str) or not purpose or len(purpose) > _MAX_PURPOSE_LENGTH:
        raise MalformedError("'statusPurpose' must be a short non-empty string")
    raw_index = entry.get("statusListIndex")
    if isinstance(raw_index, str) and _INDEX_RE.fullmatch(raw_index):
        index = int(raw_index)
    elif isinstance(raw_index, int) and not isinstance(raw_index, bool) and 0 <= raw_index < 10**12:
        index = raw_index
    else:
        raise MalformedError("'statusListIndex' must be a non-negative integer written as a base-10 string")
    url = entry.get("statusListCredential")
    if not isinstance(url, str) or not url:
        raise MalformedError("'statusListCredential' must be a URL")
    size = entry.get("statusSize", 1)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise MalformedError("'statusSize' must be a positive integer")
    if size > _MAX_STATUS_SIZE:
        raise StatusUnsupportedError(f"a statusSize above {_MAX_STATUS_SIZE} bits is not supported")
    messages = None
    if "statusMessage" in entry:
        messages = _parse_messages(entry["statusMessage"], size)
    elif size > 1:
        raise MalformedError("'statusMessage' is required when 'statusSize' is greater than 1")
    entry_id = entry.get("id")
    if entry_id is not None and not isinstance(entry_id, str):
        raise MalformedError("a credentialStatus 'id' must be a string")
    if entry_id is not None and entry_id == url:
        raise MalformedError("a status entry's 'id' must not be the status list's URL")
    return StatusEntry(
        type=type_, purpose=purpose, index=index, list_url=url, size=size, messages=messages, id=entry_id
    )


# --- issuer side ------------------------------------------------------------------------------


class StatusList:
    """An issuer's status list: one bit per credential, indices allocated at random.

    Pure: nothing here touches the network, and files only through :meth:`save`,
    :meth:`load` and :meth:`edit`. Typical CLI use::

        lst = StatusList.create("https://issuer.example/status/1")        # vcgate status create
        lst.save("status-1.json")

        with StatusList.edit("status-1.json") as lst:                       # vcgate issue
            index = lst.allocate()
        token = issue_credential(..., status=lst.entry(index))

        with StatusList.edit("status-1.json") as lst:                       # vcgate revoke
            lst.set(index)
            published = lst.to_credential(key, issuer=did, kid=kid, valid_from=now)
        # ... publish `published` at lst.url (served as application/vc+jwt)

    :param url: where the list credential will be published (the ``statusListCredential``).
    :param purpose: ``revocation`` or ``suspension``.
    :param length: number of entries: at least :data:`MIN_ENTRIES`, a multiple of 8, at most
        :data:`MAX_LENGTH`.
    """

    def __init__(self, url: str, *, purpose: str = "revocation", length: int = DEFAULT_LENGTH) -> None:
        try:
            parse_https_url(url)
        except URLRefusedError as exc:
            raise ValueError(f"the status list URL is not usable: {exc.message}") from exc
        if purpose not in _ISSUER_PURPOSES:
            raise ValueError(f"statusPurpose must be one of {', '.join(_ISSUER_PURPOSES)}")
        if isinstance(length, bool) or not isinstance(length, int):
            raise TypeError("length must be an integer")
        if length < MIN_ENTRIES:
            raise ValueError(f"a status list needs at least {MIN_ENTRIES} entries for group privacy")
        if length > MAX_LENGTH or length % 8:
            raise ValueError(f"length must be a multiple of 8 and at most {MAX_LENGTH}")
        self._url = url
        self._purpose = purpose
        self._length = length
        self._bits = bytearray(length // 8)
        self._allocated = bytearray(length // 8)
        self._allocated_count = 0

    @classmethod
    def create(cls, url: str, *, purpose: str = "revocation", length: int = DEFAULT_LENGTH) -> StatusList:
        """A new, empty list (same as the constructor; reads better at call sites)."""
        return cls(url, purpose=purpose, length=length)

    # -- properties --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def purpose(self) -> str:
        return self._purpose

    @property
    def length(self) -> int:
        return self._length

    @property
    def allocated_count(self) -> int:
        return self._allocated_count

    @property
    def free_count(self) -> int:
        return self._length - self._allocated_count

    @property
    def bits(self) -> bytes:
        """A copy of the raw bitstring (index 0 = left-most bit of byte 0)."""
        return bytes(self._bits)

    # -- allocation --------------------------------------------------------------------------

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError("an index is an integer")
        if not 0 <= index < self._length:
            raise IndexError(f"index {index} is outside the list (0..{self._length - 1})")
        return index

    def is_allocated(self, index: int) -> bool:
        index = self._check_index(index)
        return bool(get_status(self._allocated, index))

    def allocate(self) -> int:
        """Reserve a fresh index chosen uniformly at random among the free ones.

        Indices are never reused, even after a revocation; raises :class:`StatusListFullError`
        when none is left. Random rather than sequential, so an index reveals neither when a
        credential was issued nor how many were (the specification's SHOULD).
        """
        if self._allocated_count >= self._length:
            raise StatusListFullError(f"all {self._length} entries of {self._url} are allocated; create a new list")
        index = -1
        # Rejection sampling is uniform over the free indices and fast while the list has
        # room; near full, pick from an explicit list of the free ones instead.
        for _ in range(64):
            candidate = secrets.randbelow(self._length)
            if not get_status(self._allocated, candidate):
                index = candidate
                break
        if index < 0:
            index = secrets.choice(self._free_indices())
        self._allocated[index >> 3] |= 0x80 >> (index & 7)
        self._allocated_count += 1
        return index

    def _free_indices(self) -> list[int]:
        free: list[int] = []
        for byte_index, byte in enumerate(self._allocated):
            if byte != 0xFF:
                base = byte_index * 8
                free.extend(base + bit for bit in range(8) if not byte & (0x80 >> bit))
        return free

    # -- bits --------------------------------------------------------------------------------

    def get(self, index: int) -> bool:
        """Whether the bit of ``index`` is set (revoked / suspended)."""
        return bool(get_status(self._bits, self._check_index(index)))

    def set(self, index: int, value: bool = True) -> bool:
        """Set (or with ``value=False`` clear) the bit of an allocated index.

        Returns whether it changed. Clearing a revocation bit is allowed (``vcgate unrevoke``)
        although the specification calls revocation final; use a suspension list for a
        status meant to be reversible.
        """
        index = self._check_index(index)
        if not get_status(self._allocated, index):
            raise ValueError(f"index {index} was never allocated in {self._url}")
        mask = 0x80 >> (index & 7)
        before = bool(self._bits[index >> 3] & mask)
        if value:
            self._bits[index >> 3] |= mask
        else:
            self._bits[index >> 3] &= ~mask & 0xFF
        return before != bool(value)

    def clear(self, index: int) -> bool:
        """Clear the bit of an allocated index; returns whether it changed."""
        return self.set(index, False)

    def encode(self) -> str:
        """The ``encodedList``: GZIP, then multibase base64url (``u`` prefix)."""
        return encode_bitstring(self._bits)

    # -- documents ---------------------------------------------------------------------------

    def entry(self, index: int) -> dict[str, Any]:
        """The ``BitstringStatusListEntry`` for an allocated index (``credentialStatus``)."""
        index = self._check_index(index)
        if not get_status(self._allocated, index):
            raise ValueError(f"index {index} was never allocated in {self._url}")
        return {
            "id": f"{self._url}#{index}",
            "type": ENTRY_TYPE,
            "statusPurpose": self._purpose,
            "statusListIndex": str(index),
            "statusListCredential": self._url,
        }

    def to_credential(
        self,
        key: PrivateKey,
        *,
        issuer: str,
        kid: str,
        valid_from: float,
        valid_until: float | None = None,
        ttl: float | None = None,
    ) -> str:
        """The signed ``BitstringStatusListCredential`` (VCDM 2.0, ``vc+jwt``) to publish.

        ``issuer`` must be the issuer of the credentials that point at this list (vcgate's
        verifier requires it). Times are POSIX seconds. ``ttl`` (seconds, optional) becomes
        the list's ``ttl`` hint in milliseconds; verifiers cap it. ``valid_until`` bounds how
        long a copy of this list may be trusted: set it to make a stale list expire.
        """
        claims: dict[str, Any] = {
            "type": LIST_TYPE,
            "statusPurpose": self._purpose,
            "encodedList": self.encode(),
        }
        if ttl is not None:
            if not ttl >= 0 or math.isinf(ttl):
                raise ValueError("ttl must be a non-negative number of seconds")
            claims["ttl"] = int(ttl * 1000)
        return issue_credential(
            key,
            issuer=issuer,
            kid=kid,
            subject=f"{self._url}#list",
            types=[LIST_CREDENTIAL_TYPE],
            claims=claims,
            valid_from=valid_from,
            valid_until=valid_until,
            credential_id=self._url,
        )

    # -- state file --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The state as JSON: metadata, the bits and the allocation map (both encoded)."""
        return {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "url": self._url,
            "statusPurpose": self._purpose,
            "length": self._length,
            "allocatedCount": self._allocated_count,
            "encodedList": encode_bitstring(self._bits),
            "allocated": encode_bitstring(self._allocated),
        }

    @classmethod
    def from_json(cls, data: Any) -> StatusList:
        """Rebuild a list from :meth:`to_json`; raise ``MalformedError`` if it is inconsistent."""
        if not isinstance(data, dict) or data.get("format") != _STATE_FORMAT:
            raise MalformedError("not a vcgate status list state file")
        if data.get("version") != _STATE_VERSION:
            raise MalformedError(f"unsupported status list state version {data.get('version')!r}")
        length = data.get("length")
        try:
            lst = cls(data.get("url"), purpose=data.get("statusPurpose"), length=length)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise MalformedError(f"invalid status list state: {exc}") from exc
        nbytes = lst._length // 8
        try:
            bits = decode_encoded_list(data.get("encodedList"), max_bytes=nbytes)
            allocated = decode_encoded_list(data.get("allocated"), max_bytes=nbytes)
        except StatusListInvalidError as exc:
            raise MalformedError(f"invalid status list state: {exc.message}") from exc
        if len(bits) != nbytes or len(allocated) != nbytes:
            raise MalformedError("invalid status list state: the bitstrings do not match the length")
        if any(b & ~a & 0xFF for b, a in zip(bits, allocated)):
            raise MalformedError("invalid status list state: a bit is set at an index never allocated")
        count = int.from_bytes(allocated, "big").bit_count()
        if data.get("allocatedCount") != count:
            raise MalformedError("invalid status list state: allocatedCount does not match the allocation map")
        lst._bits[:] = bits
        lst._allocated[:] = allocated
        lst._allocated_count = count
        return lst

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the state file atomically (temporary file, fsync, rename), mode 0600."""
        target = Path(path)
        data = (json.dumps(self.to_json(), indent=2) + "\n").encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename durable where the OS allows it
            dir_fd = os.open(target.parent or ".", os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> StatusList:
        """Read a state file written by :meth:`save`."""
        with open(path, "rb") as fh:
            raw = fh.read(_STATE_MAX_BYTES + 1)
        if len(raw) > _STATE_MAX_BYTES:
            raise MalformedError(f"{path}: the status list state file is too large")
        try:
            return cls.from_json(loads_strict(raw, what="the status list state file"))
        except MalformedError as exc:
            raise MalformedError(f"{path}: {exc.message}") from exc

    @classmethod
    @contextlib.contextmanager
    def edit(cls, path: str | os.PathLike[str]) -> Iterator[StatusList]:
        """Load, yield and (if the block succeeds) save, holding an exclusive lock.

        The lock (``flock`` on ``<path>.lock``, POSIX only) serialises concurrent CLI runs so
        two ``vcgate issue`` cannot allocate from, or save over, the same old state.
        """
        target = Path(path)
        lock_path = target.with_name(target.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
                fcntl = None  # type: ignore[assignment]
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            lst = cls.load(target)
            yield lst
            lst.save(target)
        finally:
            os.close(fd)  # closing releases the flock


# --- verifier side ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _List:
    """A fetched, verified, decoded status list as cached."""

    url: str
    issuer: str
    family: str
    purposes: frozenset[str]
    bits: bytes
    fetched_at: float
    expires_at: float  # refetch after this
    hard_until: float  # never use after this (the list credential's validUntil)
    valid_from: float | None
    size: int = 1  # bits per status (Token Status List: 1, 2, 4 or 8)


@dataclass(frozen=True, slots=True)
class _Failure:
    until: float
    error: VCGateError


def _again(error: VCGateError) -> VCGateError:
    """A fresh exception equal to ``error`` (raising one instance twice chains tracebacks)."""
    return type(error)(error.message, **error.details)


class BitstringStatusMethod:
    """Checks ``BitstringStatusListEntry`` and ``StatusList2021Entry`` status entries.

    :param verifier: verifies the list credentials (its resolver, algorithms, contexts and
        clock). Its token size limit is raised to ``max_list_bytes`` for list credentials.
    :param fetch: ``url -> bytes``, the raw list credential. Default: a
        :class:`vcgate.fetch.SafeFetcher` (https only, SSRF checks, ``timeout``,
        ``max_list_bytes``). It may raise :class:`vcgate.fetch.FetchError`,
        ``StatusUnavailableError`` or ``StatusListInvalidError``; anything else counts as
        ``status_unavailable``.
    :param clock: POSIX seconds; defaults to the verifier's clock.
    :param default_ttl: seconds a list is cached when it names no ``ttl``.
    :param min_ttl: / ``max_ttl``: bounds on any ``ttl`` the list names (a list cannot make
        the gateway refetch in a tight loop, nor pin itself for a week).
    :param stale_grace: seconds past expiry a cached list may still answer while refetching
        fails with ``status_unavailable`` -- never past the list's ``validUntil``.
    :param retry_after: seconds a failed fetch is remembered, so a dead or hostile list host
        costs one fetch per interval rather than one per request.
    :param max_list_bytes: cap on the fetched list credential (the compressed size).
    :param max_bitstring_bytes: cap on the decompressed bitstring (default 1 MiB, 8,388,608
        one-bit entries).
    :param min_entries: the smallest list accepted, in entries (the specification's 131,072
        unless an ecosystem sets a lower bound).
    :param max_cached: / ``max_cache_bytes``: bounds on the cache (LRU eviction).
    """

    types: tuple[str, ...] = (ENTRY_TYPE, ENTRY_TYPE_2021)
    #: What the default fetcher asks for (a subclass for another list format changes it).
    accept: str = "application/vc+jwt, application/jwt;q=0.9, */*;q=0.1"

    def __init__(
        self,
        *,
        verifier: Verifier,
        fetch: Callable[[str], bytes] | None = None,
        clock: Callable[[], float] | None = None,
        timeout: float = 5.0,
        default_ttl: float = 60.0,
        min_ttl: float = 5.0,
        max_ttl: float = 3600.0,
        stale_grace: float = 300.0,
        retry_after: float = 5.0,
        max_list_bytes: int = 256 * 1024,
        max_bitstring_bytes: int = MAX_LENGTH // 8,
        min_entries: int = MIN_ENTRIES,
        max_cached: int = 1024,
        max_cache_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if not 0 < min_ttl <= default_ttl <= max_ttl:
            raise ValueError("need 0 < min_ttl <= default_ttl <= max_ttl")
        if stale_grace < 0 or retry_after < 0:
            raise ValueError("stale_grace and retry_after must not be negative")
        if max_list_bytes < 1 or max_bitstring_bytes < 1 or min_entries < 1 or max_cached < 1:
            raise ValueError("limits must be positive")
        # List credentials are larger than the tokens the verifier is tuned for; a shallow
        # copy shares its resolver (and so its DID cache) but not its size limit.
        list_verifier = copy.copy(verifier)
        list_verifier.max_token_bytes = max(verifier.max_token_bytes, max_list_bytes)
        self._verifier = list_verifier
        self._owned_fetcher: SafeFetcher | None = None
        if fetch is None:
            self._owned_fetcher = SafeFetcher(
                timeout=timeout,
                max_bytes=max_list_bytes,
                accept=self.accept,
                label="status list host",
                document="status list",
            )
            fetch = self._owned_fetcher.fetch
        self._fetch = fetch
        self._clock = clock if clock is not None else verifier.clock
        self.default_ttl = float(default_ttl)
        self.min_ttl = float(min_ttl)
        self.max_ttl = float(max_ttl)
        self.stale_grace = float(stale_grace)
        self.retry_after = float(retry_after)
        self.max_list_bytes = int(max_list_bytes)
        self.max_bitstring_bytes = int(max_bitstring_bytes)
        self.min_entries = int(min_entries)
        self.max_cached = int(max_cached)
        self.max_cache_bytes = int(max_cache_bytes)
        self._cache: OrderedDict[str, _List] = OrderedDict()
        self._cache_bytes = 0
        self._failures: OrderedDict[str, _Failure] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[str, list[Any]] = {}

    def close(self) -> None:
        """Close the fetcher this method created (not an injected one)."""
        if self._owned_fetcher is not None:
            self._owned_fetcher.close()

    def __enter__(self) -> BitstringStatusMethod:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the StatusMethod protocol -----------------------------------------------------------

    def check(self, credential: VerifiedCredential, entry: Mapping[str, Any]) -> StatusResult:
        """Check one entry of a verified credential against its issuer's status list.

        Returns a :class:`StatusResult` when the entry's status is 0 (or its purpose does not
        invalidate, ``refresh``); raises ``RevokedError`` (``revoked``), ``SuspendedError``
        (``suspended``), ``StatusUnsupportedError`` (a non-zero ``message`` or unknown
        purpose), ``StatusListInvalidError`` (``status_list_invalid``),
        ``StatusUnavailableError`` (``status_unavailable``) or ``MalformedError``.
        """
        parsed = parse_entry(entry)
        try:
            parse_https_url(parsed.list_url)
        except URLRefusedError as exc:
            raise _invalid(f"the status list URL is refused: {exc.message}") from exc
        lst = self._get_list(parsed.list_url)
        if lst.issuer != credential.issuer:
            raise _invalid("the status list is not issued by the credential's issuer")
        if lst.family != parsed.family:
            raise _invalid(
                f"a {parsed.type} must point at a {_LIST_CREDENTIAL_TYPES[parsed.family]}, "
                f"not a {_LIST_CREDENTIAL_TYPES[lst.family]}"
            )
        if parsed.purpose not in lst.purposes:
            raise _invalid(f"the status list's statusPurpose does not include {parsed.purpose!r}")
        nbits = len(lst.bits) * 8
        if nbits // parsed.size < self.min_entries:
            raise _invalid(
                f"the status list has {nbits // parsed.size} entries, fewer than the {self.min_entries} "
                "required for group privacy"
            )
        try:
            value = get_status(lst.bits, parsed.index, parsed.size)
        except IndexError as exc:
            raise _invalid(f"statusListIndex {parsed.index} is outside the status list") from exc
        result = StatusResult(type=parsed.type, purpose=parsed.purpose, source=parsed.list_url, as_of=lst.fetched_at)
        if value == 0 or parsed.purpose == "refresh":
            return result
        if parsed.purpose == "revocation":
            raise RevokedError(value=f"{value:#x}")
        if parsed.purpose == "suspension":
            raise SuspendedError(value=f"{value:#x}")
        # 'message' and unknown purposes: vcgate cannot tell what a non-zero status means for
        # access, so it fails closed (the spec's validation result is valid=false).
        raise StatusUnsupportedError(
            f"the credential's {parsed.purpose!r} status is {value:#x}; vcgate accepts only status 0 "
            "for this purpose",
            value=f"{value:#x}",
        )

    # -- cache -------------------------------------------------------------------------------

    def cached(self, url: str) -> tuple[float, float] | None:
        """``(fetched_at, expires_at)`` of the cached list at ``url``, if any (for metrics)."""
        with self._lock:
            hit = self._cache.get(url)
        return None if hit is None else (hit.fetched_at, hit.expires_at)

    def invalidate(self, url: str | None = None) -> None:
        """Forget one cached list (and its remembered failure), or everything."""
        with self._lock:
            if url is None:
                self._cache.clear()
                self._failures.clear()
                self._cache_bytes = 0
                return
            old = self._cache.pop(url, None)
            if old is not None:
                self._cache_bytes -= len(old.bits)
            self._failures.pop(url, None)

    def _usable_stale(self, hit: _List | None, now: float) -> bool:
        return hit is not None and now < min(hit.expires_at + self.stale_grace, hit.hard_until)

    def _lookup(self, url: str, now: float) -> tuple[_List | None, _Failure | None]:
        with self._lock:
            hit = self._cache.get(url)
            if hit is not None:
                self._cache.move_to_end(url)
            failure = self._failures.get(url)
            if failure is not None and now >= failure.until:
                del self._failures[url]
                failure = None
        return hit, failure

    @contextlib.contextmanager
    def _single_flight(self, url: str) -> Iterator[None]:
        """One fetch per URL at a time; the others wait for it and then read the cache."""
        with self._lock:
            slot = self._inflight.get(url)
            if slot is None:
                slot = self._inflight[url] = [threading.Lock(), 0]
            slot[1] += 1
        try:
            with slot[0]:
                yield
        finally:
            with self._lock:
                slot[1] -= 1
                if slot[1] == 0:
                    del self._inflight[url]

    def _get_list(self, url: str) -> _List:
        now = self._clock()
        hit, failure = self._lookup(url, now)
        if hit is not None and now < hit.expires_at:
            return hit
        if failure is not None:
            if isinstance(failure.error, StatusUnavailableError) and self._usable_stale(hit, now):
                return hit  # type: ignore[return-value]
            raise _again(failure.error)
        with self._single_flight(url):
            now = self._clock()
            hit, failure = self._lookup(url, now)
            if hit is not None and now < hit.expires_at:
                return hit  # another thread refreshed it
            if failure is not None:
                if isinstance(failure.error, StatusUnavailableError) and self._usable_stale(hit, now):
                    return hit  # type: ignore[return-value]
                raise _again(failure.error)
            try:
                fresh = self._load(url, now, hit)
            except (StatusUnavailableError, StatusListInvalidError) as exc:
                with self._lock:
                    self._failures[url] = _Failure(now + self.retry_after, exc)
                    self._failures.move_to_end(url)
                    while len(self._failures) > self.max_cached:
                        self._failures.popitem(last=False)
                if isinstance(exc, StatusUnavailableError) and self._usable_stale(hit, now):
                    return hit  # type: ignore[return-value]
                raise
            self._store(fresh)
            return fresh

    def _store(self, fresh: _List) -> None:
        with self._lock:
            old = self._cache.pop(fresh.url, None)
            if old is not None:
                self._cache_bytes -= len(old.bits)
            self._cache[fresh.url] = fresh
            self._cache_bytes += len(fresh.bits)
            while self._cache and (len(self._cache) > self.max_cached or self._cache_bytes > self.max_cache_bytes):
                _, evicted = self._cache.popitem(last=False)
                self._cache_bytes -= len(evicted.bits)

    # -- fetch, verify, decode ---------------------------------------------------------------

    def _download(self, url: str) -> bytes:
        try:
            body = self._fetch(url)
        except (StatusUnavailableError, StatusListInvalidError):
            raise
        except (AddressForbiddenError, URLRefusedError) as exc:
            # Not transient: retrying will not make the address acceptable.
            raise _invalid(f"the status list cannot be fetched: {exc.message}", cause="forbidden_address") from exc
        except (BodyTooLargeError, EncodedBodyError) as exc:
            raise _invalid(exc.message) from exc
        except FetchError as exc:
            raise StatusUnavailableError(f"the status list could not be fetched: {exc.message}") from exc
        except Exception as exc:  # an injected fetcher's failure is still a retrieval failure
            raise StatusUnavailableError(f"the status list could not be fetched ({type(exc).__name__})") from exc
        if not isinstance(body, (bytes, bytearray)):
            raise StatusUnavailableError("the status list fetcher returned no bytes")
        if len(body) > self.max_list_bytes:
            raise _invalid(f"the status list is larger than {self.max_list_bytes} bytes", limit=self.max_list_bytes)
        return bytes(body)

    @staticmethod
    def _token_text(body: bytes) -> str:
        token = body.strip()
        if token.startswith(b"{"):
            raise _invalid(
                "the status list is a JSON document; vcgate accepts status lists secured as "
                "JWTs (vc+jwt, VC-JWT or statuslist+jwt), not embedded proofs"
            )
        try:
            return token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise _invalid("the status list is not a compact JWT") from exc

    def _verify(self, body: bytes) -> VerifiedCredential:
        text = self._token_text(body)
        return self._mapped(lambda: self._verifier.verify_credential(text))

    @staticmethod
    def _mapped(verify: Callable[[], Any]) -> Any:
        """Run a list token's verification; map its errors to the status codes."""
        try:
            return verify()
        except ForbiddenAddressError as exc:
            raise _invalid(f"the status list's issuer key cannot be fetched: {exc.message}", cause=exc.code) from exc
        except DIDResolutionError as exc:
            raise StatusUnavailableError(
                f"the status list issuer's DID could not be resolved: {exc.message}", cause=exc.code
            ) from exc
        except VCGateError as exc:
            raise _invalid(f"the status list credential is not valid: {exc.message}", cause=exc.code) from exc

    def _load(self, url: str, now: float, previous: _List | None) -> _List:
        fresh = self._decode(url, now, self._download(url))
        if (
            previous is not None
            and previous.valid_from is not None
            and fresh.valid_from is not None
            and fresh.valid_from < previous.valid_from
            and now < previous.hard_until
        ):
            # An older copy (a lagging CDN edge, a replay): the newer list already seen stays
            # authoritative; look again soon.
            return replace(previous, expires_at=min(now + self.min_ttl, previous.hard_until))
        return fresh

    def _decode(self, url: str, now: float, body: bytes) -> _List:
        """Verify and decode a downloaded list credential (a subclass decodes its own format)."""
        vc = self._verify(body)
        family = next((f for f, t in _LIST_CREDENTIAL_TYPES.items() if t in vc.types), None)
        if family is None:
            raise _invalid(f"the credential at the status list URL is neither a {LIST_CREDENTIAL_TYPE} nor a "
                           f"{LIST_CREDENTIAL_TYPE_2021}")
        if vc.id is not None and vc.id != url:
            raise _invalid("the status list credential's id is not the URL it was fetched from")
        subject = vc.claims
        subject_type = subject.get("type")
        wanted = _LIST_TYPES[family]
        if subject_type != wanted and not (isinstance(subject_type, list) and wanted in subject_type):
            raise _invalid(f"the status list's credentialSubject.type is not {wanted}")
        raw_purposes = subject.get("statusPurpose")
        purposes = [raw_purposes] if isinstance(raw_purposes, str) else raw_purposes
        if not isinstance(purposes, list) or not purposes or not all(isinstance(p, str) and p for p in purposes):
            raise _invalid("the status list's statusPurpose must be one or more strings")
        bits = decode_encoded_list(
            subject.get("encodedList"), max_bytes=self.max_bitstring_bytes, multibase=family == "bitstring"
        )
        ttl = self.default_ttl
        if family == "bitstring" and "ttl" in subject:
            hint = subject["ttl"]
            if isinstance(hint, bool) or not isinstance(hint, (int, float)) or not 0 <= hint < 1e15:
                raise _invalid("the status list's ttl must be a non-negative number of milliseconds")
            ttl = hint / 1000.0
        ttl = min(max(ttl, self.min_ttl), self.max_ttl)
        hard_until = vc.valid_until if vc.valid_until is not None else math.inf
        return _List(
            url=url,
            issuer=vc.issuer,
            family=family,
            purposes=frozenset(purposes),
            bits=bits,
            fetched_at=now,
            expires_at=min(now + ttl, hard_until),
            hard_until=hard_until,
            valid_from=vc.valid_from,
        )
