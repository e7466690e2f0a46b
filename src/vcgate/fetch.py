"""An SSRF-hardened HTTPS GET, shared by did:web and Bitstring Status List fetches.

Whoever presents a credential chooses the URLs vcgate fetches while checking it: a did:web
DID names the host of the issuer's document, a ``credentialStatus`` entry names the status
list. Resolving either makes vcgate fetch a URL chosen by a stranger from inside the
operator's network, so every step is defended:

* **Strict URLs.** https only; the host must be a DNS name (compared in lower case) of at
  least two letter-digit-hyphen labels whose last label starts with a letter. That refuses IP
  literals (``127.0.0.1``, and numeric spellings resolvers disagree about, such as
  ``2130706433`` or ``0x7f.1``), IPv6 brackets, userinfo, trailing dots and empty labels.
  IP literals are refused on purpose: the TLS certificate is checked against the name, and a
  literal skips both the name and the address policy's intent. Fragments, non-ASCII,
  spaces and control characters are refused too.
* **Address check before connecting (SSRF).** The host is resolved once and the fetch is
  refused if *any* address is loopback, private (RFC 1918, ``fc00::/7``), link-local,
  CGNAT ``100.64.0.0/10``, unspecified, multicast, broadcast, documentation, benchmarking,
  reserved or otherwise not global unicast, including the IPv4 address embedded in an
  IPv4-mapped, IPv4-compatible, 6to4 or NAT64 IPv6 address. Refusing when any address is bad,
  not only the first, stops a name with one public and one internal address from being
  steered to the internal one. ``allow_networks`` re-admits chosen CIDRs (tests, private
  deployments); cloud metadata endpoints, unspecified, multicast and broadcast addresses stay
  refused whatever it says, because no document vcgate wants lives there and connecting to
  them is the classic SSRF payoff.
* **Pinning.** The connection goes to exactly the address that passed the check, while TLS
  SNI, certificate verification and the ``Host`` header use the URL's host name. A second
  DNS lookup at connect time (DNS rebinding: public for the check, ``127.0.0.1`` for the
  connect) therefore cannot move the connection. Only addresses that passed the check are
  tried, in the resolver's order, falling back to the next one only when a TCP connection
  cannot be opened.
* **TLS always.** Certificate verification cannot be turned off (``verify`` takes ``True``
  or a CA bundle path). The session does not read proxies or ``.netrc`` credentials from the
  environment, so a fetch never leaks credentials or goes around the pinning via a proxy.
* **No redirects.** A 3xx is refused: following it would fetch a second, unchecked URL.
* **Timeouts.** Name lookup, connect and each read are bounded by ``timeout``, and the body
  is abandoned once ``timeout`` has elapsed since the start (checked between reads, one socket
  read at a time), so a server that trickles its body cannot hold a check for long.
  The status line and headers must arrive within the time left too: past it the socket is
  shut down (a server trickling its *headers* once held a fetch as long as it liked).
* **Size cap.** A ``Content-Length`` above ``max_bytes`` is refused before reading; the body
  is read in bounded pieces and refused as soon as more than ``max_bytes`` arrive (chunked
  bodies included), so memory stays bounded whatever the server sends. Compressed bodies are
  not requested and are refused, so no decompression bomb can inflate past the cap here.
* **Errors.** Every failure is a :class:`FetchError` subclass (``raise ... from exc``; no
  ``requests``/``urllib3``/``ssl`` exception escapes). These are not :mod:`vcgate.errors`
  errors on purpose: each caller maps them to its own codes (did:web to ``did_*``, status
  lists to ``status_*``). Messages never quote the response body (the other side's words) or
  the resolved address (a map of the operator's network).
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

import requests
import urllib3
import urllib3.connection
import urllib3.exceptions
from requests.adapters import HTTPAdapter

__all__ = [
    "SafeFetcher",
    "HTTPSTarget",
    "parse_https_url",
    "host_name_problem",
    "system_resolve_host",
    "FetchError",
    "URLRefusedError",
    "AddressForbiddenError",
    "HostNotFoundError",
    "LookupFailedError",
    "ConnectFailedError",
    "TLSFailedError",
    "FetchTimeoutError",
    "TransportError",
    "RedirectRefusedError",
    "HTTPStatusError",
    "EncodedBodyError",
    "BodyTooLargeError",
    "IPAddress",
    "IPNetwork",
    "ResolveHost",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``resolve_host(host, port) -> addresses``: like ``socket.getaddrinfo`` but returning IPs.
ResolveHost = Callable[[str, int], Iterable[Any]]

_MAX_HOST_LENGTH = 253
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TLD_RE = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
_URL_CHARS_RE = re.compile(r"[\x21-\x7e]+")
_MAX_CONNECT_ATTEMPTS = 3
_READ_CHUNK = 64 * 1024
DEFAULT_USER_AGENT = "vcgate/0.1"

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


# --- errors -----------------------------------------------------------------------------------


class FetchError(Exception):
    """Why a fetch failed. Callers map these to their own :mod:`vcgate.errors` codes.

    ``message`` is safe to show: it names the host but never the response body or the
    resolved address. ``host`` is the URL's host name (``None`` if the URL did not parse).
    """

    def __init__(self, message: str, *, host: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.host = host


class URLRefusedError(FetchError):
    """The URL is not one vcgate fetches (not https, IP literal, userinfo, fragment, ...)."""


class AddressForbiddenError(FetchError):
    """The host resolves to an address vcgate will not connect to; ``reason`` says which kind."""

    def __init__(self, message: str, *, host: str | None = None, reason: str = "") -> None:
        super().__init__(message, host=host)
        self.reason = reason


class HostNotFoundError(FetchError):
    """The host name does not exist (NXDOMAIN / no data)."""


class LookupFailedError(FetchError):
    """The name lookup failed otherwise: temporary failure, timeout, no usable address."""


class ConnectFailedError(FetchError):
    """No TCP connection could be opened to any checked address."""


class TLSFailedError(FetchError):
    """The TLS handshake or certificate verification failed."""


class FetchTimeoutError(FetchError):
    """The time budget ran out (connect, a read, or the whole body)."""


class TransportError(FetchError):
    """Any other failure of the HTTP exchange; ``cause`` names the underlying exception type."""

    def __init__(self, message: str, *, host: str | None = None, cause: str = "") -> None:
        super().__init__(message, host=host)
        self.cause = cause


class HTTPStatusError(FetchError):
    """The server answered with a status other than 200; ``status`` holds it."""

    def __init__(self, message: str, *, host: str | None = None, status: int = 0) -> None:
        super().__init__(message, host=host)
        self.status = status


class RedirectRefusedError(HTTPStatusError):
    """The server answered with a redirect, which is never followed."""


class EncodedBodyError(FetchError):
    """The server sent a compressed (``Content-Encoding``) body that was not asked for."""


class BodyTooLargeError(FetchError):
    """The body is larger than ``limit`` bytes."""

    def __init__(self, message: str, *, host: str | None = None, limit: int = 0) -> None:
        super().__init__(message, host=host)
        self.limit = limit


# --- URLs -------------------------------------------------------------------------------------


def host_name_problem(host: str) -> str | None:
    """Why ``host`` (already lower case) is not an acceptable DNS host name, or ``None``."""
    if len(host) > _MAX_HOST_LENGTH:
        return "host name too long"
    labels = host.split(".")
    if len(labels) < 2:
        return "the host must be a fully qualified domain name"
    for label in labels:
        if not label:
            return "empty label in the host name"
        if not _LABEL_RE.fullmatch(label):
            return "the host name has an invalid label"
    if not _TLD_RE.fullmatch(labels[-1]):
        # A numeric last label means an IP address literal (or a numeric spelling of one).
        return "IP address literals are not accepted as host names"
    return None


@dataclass(frozen=True)
class HTTPSTarget:
    """An https URL taken apart: host name (lower case), port, and path with query."""

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


def parse_https_url(url: Any, *, max_length: int = 2048) -> HTTPSTarget:
    """Take apart an https URL vcgate may fetch, or raise :class:`URLRefusedError`.

    Refuses other schemes, IP literals and IPv6 brackets, userinfo, fragments, empty or
    out-of-range ports, and anything but printable ASCII (percent-encode the rest).
    """
    if not isinstance(url, str) or not url:
        raise URLRefusedError("the URL must be a non-empty string")
    if len(url) > max_length:
        raise URLRefusedError(f"the URL is longer than {max_length} characters")
    if not _URL_CHARS_RE.fullmatch(url):
        raise URLRefusedError("the URL may only hold printable ASCII without spaces")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "https":
        raise URLRefusedError("only https URLs are fetched")
    if "#" in rest:
        raise URLRefusedError("the URL must not have a fragment")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if "@" in authority:
        raise URLRefusedError("the URL must not carry userinfo")
    if "[" in authority or "]" in authority:
        raise URLRefusedError("IP address literals are not accepted as host names")
    host, colon, port_text = authority.partition(":")
    host = host.lower()
    problem = host_name_problem(host)
    if problem is not None:
        raise URLRefusedError(f"the URL's host is not acceptable ({problem})")
    port = 443
    if colon:
        if not _PORT_RE.fullmatch(port_text) or not 0 < int(port_text) <= 65535:
            raise URLRefusedError("the URL's port is not valid")
        port = int(port_text)
    if not path.startswith("/"):
        path = "/" + path
    return HTTPSTarget(host=host, port=port, path=path)


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

    threading.Thread(target=run, name="vcgate-dns", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"name lookup took longer than {timeout}s")
    if "error" in box:
        raise box["error"]
    return [info[4][0] for info in box["infos"]]


# --- transport ------------------------------------------------------------------------------


class _HeadersWithinTimeout(urllib3.connection.HTTPSConnection):
    """The status line and headers within the read timeout *in total*, not per socket read
    (the TLS handshake already is: CPython gives it one deadline).

    Red-team finding: a did:web host (any holder's) or a delegation link's status list host
    that trickled one header byte per read held an auth-service thread for as long as it liked
    (http.client reads up to 100 lines of 64 KiB, each read under the per-read timeout); a few
    such presentations took every thread. ``SafeFetcher`` passes the time left of its budget as
    the read timeout; past it the socket is shut down, which ends the blocked read.
    """

    def getresponse(self) -> Any:  # type: ignore[override]
        left = self.timeout
        if not isinstance(left, (int, float)) or left <= 0:
            return super().getresponse()
        fired = threading.Event()

        def cut() -> None:
            fired.set()
            sock = self.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(left, cut)
        timer.daemon = True
        timer.start()
        try:
            response = super().getresponse()
        except OSError as exc:
            if fired.is_set():  # urllib3 turns a socket timeout into its timeout errors
                raise TimeoutError("the response headers took longer than the time budget") from exc
            raise
        finally:
            timer.cancel()
        if fired.is_set():  # the cut may also end the headers early: never use what came
            self.close()
            raise TimeoutError("the response headers took longer than the time budget")
        return response


class _HeadersWithinTimeoutPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HeadersWithinTimeout


class _PinnedHTTPSAdapter(HTTPAdapter):
    """Sends to the address in the URL, with TLS SNI and certificate checks for the Host name.

    ``SafeFetcher`` puts the checked IP in the URL and the host name in the ``Host`` header;
    this adapter makes urllib3 use that name as ``server_hostname`` (SNI, and the name the
    certificate is verified against). Requests without a Host header, or not over https, are
    refused, so nothing unpinned goes through it.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            **self.poolmanager.pool_classes_by_scheme, "https": _HeadersWithinTimeoutPool
        }

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        authority = request.headers.get("Host")
        if not authority or host_params.get("scheme") != "https":
            raise ValueError("vcgate's pinned adapter only sends pinned https requests")
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


