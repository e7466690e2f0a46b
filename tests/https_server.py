"""A real HTTPS server on 127.0.0.1 for tests, with a throwaway CA and fake name lookups.

Three pieces, each usable alone:

* :func:`make_pki` -- a CA and a leaf certificate for the given host names (P-256, valid from
  five minutes ago for a day), written as PEM files; :meth:`PKI.server_context` loads the leaf
  into a server-side :class:`ssl.SSLContext`, and :attr:`PKI.ca` is the bundle for clients.
* :class:`HTTPSServer` -- a threaded server bound to a free port of 127.0.0.1 (TLS when given
  a context, plain HTTP when not), for a handler derived from :class:`QuietHandler`;
  :class:`FileServer` with :class:`FileHandler` serves the files of a folder. Run either with
  :func:`serving`, a context manager that fits a generator fixture::

      @pytest.fixture(scope="module")
      def server(pki: PKI) -> Iterator[MyServer]:
          with serving(MyServer(pki.server_context())) as srv:
              yield srv

* :func:`resolve_hosts` -- a ``resolve_host(host, port)`` that maps test names (``*.test``,
  which real DNS never answers: RFC 6761) to addresses, so the client's address policy, pinning
  and TLS checks run as in production while only the name lookup is faked.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "PKI",
    "FileHandler",
    "FileServer",
    "HTTPSServer",
    "QuietHandler",
    "make_pki",
    "resolve_hosts",
    "serving",
]


# --- certificates -----------------------------------------------------------------------------


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    hostnames: Iterable[str] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in hostnames]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class PKI:
    """The PEM files :func:`make_pki` wrote: the CA certificate, the leaf and the leaf's key."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side TLS context presenting the leaf certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def make_pki(out: Path, *hostnames: str, ca_name: str = "vcgate test CA", ca_file: str = "ca.pem") -> PKI:
    """A throwaway CA (``out/ca_file``) and a leaf for ``hostnames`` signed by it, in ``out``.

    The leaf's common name is the first host name; its subject alternative names are all of
    them, and it is good for server authentication only.
    """
    if not hostnames:
        raise ValueError("make_pki needs at least one host name")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = _cert(ca_name, ca_key, issuer, ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(hostnames[0], leaf_key, issuer, ca_key, ca=False, hostnames=hostnames)
    pki = PKI(ca=out / ca_file, cert=out / "server.pem", key=out / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki


# --- the server -------------------------------------------------------------------------------


class HTTPSServer(ThreadingHTTPServer):
    """A threaded server on 127.0.0.1 and a free port (:attr:`port`); TLS when ``tls`` is given.

    The TLS handshake is left to the handler's thread (:meth:`QuietHandler.setup`), so a stuck
    client cannot block ``accept()``. Errors in handlers are swallowed: test clients hang up on
    purpose (refused bodies, bad certificates). :attr:`stopping` is set when :func:`serving`
    ends, for handlers that stall on purpose to wait on.
    """

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.tls = tls
        self.port: int = self.server_address[1]
        self.stopping = threading.Event()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1, no logging, the deferred TLS handshake (5 s timeout) and :meth:`reply`."""

    protocol_version = "HTTP/1.1"
    #: The Content-Type :meth:`reply` sends when not given headers.
    content_type = "application/octet-stream"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(5)
            self.request.do_handshake()
        super().setup()

    def reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Send ``status`` and ``body`` with ``headers`` (default: :attr:`content_type`) and a Content-Length."""
        self.send_response(status)
        for name, value in (headers or {"Content-Type": self.content_type}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FileServer(HTTPSServer):
    """Serves the files below :attr:`root` (read afresh on each request); counts GETs per path in :attr:`hits`."""

    def __init__(self, tls: ssl.SSLContext | None, root: Path, handler: type[FileHandler] | None = None) -> None:
        super().__init__(handler or FileHandler, tls)
        self.root = root
        self.hits: Counter[str] = Counter()


class FileHandler(QuietHandler):
    """GET a file below the server's root: 200 and its bytes, or 404 and an empty body."""

    server: FileServer

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.server.hits[self.path] += 1
        root = self.server.root.resolve()
        target = (root / self.path.lstrip("/")).resolve()
        if target.is_relative_to(root) and target.is_file():
            self.reply(200, target.read_bytes())
        else:
            self.reply(404, b"")


S = TypeVar("S", bound=HTTPSServer)


@contextmanager
def serving(server: S) -> Iterator[S]:
    """Run ``server`` in a daemon thread for the ``with`` block; then stop and close it."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- name lookups -----------------------------------------------------------------------------


def resolve_hosts(
    mapping: Mapping[str, Iterable[str]], fallback: Callable[..., list[str]] | None = None
) -> Callable[..., list[str]]:
    """A ``resolve_host(host, port, **kwargs)`` answering from ``mapping``.

    A name not in ``mapping`` goes to ``fallback`` (called with the same arguments) when one is
    given, and otherwise fails as an unknown name does (``socket.gaierror`` EAI_NONAME).
    """

    def resolve(host: str, port: int, **kwargs: Any) -> list[str]:
        if host in mapping:
            return list(mapping[host])
        if fallback is not None:
            return fallback(host, port, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve
