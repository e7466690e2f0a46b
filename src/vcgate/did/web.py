"""did:web: fetch the DID document over HTTPS from the host the DID names (did:web spec).

``did:web:example.com`` maps to ``https://example.com/.well-known/did.json`` and
``did:web:example.com:user:alice`` to ``https://example.com/user/alice/did.json``; a ``%3A``
in the host part encodes a port (``did:web:example.com%3A8443``).

Whoever presents a credential chooses the DID, so resolving did:web makes vcgate fetch a URL
chosen by a stranger from inside the operator's network. Every step is therefore defended:

* **Strict DID syntax.** The host must be a DNS name (compared in lower case) of at least
  two letter-digit-hyphen labels whose last label starts with a letter, with at most one
  ``%3A`` for a port and no other percent-escape. That refuses IP literals (``127.0.0.1``,
  and numeric spellings resolvers disagree about, such as ``2130706433`` or ``0x7f.1``),
  userinfo (``%40``), IPv6 brackets, trailing dots and empty labels. IP literals are refused
  on purpose: did:web names a domain, the TLS certificate is checked against that name, and
  a literal skips both. Path segments are percent-decoded (strict UTF-8) and re-encoded, and
  ``.``/``..``, ``/``, ``\\``, ``?``, ``#``, control characters and empty segments are
  refused, so a DID cannot climb out of or reshape its URL path.
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

import ipaddress
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote_to_bytes

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from ..errors import (
    MalformedError,
    DIDDocumentInvalidError,
    DIDError,
    DIDNotFoundError,
    DIDResolutionError,
    ForbiddenAddressError,
    InvalidDIDError,
)
from ..strictjson import loads_strict
from .document import DID

__all__ = ["WebMethod", "WebLocation", "did_web_location", "system_resolve_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``resolve_host(host, port) -> addresses``: like ``socket.getaddrinfo`` but returning IPs.
ResolveHost = Callable[[str, int], Iterable[Any]]

_MAX_HOST_LENGTH = 253
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TLD_RE = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HOST_PART_RE = re.compile(r"(?P<host>[A-Za-z0-9.-]+)(?:%3[Aa](?P<port>[1-9][0-9]{0,4}))?")
_FORBIDDEN_IN_SEGMENT = frozenset("/\\?#")
_MAX_CONNECT_ATTEMPTS = 3
_READ_CHUNK = 64 * 1024
_USER_AGENT = "vcgate-did-web/0.1"

# Unspecified and multicast addresses, broadcast and cloud metadata endpoints: refused even
# when allow_networks covers them (see the module docstring).
_HARD_FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("169.254.169.254/32", "cloud metadata endpoint"),  # AWS, GCP, Azure, OpenStack, OCI
    ("169.254.170.2/32", "cloud metadata endpoint"),  # AWS ECS task metadata
    ("100.100.100.200/32", "cloud metadata endpoint"),  # Alibaba Cloud
    ("168.63.129.16/32", "cloud metadata endpoint"),  # Azure WireServer (a public address)
    ("192.0.0.192/32", "cloud metadata endpoint"),  # Oracle Cloud (legacy)
    ("fd00:ec2::254/128", "cloud metadata endpoint"),  # AWS IPv6
    ("0.0.0.0/32", "unspecified address"),
    ("::/128", "unspecified address"),
    ("255.255.255.255/32", "broadcast address"),
    ("224.0.0.0/4", "multicast address"),
    ("ff00::/8", "multicast address"),
)

# IANA special-purpose registries (IPv4, IPv6) plus the IPv6 space outside global unicast;
# allow_networks may re-admit these.
_SOFT_FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network' address"),
    ("10.0.0.0/8", "private network"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback address"),
    ("169.254.0.0/16", "link-local address"),
    ("172.16.0.0/12", "private network"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation address"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private network"),
    ("198.18.0.0/15", "benchmarking address"),
    ("198.51.100.0/24", "documentation address"),
    ("203.0.113.0/24", "documentation address"),
    ("240.0.0.0/4", "reserved address"),
    ("::1/128", "loopback address"),
    ("::/96", "IPv4-compatible address (deprecated)"),
    ("::ffff:0:0:0/96", "IPv4-translated address"),
    ("64:ff9b:1::/48", "local-use NAT64 address"),
    ("100::/64", "discard-only address"),
    ("2001::/23", "IETF protocol assignment"),
    ("2001:db8::/32", "documentation address"),
    ("3fff::/20", "documentation address"),
    ("5f00::/16", "SRv6 SID address"),
    ("fc00::/7", "unique local address (private network)"),
    ("fe80::/10", "link-local address"),
    ("fec0::/10", "site-local address (deprecated)"),
)

_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")


def _table(rows: tuple[tuple[str, str], ...]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), reason) for cidr, reason in rows)


_HARD = _table(_HARD_FORBIDDEN)
_SOFT = _table(_SOFT_FORBIDDEN)


# --- DID -> URL -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebLocation:
    """Where a did:web document lives: host name (lower case), port and URL path."""

    host: str
    port: int
    path: str

    @property
    def authority(self) -> str:
        """``host`` or ``host:port`` (the default port 443 is left out), as in the Host header."""
        return self.host if self.port == 443 else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.authority}{self.path}"


def _invalid(did: str, why: str) -> InvalidDIDError:
    return InvalidDIDError(f"not a valid did:web ({why}): {did[:80]!r}")


def _check_host(did: str, host: str) -> str:
    host = host.lower()
    if len(host) > _MAX_HOST_LENGTH:
        raise _invalid(did, "host name too long")
    labels = host.split(".")
    if len(labels) < 2:
        raise _invalid(did, "the host must be a fully qualified domain name")
    for label in labels:
        if not label:
            raise _invalid(did, "empty label in the host name")
        if not _LABEL_RE.fullmatch(label):
            raise _invalid(did, "the host name has an invalid label")
    if not _TLD_RE.fullmatch(labels[-1]):
        # A numeric last label means an IP address literal (or a numeric spelling of one).
        raise _invalid(did, "IP address literals are not accepted as did:web hosts")
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


# --- address checks -------------------------------------------------------------------------


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip in _NAT64_WKP:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    return None


def _own_reason(ip: IPAddress) -> tuple[str, bool] | None:
    """Why ``ip`` itself (ignoring embedded addresses) is forbidden, and whether for good."""
    for net, reason in _HARD:
        if ip.version == net.version and ip in net:
            return reason, True
    for net, reason in _SOFT:
        if ip.version == net.version and ip in net:
            return reason, False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_WKP or ip in _SIX_TO_FOUR:
            return None  # judged by the IPv4 address inside
        if ip not in _GLOBAL_UNICAST_V6:
            return "reserved address", False
    if not ip.is_global:  # whatever this Python's registry knows beyond the tables above
        return "address that is not globally routable", False
    return None


def _canonical(raw: Any) -> IPAddress:
    ip = ipaddress.ip_address(str(raw))
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped  # the socket would talk IPv4 to it anyway
    return ip


def system_resolve_host(host: str, port: int, *, timeout: float) -> list[str]:
    """The default ``resolve_host``: ``socket.getaddrinfo`` for TCP, bounded by ``timeout``.

    ``getaddrinfo`` has no timeout of its own, so it runs in a daemon thread that is
    abandoned (and finishes on its own) if it takes longer than ``timeout``.
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["infos"] = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_ADDRCONFIG
            )
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="vcgate-did-web-dns", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"name lookup took longer than {timeout}s")
    if "error" in box:
        raise box["error"]
    return [info[4][0] for info in box["infos"]]


# --- transport ------------------------------------------------------------------------------


class _PinnedHTTPSAdapter(HTTPAdapter):
    """Sends to the address in the URL, with TLS SNI and certificate checks for the Host name.

    ``WebMethod`` puts the checked IP in the URL and the DID's host name in the ``Host``
    header; this adapter makes urllib3 use that name as ``server_hostname`` (SNI, and the
    name the certificate is verified against). Requests without a Host header are refused,
    so nothing unpinned goes through it.
    """

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        authority = request.headers.get("Host")
        if not authority or host_params.get("scheme") != "https":
            raise ValueError("vcgate's did:web adapter only sends pinned https requests")
        name = re.sub(r":[0-9]+\Z", "", authority)
        pool_kwargs["server_hostname"] = name
        # A name in assert_hostname would switch urllib3 to its own matcher; keep OpenSSL's.
        pool_kwargs.pop("assert_hostname", None)
        return host_params, pool_kwargs


def _connect_failed(exc: requests.RequestException) -> bool:
    """True when no TCP connection was made, so trying another checked address is safe."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and exc.args:
        reason = getattr(exc.args[0], "reason", None)
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


# --- JSON -----------------------------------------------------------------------------------

def _parse_document(body: bytes, *, max_depth: int) -> dict[str, Any]:
    try:
        data = loads_strict(body, max_depth=max_depth, what="the did:web document")
    except MalformedError as exc:  # includes TokenTooLargeError (too deep)
        raise DIDDocumentInvalidError(exc.message) from exc
    if not isinstance(data, dict):
        raise DIDDocumentInvalidError("the did:web document is not a JSON object")
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
    """

    name = "web"
    cacheable_forever = False

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
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if max_depth < 1:
            raise ValueError("max_depth must be positive")
        if verify is not True and not (isinstance(verify, str) and verify):
            raise ValueError("verify must be True or the path of a CA bundle; did:web needs verified TLS")
        if isinstance(verify, str) and not os.path.exists(verify):
            raise ValueError(f"the CA bundle {verify!r} does not exist")
        if isinstance(allow_networks, str):
            raise TypeError("allow_networks is a sequence of CIDR strings, not one string")
        self._timeout = float(timeout)
        self._max_bytes = int(max_bytes)
        self._max_depth = int(max_depth)
        self._verify: bool | str = verify
        self._allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n, strict=True) for n in allow_networks)
        self._resolve_host = resolve_host
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        # Environment proxies would carry the request around the pinned address, and .netrc
        # would hand credentials to whatever host a DID names.
        self._session.trust_env = False
        self._session.mount("https://", _PinnedHTTPSAdapter(max_retries=0))
        self._session.mount("http://", _PinnedHTTPSAdapter(max_retries=0))  # refuses: https only

    @property
    def timeout(self) -> float:
        return self._timeout

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def allow_networks(self) -> tuple[IPNetwork, ...]:
        return self._allow

    def close(self) -> None:
        """Close the session if ``WebMethod`` created it."""
        if self._owns_session:
            self._session.close()

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
        location = did_web_location(did)
        deadline = time.monotonic() + self._timeout
        addresses = self.checked_addresses(location.host, location.port)
        body = self._fetch(location, addresses, deadline)
        return _parse_document(body, max_depth=self._max_depth)

    def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` and return its addresses if every one may be connected to.

        Raises ``ForbiddenAddressError`` if any address is forbidden.
        """
        try:
            if self._resolve_host is None:
                raw = system_resolve_host(host, port, timeout=self._timeout)
            else:
                raw = list(self._resolve_host(host, port))
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                raise DIDNotFoundError(f"the did:web host {host!r} does not exist") from exc
            raise DIDResolutionError(f"the did:web host {host!r} could not be looked up") from exc
        except TimeoutError as exc:
            raise DIDResolutionError(f"looking up the did:web host {host!r} timed out") from exc
        except Exception as exc:  # an injected resolver's failure is still a lookup failure
            raise DIDResolutionError(f"the did:web host {host!r} could not be looked up") from exc
        addresses: list[IPAddress] = []
        for item in raw:
            try:
                ip = _canonical(item)
            except ValueError as exc:
                raise DIDResolutionError(f"the lookup of {host!r} returned an unusable address") from exc
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise DIDResolutionError(f"the did:web host {host!r} has no address")
        for ip in addresses:
            self._check_address(host, ip)
        return addresses

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self._allow)

    def _check_address(self, host: str, ip: IPAddress) -> None:
        views: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.scope_id:
                # Scoped (zone) addresses only exist on a local link.
                raise ForbiddenAddressError(
                    f"the did:web host {host!r} resolves to a forbidden address (scoped IPv6 address); "
                    "vcgate does not connect to it"
                )
            inner = _embedded_ipv4(ip)
            if inner is not None:
                views.append(inner)
        for view in views:
            verdict = _own_reason(view)
            if verdict is None:
                continue
            reason, hard = verdict
            if hard or not self._allowed(view):
                # The address itself stays out of the message: it maps the operator's network.
                raise ForbiddenAddressError(
                    f"the did:web host {host!r} resolves to a forbidden address ({reason}); "
                    "vcgate does not connect to it"
                )

    # -- HTTP ------------------------------------------------------------------------------

    def _remaining(self, host: str, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DIDResolutionError(f"fetching the did:web document from {host!r} timed out")
        return min(left, self._timeout)

    def _send(self, location: WebLocation, ip: IPAddress, deadline: float) -> requests.Response:
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        request = requests.Request(
            "GET",
            f"https://{literal}:{location.port}{location.path}",
            headers={
                "Host": location.authority,
                "Accept": "application/did+json, application/json;q=0.9",
                "Accept-Encoding": "identity",
                "User-Agent": _USER_AGENT,
            },
        ).prepare()
        left = self._remaining(location.host, deadline)
        return self._session.send(
            request,
            stream=True,
            timeout=(left, left),
            verify=self._verify,
            cert=None,
            proxies={},
            allow_redirects=False,
        )

    def _fetch(self, location: WebLocation, addresses: list[IPAddress], deadline: float) -> bytes:
        host = location.host
        response: requests.Response | None = None
        last: Exception | None = None
        try:
            for ip in addresses[:_MAX_CONNECT_ATTEMPTS]:
                try:
                    response = self._send(location, ip, deadline)
                    break
                except requests.RequestException as exc:
                    if not _connect_failed(exc):
                        raise
                    last = exc
            if response is None:
                raise DIDResolutionError(f"could not connect to the did:web host {host!r}") from last
            with response:
                return self._read_body(location, response, deadline)
        except DIDError:
            raise
        except requests.exceptions.SSLError as exc:
            raise DIDResolutionError(
                f"TLS with the did:web host {host!r} failed (handshake or certificate verification)"
            ) from exc
        except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as exc:
            raise DIDResolutionError(f"fetching the did:web document from {host!r} timed out") from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise DIDResolutionError(
                f"fetching the did:web document from {host!r} failed ({type(exc).__name__})"
            ) from exc

    def _read_body(self, location: WebLocation, response: requests.Response, deadline: float) -> bytes:
        host = location.host
        status = response.status_code
        if 300 <= status < 400:
            raise DIDResolutionError(
                f"the did:web host {host!r} answered with a redirect (HTTP {status}); "
                "vcgate does not follow redirects for did:web"
            )
        if status in (404, 410):
            raise DIDNotFoundError(f"the did:web host {host!r} has no document at {location.path} (HTTP {status})")
        if status != 200:
            raise DIDResolutionError(f"the did:web host {host!r} answered HTTP {status}")
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise DIDResolutionError(f"the did:web host {host!r} sent a compressed body, which vcgate did not ask for")
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self._max_bytes:
            raise DIDDocumentInvalidError(f"the did:web document is larger than {self._max_bytes} bytes")
        raw = response.raw
        body = bytearray()
        while True:
            self._remaining(host, deadline)
            # read1: at most one socket read, so a trickling server meets the deadline check.
            chunk = raw.read1(min(_READ_CHUNK, self._max_bytes + 1 - len(body)), decode_content=False)
            if not chunk:
                break
            body += chunk
            if len(body) > self._max_bytes:
                raise DIDDocumentInvalidError(f"the did:web document is larger than {self._max_bytes} bytes")
        return bytes(body)