# --- the fetcher ----------------------------------------------------------------------------


class SafeFetcher:
    """HTTPS GET with SSRF defences, pinning, a time budget and a size cap (module docstring).

    Keyword-only configuration:

    * ``timeout``: the time budget of one fetch, in seconds. Name lookup, connect, TLS and
      each read get at most what is left of it, and the body is abandoned once it is spent.
    * ``max_bytes``: the largest body accepted, in bytes.
    * ``session``: the ``requests.Session`` to send with. ``SafeFetcher`` takes it over: it
      mounts its pinning adapter for ``https://`` (and ``http://``, where it refuses) and
      turns off ``trust_env``; pass one that serves nothing else. By default it creates (and
      :meth:`close` closes) its own.
    * ``resolve_host``: ``(host, port) -> iterable of IP addresses`` (strings or
      ``ipaddress`` objects). Defaults to :func:`system_resolve_host` with ``timeout``.
    * ``allow_networks``: CIDRs re-admitted although the checks would refuse them (loopback
      for tests, RFC 1918 for private deployments). Cannot re-admit metadata, unspecified,
      multicast or broadcast addresses.
    * ``verify``: ``True`` (requests' CA bundle, from certifi) or the path of a CA bundle file
      or directory. ``False`` is refused: a document fetched without certificate
      verification proves nothing about where it came from.
    * ``accept``: the default ``Accept`` header; ``user_agent``: the ``User-Agent`` header.
    * ``label`` / ``document``: how messages name the host and the thing fetched
      (``"did:web host"`` / ``"did:web document"``).

    Thread-safe: the session's connection pools are; nothing else is shared between fetches.
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        session: requests.Session | None = None,
        resolve_host: ResolveHost | None = None,
        allow_networks: Sequence[str] = (),
        verify: Literal[True] | str = True,
        accept: str = "*/*",
        user_agent: str = DEFAULT_USER_AGENT,
        label: str = "host",
        document: str = "document",
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if verify is not True and not (isinstance(verify, str) and verify):
            raise ValueError("verify must be True or the path of a CA bundle; fetches need verified TLS")
        if isinstance(verify, str) and not os.path.exists(verify):
            raise ValueError(f"the CA bundle {verify!r} does not exist")
        if isinstance(allow_networks, str):
            raise TypeError("allow_networks is a sequence of CIDR strings, not one string")
        self._timeout = float(timeout)
        self._max_bytes = int(max_bytes)
        self._verify: bool | str = verify
        self._allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n, strict=True) for n in allow_networks)
        self._resolve_host = resolve_host
        self._accept = accept
        self._user_agent = user_agent
        self._label = label
        self._document = document
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        # Environment proxies would carry the request around the pinned address, and .netrc
        # would hand credentials to whatever host a stranger names.
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
        """Close the session if ``SafeFetcher`` created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> SafeFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public entry points ---------------------------------------------------------------

    def fetch(self, url: str, *, accept: str | None = None) -> bytes:
        """GET an https URL and return its body; raise a :class:`FetchError` subclass.

        Only a ``200`` with an identity-encoded body of at most ``max_bytes`` is returned.
        """
        target = parse_https_url(url)
        return self.get(target.host, target.port, target.path, accept=accept)

    __call__ = fetch

    def get(self, host: str, port: int, path: str, *, accept: str | None = None) -> bytes:
        """GET ``path`` (with query) from ``host:port``, already validated by the caller."""
        target = HTTPSTarget(host=host, port=port, path=path)
        deadline = time.monotonic() + self._timeout
        addresses = self.checked_addresses(host, port)
        return self._fetch(target, addresses, deadline, accept or self._accept)

    def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` and return its addresses if every one may be connected to.

        Raises :class:`AddressForbiddenError` if any address is forbidden,
        :class:`HostNotFoundError` or :class:`LookupFailedError` if the lookup fails.
        """
        label = self._label
        try:
            if self._resolve_host is None:
                raw = system_resolve_host(host, port, timeout=self._timeout)
            else:
                raw = list(self._resolve_host(host, port))
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                raise HostNotFoundError(f"the {label} {host!r} does not exist", host=host) from exc
            raise LookupFailedError(f"the {label} {host!r} could not be looked up", host=host) from exc
        except TimeoutError as exc:
            raise LookupFailedError(f"looking up the {label} {host!r} timed out", host=host) from exc
        except Exception as exc:  # an injected resolver's failure is still a lookup failure
            raise LookupFailedError(f"the {label} {host!r} could not be looked up", host=host) from exc
        addresses: list[IPAddress] = []
        for item in raw:
            try:
                ip = _canonical(item)
            except ValueError as exc:
                raise LookupFailedError(f"the lookup of {host!r} returned an unusable address", host=host) from exc
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise LookupFailedError(f"the {label} {host!r} has no address", host=host)
        for ip in addresses:
            self._check_address(host, ip)
        return addresses

    # -- address policy --------------------------------------------------------------------

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self._allow)

    def _forbidden(self, host: str, reason: str) -> AddressForbiddenError:
        # The address itself stays out of the message: it maps the operator's network.
        return AddressForbiddenError(
            f"the {self._label} {host!r} resolves to a forbidden address ({reason}); vcgate does not connect to it",
            host=host,
            reason=reason,
        )

    def _check_address(self, host: str, ip: IPAddress) -> None:
        views: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.scope_id:
                # Scoped (zone) addresses only exist on a local link.
                raise self._forbidden(host, "scoped IPv6 address")
            inner = _embedded_ipv4(ip)
            if inner is not None:
                views.append(inner)
        for view in views:
            verdict = _own_reason(view)
            if verdict is None:
                continue
            reason, hard = verdict
            if hard or not self._allowed(view):
                raise self._forbidden(host, reason)

    # -- HTTP ------------------------------------------------------------------------------

    def _timed_out(self, host: str) -> FetchTimeoutError:
        return FetchTimeoutError(f"fetching the {self._document} from {host!r} timed out", host=host)

    def _remaining(self, host: str, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._timed_out(host)
        return min(left, self._timeout)

    def _send(self, target: HTTPSTarget, ip: IPAddress, deadline: float, accept: str) -> requests.Response:
        literal = f"[{ip}]" if ip.version == 6 else str(ip)
        request = requests.Request(
            "GET",
            f"https://{literal}:{target.port}{target.path}",
            headers={
                "Host": target.authority,
                "Accept": accept,
                "Accept-Encoding": "identity",
                "User-Agent": self._user_agent,
            },
        ).prepare()
        left = self._remaining(target.host, deadline)
        return self._session.send(
            request,
            stream=True,
            timeout=(left, left),
            verify=self._verify,
            cert=None,
            proxies={},
            allow_redirects=False,
        )

    def _fetch(self, target: HTTPSTarget, addresses: list[IPAddress], deadline: float, accept: str) -> bytes:
        host = target.host
        label = self._label
        response: requests.Response | None = None
        last: Exception | None = None
        try:
            for ip in addresses[:_MAX_CONNECT_ATTEMPTS]:
                try:
                    response = self._send(target, ip, deadline, accept)
                    break
                except requests.RequestException as exc:
                    if not _connect_failed(exc):
                        raise
                    last = exc
            if response is None:
                raise ConnectFailedError(f"could not connect to the {label} {host!r}", host=host) from last
            with response:
                return self._read_body(target, response, deadline)
        except FetchError:
            raise
        except requests.exceptions.SSLError as exc:
            raise TLSFailedError(
                f"TLS with the {label} {host!r} failed (handshake or certificate verification)", host=host
            ) from exc
        except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as exc:
            raise self._timed_out(host) from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise TransportError(
                f"fetching the {self._document} from {host!r} failed ({type(exc).__name__})",
                host=host,
                cause=type(exc).__name__,
            ) from exc

    def _read_body(self, target: HTTPSTarget, response: requests.Response, deadline: float) -> bytes:
        host = target.host
        label = self._label
        status = response.status_code
        if 300 <= status < 400:
            raise RedirectRefusedError(
                f"the {label} {host!r} answered with a redirect (HTTP {status}); vcgate does not follow redirects",
                host=host,
                status=status,
            )
        if status != 200:
            raise HTTPStatusError(f"the {label} {host!r} answered HTTP {status}", host=host, status=status)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise EncodedBodyError(
                f"the {label} {host!r} sent a compressed body, which vcgate did not ask for", host=host
            )
        too_large = BodyTooLargeError(
            f"the {self._document} is larger than {self._max_bytes} bytes", host=host, limit=self._max_bytes
        )
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self._max_bytes:
            raise too_large
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
                raise too_large
        return bytes(body)
