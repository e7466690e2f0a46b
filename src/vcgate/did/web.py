"""did:web: fetch the DID document over HTTPS from the host the DID names (did:web spec).

``did:web:example.com`` maps to ``https://example.com/.well-known/did.json`` and
``did:web:example.com:user:alice`` to ``https://example.com/user/alice/did.json``; a ``%3A``
in the host part encodes a port (``did:web:example.com%3A8443``).

Whoever presents a credential chooses the DID, so resolving did:web makes vcgate fetch a URL
chosen by a stranger from inside the operator's network. Every step is therefore defended;
the transport (address checks, pinning, TLS, no redirects, time budget, size cap) is
:class:`vcgate.fetch.SafeFetcher`, shared with status-list fetches:

* **Strict DID syntax.** The host must be a DNS name (compared in lower case) of at least
  two letter-digit-hyphen labels whose last label starts with a letter, with at most one
  ``%3A`` for a port and no other percent-escape. That refuses IP literals (``127.0.0.1``,
  and numeric spellings resolvers disagree about, such as ``2130706433`` or ``0x7f.1``),
  userinfo (``%40``), IPv6 brackets, trailing dots and empty labels. IP literals are refused
  on purpose: did:web names a domain, the TLS certificate is checked against that name, and
  a literal skips both. Path segments are percent-decoded (strict UTF-8) and re-encoded, and
  ``.``/``..``, ``/``, ``\\``, ``?``, ``#``, control characters and empty segments are
  refused, so a DID cannot climb out of or reshape its URL path.
* **Port 443 only, unless configured.** A DID naming another port (``example.com%3A6379``,
  ``%3A22``) would let a stranger aim vcgate at any service of a public host (Redis, SSH, an
  admin port). Such a DID is refused before any name lookup (``did_address_forbidden``, reason
  ``port_not_allowed``) unless the port is in ``allow_ports`` (environment:
  ``VCGATE_DID_WEB_PORTS``, read by :meth:`vcgate.assembly.GateConfig.from_env` and the CLI).
* **Address check before connecting (SSRF).** The host is resolved once and the fetch is
  refused if *any* address is loopback, private (RFC 1918, ``fc00::/7``), link-local,
  CGNAT ``100.64.0.0/10``, unspecified, multicast, broadcast, documentation, benchmarking,
  reserved or otherwise not global unicast, including the IPv4 address embedded in an
  IPv4-mapped, IPv4-compatible, 6to4 or NAT64 IPv6 address. Refusing when any address is bad,
  not only the first, stops a name with one public and one internal address from being
  steered to the internal one. ``allow_networks`` re-admits chosen CIDRs (tests, private
  deployments); cloud metadata endpoints, unspecified, multicast and broadcast addresses stay
  refused whatever it says, because no DID document lives there and connecting to them is the
  classic SSRF payoff.
* **Pinning.** The connection goes to exactly the address that passed the check, while TLS
  SNI, certificate verification and the ``Host`` header use the DID's host name. A second
  DNS lookup at connect time (DNS rebinding: public for the check, ``127.0.0.1`` for the
  connect) therefore cannot move the connection. Only addresses that passed the check are
  tried, in the resolver's order, falling back to the next one only when a TCP connection
  cannot be opened.
* **TLS always.** https only, certificate verification cannot be turned off (``verify`` takes
  ``True`` or a CA bundle path): a did:web document is only as trustworthy as the TLS
  connection it came over. The session does not read proxies or ``.netrc`` credentials from
  the environment, so a fetch never leaks credentials or goes around the pinning via a proxy.
* **No redirects.** A 3xx is refused: following it would fetch a second, unchecked URL.
* **Timeouts.** Name lookup, connect and each read are bounded by ``timeout``, and the body
  is abandoned once ``timeout`` has elapsed since the start (checked between reads, one socket
  read at a time), so a server that trickles its body cannot hold a verification for long.
  Known limit: while the status line and headers are read, only the per-read timeout applies
  (http.client caps them at 100 lines of 64 KiB), so a server trickling its *headers* can hold
  one resolution longer; the resolver's cache keeps that off the warm path.
* **Size cap.** A ``Content-Length`` above ``max_bytes`` is refused before reading; the body
  is read in bounded pieces and refused as soon as more than ``max_bytes`` arrive (chunked
  bodies included), so memory stays bounded whatever the server sends. Compressed bodies are
  not requested and are refused, so no decompression bomb can inflate past the cap.
* **Hostile JSON.** The body is parsed only after the cap, as strict UTF-8 JSON: duplicate
  keys (which different parsers resolve differently), ``NaN``/``Infinity``, nesting deeper
  than ``max_depth`` and any top level but an object are refused.
* **Errors.** Every failure is a :mod:`vcgate.errors` error (``raise ... from exc``; no
  ``requests``/``urllib3``/``ssl`` exception escapes). Messages end up in the gateway's
  refusal, so they never quote the response body (the other side's words) or the resolved
  address (a map of the operator's network).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote_to_bytes

import requests

from ..errors import (
    DIDDocumentInvalidError,
    DIDError,
    DIDNotFoundError,
    DIDResolutionError,
    ForbiddenAddressError,
    InvalidDIDError,
    MalformedError,
)
from ..fetch import (
    AddressForbiddenError,
    BodyTooLargeError,
    FetchError,
    HostNotFoundError,
    HTTPStatusError,
    HTTPSTarget,
    IPAddress,
    IPNetwork,
    RedirectRefusedError,
    ResolveHost,
    SafeFetcher,
    host_name_problem,
    system_resolve_host,
)
from ..strictjson import loads_strict
from .document import DID

__all__ = [
    "DID_WEB_ERRORS",
    "FetchErrorKinds",
    "PORTS_ENV",
    "WebMethod",
    "WebLocation",
    "did_web_location",
    "fetch_error",
    "parse_document",
    "parse_ports",
    "system_resolve_host",
]

#: The environment variable naming the ports besides 443 a did:web DID may name.
PORTS_ENV = "VCGATE_DID_WEB_PORTS"

_HOST_PART_RE = re.compile(r"(?P<host>[A-Za-z0-9.-]+)(?:%3[Aa](?P<port>[1-9][0-9]{0,4}))?")
_FORBIDDEN_IN_SEGMENT = frozenset("/\\?#")
_USER_AGENT = "vcgate-did-web/0.1"
_ACCEPT = "application/did+json, application/json;q=0.9"


# --- DID -> URL -----------------------------------------------------------------------------


#: Where a did:web document lives: host name (lower case), port and URL path (with
#: ``authority`` and ``url``). The same value as any https fetch target.
WebLocation = HTTPSTarget


def _invalid(did: str, why: str) -> InvalidDIDError:
    return InvalidDIDError(f"not a valid did:web ({why}): {did[:80]!r}")


def _check_host(did: str, host: str) -> str:
    host = host.lower()
    problem = host_name_problem(host)
    if problem is not None:
        raise _invalid(did, problem)
    return host


def _decode_segment(did: str, segment: str) -> str:
    if not segment:
        raise _invalid(did, "empty path segment")
    try:
        text = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(did, "path segment is not UTF-8 once percent-decoded") from exc
    if text in (".", ".."):
        raise _invalid(did, "dot segments are not allowed in the path")
    if any(ch in _FORBIDDEN_IN_SEGMENT or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise _invalid(did, "path segment contains a character that would change the URL")
    return text


def did_web_location(did: str) -> WebLocation:
    """The HTTPS location of a did:web document; raises ``InvalidDIDError`` for a bad DID.

    The host is lower-cased; path segments are percent-decoded and re-encoded.
    """
    value = DID(did)
    if value.method != "web":
        raise InvalidDIDError(f"not a did:web: {did[:80]!r}")
    host_part, *segments = value.method_specific_id.split(":")
    match = _HOST_PART_RE.fullmatch(host_part)
    if match is None:
        raise _invalid(
            value, "the host part may only hold a DNS name and a %3A-encoded port; no other escapes"
        )
    host = _check_host(value, match["host"])
    port = int(match["port"]) if match["port"] else 443
    if not 0 < port <= 65535:
        raise _invalid(value, "port out of range")
    if segments:
        path = "/" + "/".join(quote(_decode_segment(value, s), safe="") for s in segments) + "/did.json"
    else:
        path = "/.well-known/did.json"
    return WebLocation(host=host, port=port, path=path)


def parse_ports(text: str) -> tuple[int, ...]:
    """Ports from ``"8443, 9443"`` (commas and/or spaces), as :data:`PORTS_ENV` holds them."""
    ports: list[int] = []
    for item in text.replace(",", " ").split():
        if not item.isdigit() or not 0 < int(item) <= 65535:
            raise ValueError(f"{PORTS_ENV}: {item[:20]!r} is not a TCP port (1-65535)")
        ports.append(int(item))
    return tuple(ports)


# --- fetch errors -> DID errors ---------------------------------------------------------------


@dataclass(frozen=True)
class FetchErrorKinds:
    """Which error classes a failed document fetch becomes, and how messages name the source.

    did:web and issuer URLs (controller documents, :mod:`vcgate.did.controller`) share the
    fetcher and this mapping; each has its own codes.
    """

    what: str
    forbidden: type[ForbiddenAddressError]
    not_found: type[DIDNotFoundError]
    invalid: type[DIDDocumentInvalidError]
    unavailable: type[DIDResolutionError]


DID_WEB_ERRORS = FetchErrorKinds(
    "did:web", ForbiddenAddressError, DIDNotFoundError, DIDDocumentInvalidError, DIDResolutionError
)


def fetch_error(exc: FetchError, kinds: FetchErrorKinds = DID_WEB_ERRORS, location: WebLocation | None = None) -> DIDError:
    """The error (and code) for a failed fetch; messages come from the fetcher."""
    host = exc.host
    if isinstance(exc, AddressForbiddenError):
        return kinds.forbidden(exc.message, reason=exc.reason)
    if isinstance(exc, HostNotFoundError):
        return kinds.not_found(exc.message)
    if isinstance(exc, RedirectRefusedError):
        return kinds.unavailable(
            f"the {kinds.what} host {host!r} answered with a redirect (HTTP {exc.status}); "
            f"vcgate does not follow redirects for {kinds.what}"
        )
    if isinstance(exc, HTTPStatusError) and exc.status in (404, 410):
        path = location.path if location is not None else "the expected path"
        return kinds.not_found(f"the {kinds.what} host {host!r} has no document at {path} (HTTP {exc.status})")
    if isinstance(exc, BodyTooLargeError):
        return kinds.invalid(exc.message)
    # Lookup failures, connect, TLS, timeouts, other statuses, unrequested compression.
    return kinds.unavailable(exc.message)


# --- JSON -----------------------------------------------------------------------------------

def parse_document(
    body: bytes, *, max_depth: int, what: str = "the did:web document",
    invalid: type[DIDDocumentInvalidError] = DIDDocumentInvalidError,
) -> dict[str, Any]:
    """Strict JSON (no duplicate keys, NaN, deep nesting) whose top level is an object."""
    try:
        data = loads_strict(body, max_depth=max_depth, what=what)
    except MalformedError as exc:  # includes TokenTooLargeError (too deep)
        raise invalid(exc.message) from exc
    if not isinstance(data, dict):
        raise invalid(f"{what} is not a JSON object")
    return data


# --- the method -----------------------------------------------------------------------------


class WebMethod:
    """Resolves did:web over HTTPS with SSRF defences (see the module docstring).

    Keyword-only configuration:

    * ``timeout``: the time budget of one fetch, in seconds. Name lookup, connect, TLS and
      each read get at most what is left of it, and the body is abandoned once it is spent.
    * ``max_bytes``: the largest document accepted, in bytes.
    * ``max_depth``: the deepest JSON nesting accepted.
    * ``session``: the ``requests.Session`` to send with. ``WebMethod`` takes it over: it
      mounts its pinning adapter for ``https://`` and turns off ``trust_env``; pass one that
      serves nothing else. By default ``WebMethod`` creates (and :meth:`close` closes) its own.
    * ``resolve_host``: ``(host, port) -> iterable of IP addresses`` (strings or
      ``ipaddress`` objects). Defaults to :func:`system_resolve_host` with ``timeout``.
    * ``allow_networks``: CIDRs re-admitted although the checks would refuse them (loopback
      for tests, RFC 1918 for private deployments). Cannot re-admit metadata, unspecified,
      multicast or broadcast addresses.
    * ``verify``: ``True`` (requests' CA bundle, from certifi) or the path of a CA bundle file
      or directory. ``False`` is refused: without certificate verification a did:web document
      proves nothing.
    * ``allow_ports``: ports besides 443 that a DID may name (``did:web:host%3A8443``); any
      other port is refused before a name lookup (the environment's say: :data:`PORTS_ENV`).

    The transport is a :class:`vcgate.fetch.SafeFetcher` built from these settings.
    """

    name = "web"
    cacheable_forever = False
    # How the fetcher names what it fetches (subclasses fetch other documents the same way).
    _label, _document, _accept, _user_agent = "did:web host", "did:web document", _ACCEPT, _USER_AGENT
    _errors = DID_WEB_ERRORS

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        max_depth: int = 32,
        session: requests.Session | None = None,
        resolve_host: ResolveHost | None = None,
        allow_networks: Sequence[str] = (),
        verify: Literal[True] | str = True,
        allow_ports: Iterable[int] = (),
    ) -> None:
        if max_depth < 1:
            raise ValueError("max_depth must be positive")
        if isinstance(allow_ports, (str, int)):
            raise TypeError("allow_ports is a sequence of port numbers")
        ports = frozenset(allow_ports)
        if any(isinstance(p, bool) or not isinstance(p, int) or not 0 < p <= 65535 for p in ports):
            raise ValueError("allow_ports must hold TCP ports (1-65535)")
        self._ports = ports | {443}
        self._max_depth = int(max_depth)
        self._fetcher = SafeFetcher(
            timeout=timeout,
            max_bytes=max_bytes,
            session=session,
            resolve_host=resolve_host,
            allow_networks=allow_networks,
            verify=verify,
            accept=self._accept,
            user_agent=self._user_agent,
            label=self._label,
            document=self._document,
        )

    @property
    def timeout(self) -> float:
        return self._fetcher.timeout

    @property
    def max_bytes(self) -> int:
        return self._fetcher.max_bytes

    @property
    def allow_networks(self) -> tuple[IPNetwork, ...]:
        return self._fetcher.allow_networks

    @property
    def ports(self) -> frozenset[int]:
        """The ports a did:web DID may name: 443 and ``allow_ports``."""
        return self._ports

    def close(self) -> None:
        """Close the session if ``WebMethod`` created it."""
        self._fetcher.close()

    def __enter__(self) -> WebMethod:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- resolution ------------------------------------------------------------------------

    def resolve(self, did: DID) -> dict[str, Any]:
        """Fetch and return the raw JSON document of a did:web DID.

        Raises ``InvalidDIDError`` (bad did:web), ``ForbiddenAddressError`` (the host resolves
        to an address vcgate will not connect to), ``DIDNotFoundError`` (unknown host name,
        404, 410), ``DIDDocumentInvalidError`` (too large, not a JSON object, ...) or
        ``DIDResolutionError`` (anything else: TLS, timeouts, redirects, other statuses).
        """
        return self._fetch(did_web_location(did), "the did:web DID")

    def _fetch(self, location: WebLocation, named: str) -> dict[str, Any]:
        """Port check, SSRF-safe fetch and strict JSON, with this method's error codes."""
        kinds = self._errors
        if location.port not in self._ports:
            # Before any lookup: a stranger's identifier must not reach other services of a host.
            raise kinds.forbidden(
                f"{named} names port {location.port}; only 443 is allowed unless the port is "
                f"configured (allow_ports=, {PORTS_ENV})",
                reason="port_not_allowed",
            )
        try:
            body = self._fetcher.get(location.host, location.port, location.path)
        except FetchError as exc:
            raise fetch_error(exc, kinds, location) from exc
        return parse_document(body, max_depth=self._max_depth, what=f"the {self._document}", invalid=kinds.invalid)

    def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` and return its addresses if every one may be connected to.

        Raises ``ForbiddenAddressError`` if any address is forbidden.
        """
        try:
            return self._fetcher.checked_addresses(host, port)
        except FetchError as exc:
            raise fetch_error(exc, self._errors) from exc
