"""did:web: URL mapping, SSRF refusals, pinning, and a real HTTPS server behaving badly.

Nothing here touches the network beyond 127.0.0.1: SSRF cases use a fake name lookup and a
session that fails the test if anything is sent; the positive and hostile-server cases talk
to a local HTTPS server whose certificate (for ``did.test``) comes from a throwaway CA.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.https_server import PKI, HTTPSServer, QuietHandler, make_pki, resolve_hosts, serving
from vcgate.did.document import DID, multikey_encode
from vcgate.did.key import KeyMethod
from vcgate.did.resolver import Resolver
from vcgate.did.web import WebMethod, did_web_location, parse_ports, system_resolve_host
from vcgate.errors import (
    DIDDocumentInvalidError,
    DIDNotFoundError,
    DIDResolutionError,
    ForbiddenAddressError,
    InvalidDIDError,
)
from vcgate.keys import PrivateKey, PublicKey

HOST = "did.test"  # RFC 6761 reserves .test: real DNS never answers for it


# --- URL mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("did", "host", "port", "url"),
    [
        pytest.param(
            "did:web:example.com", "example.com", 443, "https://example.com/.well-known/did.json", id="bare-host"
        ),
        pytest.param(
            "did:web:w3c-ccg.github.io:user:alice",
            "w3c-ccg.github.io",
            443,
            "https://w3c-ccg.github.io/user/alice/did.json",
            id="spec-path",
        ),
        pytest.param(
            "did:web:example.com%3A8443",
            "example.com",
            8443,
            "https://example.com:8443/.well-known/did.json",
            id="port",
        ),
        pytest.param(
            "did:web:example.com%3a8443",
            "example.com",
            8443,
            "https://example.com:8443/.well-known/did.json",
            id="port-lowercase-escape",
        ),
        pytest.param(
            "did:web:example.com%3A443", "example.com", 443, "https://example.com/.well-known/did.json", id="port-443"
        ),
        pytest.param(
            "did:web:example.com%3A3000:user:alice",
            "example.com",
            3000,
            "https://example.com:3000/user/alice/did.json",
            id="port-and-path",
        ),
        pytest.param(
            "did:web:example.com:a:b:c", "example.com", 443, "https://example.com/a/b/c/did.json", id="deep-path"
        ),
        pytest.param(
            "did:web:Example.COM", "example.com", 443, "https://example.com/.well-known/did.json", id="host-lowercased"
        ),
        pytest.param(
            "did:web:sub.xn--bcher-kva.example",
            "sub.xn--bcher-kva.example",
            443,
            "https://sub.xn--bcher-kva.example/.well-known/did.json",
            id="idn-a-label",
        ),
        pytest.param(
            "did:web:example.com:user:al%20ice",
            "example.com",
            443,
            "https://example.com/user/al%20ice/did.json",
            id="pct-space-kept-encoded",
        ),
        pytest.param(
            "did:web:example.com:%41lice",
            "example.com",
            443,
            "https://example.com/Alice/did.json",
            id="pct-unreserved-decoded",
        ),
        pytest.param(
            "did:web:example.com:a%7Eb", "example.com", 443, "https://example.com/a~b/did.json", id="pct-tilde-decoded"
        ),
        pytest.param(
            "did:web:example.com:caf%C3%A9", "example.com", 443, "https://example.com/caf%C3%A9/did.json", id="pct-utf8"
        ),
        pytest.param(
            "did:web:example.com:100%25", "example.com", 443, "https://example.com/100%25/did.json", id="pct-percent"
        ),
    ],
)
def test_url_mapping(did: str, host: str, port: int, url: str) -> None:
    loc = did_web_location(did)
    assert (loc.host, loc.port, loc.url) == (host, port, url)
    assert loc.url.startswith("https://")


@pytest.mark.parametrize(
    "did",
    [
        pytest.param("did:web:127.0.0.1", id="ipv4-literal"),
        pytest.param("did:web:127.0.0.1%3A8443", id="ipv4-literal-port"),
        pytest.param("did:web:127.1", id="ipv4-short-form"),
        pytest.param("did:web:2130706433", id="ipv4-integer-form"),
        pytest.param("did:web:0x7f.1", id="ipv4-hex-form"),
        pytest.param("did:web:0x7f.0x0.0x0.0x1", id="ipv4-hex-dotted"),
        pytest.param("did:web:%5B%3A%3A1%5D", id="ipv6-literal"),
        pytest.param("did:web:example.123", id="numeric-tld"),
        pytest.param("did:web:localhost", id="single-label"),
        pytest.param("did:web:example.com.", id="trailing-dot"),
        pytest.param("did:web:.example.com", id="leading-dot"),
        pytest.param("did:web:example..com", id="empty-label"),
        pytest.param("did:web:user%40example.com", id="userinfo"),
        pytest.param("did:web:user%3Apass%40example.com", id="userinfo-password"),
        pytest.param("did:web:ex%61mple.com", id="escaped-letter-in-host"),
        pytest.param("did:web:example.com%2Fevil", id="slash-in-host"),
        pytest.param("did:web:exa_mple.com", id="underscore"),
        pytest.param("did:web:-example.com", id="label-leading-hyphen"),
        pytest.param("did:web:example-.com", id="label-trailing-hyphen"),
        pytest.param("did:web:" + "a" * 64 + ".com", id="label-too-long"),
        pytest.param("did:web:" + ".".join(["a" * 60] * 5) + ".com", id="host-too-long"),
        pytest.param("did:web:example.com%3A", id="empty-port"),
        pytest.param("did:web:example.com%3A0", id="port-zero"),
        pytest.param("did:web:example.com%3A08443", id="port-leading-zero"),
        pytest.param("did:web:example.com%3A65536", id="port-too-large"),
        pytest.param("did:web:example.com%3A80%3A81", id="two-ports"),
        pytest.param("did:web:example.com::alice", id="empty-segment"),
        pytest.param("did:web:example.com:..", id="dot-dot-segment"),
        pytest.param("did:web:example.com:.", id="dot-segment"),
        pytest.param("did:web:example.com:%2E%2E", id="encoded-dot-dot"),
        pytest.param("did:web:example.com:a%2Fb", id="encoded-slash"),
        pytest.param("did:web:example.com:a%5Cb", id="encoded-backslash"),
        pytest.param("did:web:example.com:a%3Fb", id="encoded-query"),
        pytest.param("did:web:example.com:a%23b", id="encoded-fragment"),
        pytest.param("did:web:example.com:a%00b", id="encoded-nul"),
        pytest.param("did:web:example.com:a%0Ab", id="encoded-newline"),
        pytest.param("did:web:example.com:a%FFb", id="invalid-utf8"),
        pytest.param("did:web:", id="empty"),
        pytest.param("did:web:example.com/path", id="url-path"),
        pytest.param("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK", id="other-method"),
    ],
)
def test_invalid_did_web_refused(did: str) -> None:
    with pytest.raises(InvalidDIDError) as info:
        did_web_location(did)
    assert info.value.code == "did_invalid"
    # WebMethod refuses them before any lookup.
    web = WebMethod(resolve_host=_fail_lookup, session=_NoSendSession())
    with pytest.raises(InvalidDIDError) as info2:
        web.resolve(did)  # type: ignore[arg-type]
    assert info2.value.code == "did_invalid"


def test_config_refuses_unverified_tls_and_bad_cidr() -> None:
    with pytest.raises(ValueError):
        WebMethod(verify=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WebMethod(verify="/nonexistent/ca.pem")
    with pytest.raises(ValueError):
        WebMethod(allow_networks=["127.0.0.1/8"])  # host bits set: a typo, not a network
    with pytest.raises(TypeError):
        WebMethod(allow_networks="127.0.0.0/8")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WebMethod(timeout=0)


# --- SSRF: refused before any connection -----------------------------------------------------


def _fail_lookup(host: str, port: int) -> list[str]:
    raise AssertionError(f"no name lookup expected, got {host!r}")


class _NoSendSession(requests.Session):
    """Records what WebMethod tries to send and never sends it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        raise requests.ConnectionError("tests do not open connections")


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail (and record) any socket connect while the test runs."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"connection attempted to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


FORBIDDEN = [
    pytest.param(["10.0.0.1"], id="rfc1918-10"),
    pytest.param(["172.16.0.1"], id="rfc1918-172"),
    pytest.param(["192.168.1.1"], id="rfc1918-192"),
    pytest.param(["127.0.0.1"], id="loopback-v4"),
    pytest.param(["127.255.255.254"], id="loopback-v4-range"),
    pytest.param(["::1"], id="loopback-v6"),
    pytest.param(["169.254.169.254"], id="metadata-v4"),
    pytest.param(["169.254.1.1"], id="link-local-v4"),
    pytest.param(["100.64.0.1"], id="cgnat"),
    pytest.param(["100.100.100.200"], id="metadata-alibaba"),
    pytest.param(["fd00:ec2::254"], id="metadata-v6"),
    pytest.param(["::ffff:127.0.0.1"], id="v4-mapped-loopback"),
    pytest.param(["::ffff:169.254.169.254"], id="v4-mapped-metadata"),
    pytest.param(["::127.0.0.1"], id="v4-compatible-loopback"),
    pytest.param(["2002:7f00:1::1"], id="6to4-loopback"),
    pytest.param(["2002:a00:1::1"], id="6to4-private"),
    pytest.param(["64:ff9b::a00:1"], id="nat64-private"),
    pytest.param(["64:ff9b::a9fe:a9fe"], id="nat64-metadata"),
    pytest.param(["64:ff9b:1::1"], id="nat64-local-use"),
    pytest.param(["0.0.0.0"], id="unspecified-v4"),
    pytest.param(["::"], id="unspecified-v6"),
    pytest.param(["0.1.2.3"], id="this-network"),
    pytest.param(["224.0.0.1"], id="multicast-v4"),
    pytest.param(["ff02::1"], id="multicast-v6"),
    pytest.param(["255.255.255.255"], id="broadcast"),
    pytest.param(["240.0.0.1"], id="reserved-v4"),
    pytest.param(["192.0.2.1"], id="documentation-v4"),
    pytest.param(["198.18.0.1"], id="benchmarking"),
    pytest.param(["fc00::1"], id="ula"),
    pytest.param(["fe80::1"], id="link-local-v6"),
    pytest.param(["fe80::1%1"], id="link-local-v6-scoped"),
    pytest.param(["fec0::1"], id="site-local-v6"),
    pytest.param(["2001:db8::1"], id="documentation-v6"),
    pytest.param(["2001::1"], id="teredo"),
    pytest.param(["100::1"], id="discard-v6"),
    pytest.param(["4000::1"], id="outside-global-unicast"),
    pytest.param(["93.184.215.14", "10.0.0.1"], id="mix-public-then-private"),
    pytest.param(["10.0.0.1", "93.184.215.14"], id="mix-private-then-public"),
    pytest.param(["2606:4700:4700::1111", "::1"], id="mix-v6-public-and-loopback"),
]


@pytest.mark.parametrize("addresses", FORBIDDEN)
def test_forbidden_address_refused_without_connecting(addresses: list[str], no_connect: list[Any]) -> None:
    session = _NoSendSession()
    web = WebMethod(resolve_host=resolve_hosts({"evil.example": addresses}), session=session)
    with pytest.raises(ForbiddenAddressError) as info:
        web.resolve(DID("did:web:evil.example"))
    assert info.value.code == "did_address_forbidden"
    assert session.sent == []
    assert no_connect == []
    for address in addresses:  # the operator's addresses are not echoed to the caller
        assert address not in info.value.message


@pytest.mark.parametrize(
    ("addresses", "allow"),
    [
        pytest.param(["169.254.169.254"], ["169.254.0.0/16"], id="metadata-v4"),
        pytest.param(["fd00:ec2::254"], ["fc00::/7"], id="metadata-v6"),
        pytest.param(["0.0.0.0"], ["0.0.0.0/0"], id="unspecified"),
        pytest.param(["224.0.0.1"], ["224.0.0.0/4"], id="multicast"),
        pytest.param(["10.0.0.1"], ["127.0.0.0/8"], id="other-network-allowed"),
        pytest.param(["64:ff9b::a00:1"], ["192.168.0.0/16"], id="nat64-other-network"),
    ],
)
def test_allow_networks_cannot_unlock(addresses: list[str], allow: list[str], no_connect: list[Any]) -> None:
    session = _NoSendSession()
    web = WebMethod(resolve_host=resolve_hosts({"evil.example": addresses}), session=session, allow_networks=allow)
    with pytest.raises(ForbiddenAddressError) as info:
        web.resolve(DID("did:web:evil.example"))
    assert info.value.code == "did_address_forbidden"
    assert session.sent == []


@pytest.mark.parametrize(
    ("addresses", "allow", "pinned_url"),
    [
        pytest.param(["93.184.215.14"], [], "https://93.184.215.14:443/.well-known/did.json", id="public-v4"),
        pytest.param(
            ["2606:4700:4700::1111"], [], "https://[2606:4700:4700::1111]:443/.well-known/did.json", id="public-v6"
        ),
        pytest.param(
            ["64:ff9b::5db8:d70e"], [], "https://[64:ff9b::5db8:d70e]:443/.well-known/did.json", id="nat64-public"
        ),
        pytest.param(
            ["::ffff:93.184.215.14"], [], "https://93.184.215.14:443/.well-known/did.json", id="v4-mapped-public"
        ),
        pytest.param(
            ["10.1.2.3"], ["10.0.0.0/8"], "https://10.1.2.3:443/.well-known/did.json", id="allowed-private"
        ),
        pytest.param(
            ["::ffff:10.1.2.3"], ["10.0.0.0/8"], "https://10.1.2.3:443/.well-known/did.json", id="allowed-mapped"
        ),
        pytest.param(["fd12::1"], ["fd12::/16"], "https://[fd12::1]:443/.well-known/did.json", id="allowed-ula"),
    ],
)
def test_permitted_address_is_pinned(
    addresses: list[str], allow: list[str], pinned_url: str, no_connect: list[Any]
) -> None:
    session = _NoSendSession()
    web = WebMethod(resolve_host=resolve_hosts({"good.example": addresses}), session=session, allow_networks=allow)
    with pytest.raises(DIDResolutionError) as info:
        web.resolve(DID("did:web:good.example"))
    assert info.value.code == "did_resolution_failed"
    assert len(session.sent) == 1
    sent = session.sent[0]
    assert sent.url == pinned_url  # the checked address, not the name
    assert sent.headers["Host"] == "good.example"
    assert sent.headers["Accept-Encoding"] == "identity"
    assert "Authorization" not in sent.headers and "Cookie" not in sent.headers


@pytest.mark.parametrize(
    ("resolve_host", "error", "code"),
    [
        pytest.param(resolve_hosts({}), DIDNotFoundError, "did_not_found", id="nxdomain"),
        pytest.param(lambda h, p: [], DIDResolutionError, "did_resolution_failed", id="no-addresses"),
        pytest.param(lambda h, p: ["not-an-ip"], DIDResolutionError, "did_resolution_failed", id="garbage-address"),
        pytest.param(
            lambda h, p: (_ for _ in ()).throw(socket.gaierror(socket.EAI_AGAIN, "try again")),
            DIDResolutionError,
            "did_resolution_failed",
            id="temporary-failure",
        ),
        pytest.param(
            lambda h, p: (_ for _ in ()).throw(RuntimeError("boom")),
            DIDResolutionError,
            "did_resolution_failed",
            id="resolver-bug",
        ),
    ],
)
def test_lookup_failures(resolve_host: Any, error: type[Exception], code: str, no_connect: list[Any]) -> None:
    session = _NoSendSession()
    web = WebMethod(resolve_host=resolve_host, session=session)
    with pytest.raises(error) as info:
        web.resolve(DID("did:web:nowhere.example"))
    assert info.value.code == code  # type: ignore[attr-defined]
    assert session.sent == []


# --- a real HTTPS server on 127.0.0.1 -------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """A throwaway CA and a server certificate for did.test signed by it."""
    return make_pki(tmp_path_factory.mktemp("pki"), HOST)


def _document(did: str, key: PublicKey) -> dict[str, Any]:
    vm_id = f"{did}#key-1"
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "verificationMethod": [
            {"id": vm_id, "type": "Multikey", "controller": did, "publicKeyMultibase": multikey_encode(key)}
        ],
        "authentication": [vm_id],
        "assertionMethod": [vm_id],
    }


SECRET = b"SECRET-BODY-MARKER"
CHUNKED_LIMIT = 32 * 1024 * 1024


class _Handler(QuietHandler):
    server: _Server
    content_type = "application/did+json"

    def _json(self, value: Any) -> None:
        self.reply(200, json.dumps(value).encode())

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        srv = self.server
        headers = self.headers
        srv.seen.append({"path": self.path, "host": headers.get("Host"), "ae": headers.get("Accept-Encoding")})
        base = f"did:web:{HOST}%3A{srv.port}"
        path = self.path
        if path == "/.well-known/did.json":
            self._json(_document(base, srv.key))
        elif path == "/user/alice/did.json":
            self._json(_document(base + ":user:alice", srv.key))
        elif path == "/redirect/did.json":
            self.reply(302, b"", {"Location": "https://other.test/.well-known/did.json"})
        elif path == "/redirect-local/did.json":
            self.reply(301, b"", {"Location": "/.well-known/did.json"})
        elif path == "/big/did.json":
            self.send_response(200)
            self.send_header("Content-Length", str(10 * 1024 * 1024))
            self.end_headers()
            self.close_connection = True
            self.wfile.write(b" " * 65536)  # and then nothing: the client must not wait for the rest
        elif path == "/chunked/did.json":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.close_connection = True
            piece = b" " * 16384
            frame = b"%x\r\n%s\r\n" % (len(piece), piece)
            for _ in range(CHUNKED_LIMIT // len(piece)):
                self.wfile.write(frame)
                srv.chunked_sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/slow/did.json":
            srv.stopping.wait(3)
            self._json(_document(base + ":slow", srv.key))
        elif path == "/trickle/did.json":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.close_connection = True
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                if srv.stopping.wait(0.1):
                    break
        elif path == "/notjson/did.json":
            self.reply(200, b"<html>" + SECRET + b"</html>", {"Content-Type": "text/html"})
        elif path == "/array/did.json":
            self._json([_document(base + ":array", srv.key)])
        elif path == "/dup/did.json":
            did = base + ":dup"
            self.reply(200, b'{"id": "%s", "id": "%s"}' % (did.encode(), SECRET))
        elif path == "/deep/did.json":
            self.reply(200, b'{"a":' * 200 + b"1" + b"}" * 200)
        elif path == "/nan/did.json":
            self.reply(200, b'{"id": NaN}')
        elif path == "/latin1/did.json":
            self.reply(200, b'{"id": "caf\xe9"}')
        elif path == "/gzip/did.json":
            body = gzip.compress(json.dumps(_document(base + ":gzip", srv.key)).encode())
            self.reply(200, body, {"Content-Encoding": "gzip"})
        elif path == "/wrongid/did.json":
            self._json(_document("did:web:other.test", srv.key))
        elif path == "/gone/did.json":
            self.reply(410, SECRET)
        elif path == "/error/did.json":
            self.reply(500, SECRET)
        else:
            self.reply(404, SECRET)


class _Server(HTTPSServer):
    def __init__(self, tls: ssl.SSLContext | None, key: PublicKey) -> None:
        super().__init__(_Handler, tls)
        self.key = key
        self.seen: list[dict[str, Any]] = []
        self.sni: list[str | None] = []
        self.chunked_sent = 0
        if tls is not None:
            tls.sni_callback = lambda sslobj, name, ctx: self.sni.append(name)  # type: ignore[assignment]


def _serve(tls: ssl.SSLContext | None) -> Iterator[_Server]:
    with serving(_Server(tls, PrivateKey.generate("EdDSA").public_key)) as server:
        yield server


@pytest.fixture(scope="module")
def server(pki: PKI) -> Iterator[_Server]:
    yield from _serve(pki.server_context())


@pytest.fixture(scope="module")
def plain_server() -> Iterator[_Server]:
    yield from _serve(None)


LOCAL = {HOST: ["127.0.0.1"], "wrong.test": ["127.0.0.1"]}


@pytest.fixture
def make_web(pki: PKI, server: _Server, plain_server: _Server) -> Iterator[Callable[..., WebMethod]]:
    made: list[WebMethod] = []

    def make(**overrides: Any) -> WebMethod:
        config: dict[str, Any] = {
            "resolve_host": resolve_hosts(LOCAL),
            "allow_networks": ["127.0.0.1/32"],
            "allow_ports": [server.port, plain_server.port],  # the test servers' free ports
            "verify": str(pki.ca),
            "timeout": 2.0,
        }
        config.update(overrides)
        web = WebMethod(**config)
        made.append(web)
        return web

    yield make
    for web in made:
        web.close()


def _did(server: _Server, *path: str) -> str:
    return ":".join([f"did:web:{HOST}%3A{server.port}", *path])


@pytest.mark.parametrize("path", [pytest.param((), id="well-known"), pytest.param(("user", "alice"), id="user-path")])
def test_resolves_over_real_https(server: _Server, make_web: Callable[..., WebMethod], path: tuple[str, ...]) -> None:
    resolver = Resolver([KeyMethod(), make_web()])
    did = _did(server, *path)
    before = len(server.seen)
    doc = resolver.resolve(did)
    assert doc.id == did
    [vm] = doc.methods_for("assertionMethod", "EdDSA")
    assert vm.id == f"{did}#key-1"
    assert vm.public_key == server.key
    assert resolver.verification_method(f"{did}#key-1", "authentication").public_key == server.key
    seen = server.seen[before:]
    assert [s["path"] for s in seen] == ["/" + "/".join(path) + "/did.json" if path else "/.well-known/did.json"]
    assert seen[0]["host"] == f"{HOST}:{server.port}"
    assert seen[0]["ae"] == "identity"
    assert server.sni[-1] == HOST  # SNI carries the name although the socket went to the IP
    resolver.resolve(did)
    assert len(server.seen) == before + 1  # cached by the resolver


def test_pinned_against_dns_rebinding(
    server: _Server, make_web: Callable[..., WebMethod], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The address checked is the address used: a second lookup would answer 10.0.0.1."""
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["10.0.0.1"]

    system_lookups: list[Any] = []
    real_getaddrinfo = socket.getaddrinfo

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        system_lookups.append(host)
        if host == HOST:
            raise AssertionError("the DID's host name was looked up again at connect time")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    web = make_web(resolve_host=rebinding)
    did = _did(server)
    assert web.resolve(DID(did))["id"] == did
    assert lookups == [HOST]
    assert HOST not in system_lookups
    # did.test is not in real DNS (RFC 6761), so only the pinned 127.0.0.1 could have worked.
    assert server.seen[-1]["host"] == f"{HOST}:{server.port}"


def test_falls_back_to_next_checked_address(server: _Server, make_web: Callable[..., WebMethod]) -> None:
    # Nothing listens on 127.0.0.2 (the server is bound to 127.0.0.1 only): connection refused.
    web = make_web(resolve_host=resolve_hosts({HOST: ["127.0.0.2", "127.0.0.1"]}), allow_networks=["127.0.0.0/8"])
    did = _did(server)
    assert web.resolve(DID(did))["id"] == did


def test_loopback_refused_without_allow_networks(server: _Server, make_web: Callable[..., WebMethod]) -> None:
    before = len(server.seen)
    with pytest.raises(ForbiddenAddressError) as info:
        make_web(allow_networks=()).resolve(DID(_did(server)))
    assert info.value.code == "did_address_forbidden"
    assert len(server.seen) == before


HOSTILE = [
    pytest.param(("redirect",), DIDResolutionError, "did_resolution_failed", "redirect", id="redirect-other-host"),
    pytest.param(("redirect-local",), DIDResolutionError, "did_resolution_failed", "redirect", id="redirect-same-host"),
    pytest.param(("notjson",), DIDDocumentInvalidError, "did_document_invalid", "not valid JSON", id="not-json"),
    pytest.param(("array",), DIDDocumentInvalidError, "did_document_invalid", "not a JSON object", id="json-array"),
    pytest.param(("dup",), DIDDocumentInvalidError, "did_document_invalid", "duplicate", id="duplicate-keys"),
    pytest.param(("deep",), DIDDocumentInvalidError, "did_document_invalid", "nested deeper", id="too-deep"),
    pytest.param(("nan",), DIDDocumentInvalidError, "did_document_invalid", "NaN", id="nan"),
    pytest.param(("latin1",), DIDDocumentInvalidError, "did_document_invalid", "UTF-8", id="not-utf8"),
    pytest.param(("gzip",), DIDResolutionError, "did_resolution_failed", "compressed", id="unrequested-gzip"),
    pytest.param(("wrongid",), DIDDocumentInvalidError, "did_document_invalid", "does not match", id="id-mismatch"),
    pytest.param(("missing",), DIDNotFoundError, "did_not_found", "HTTP 404", id="http-404"),
    pytest.param(("gone",), DIDNotFoundError, "did_not_found", "HTTP 410", id="http-410"),
    pytest.param(("error",), DIDResolutionError, "did_resolution_failed", "HTTP 500", id="http-500"),
]


@pytest.mark.parametrize(("path", "error", "code", "says"), HOSTILE)
def test_hostile_server_refused(
    server: _Server,
    make_web: Callable[..., WebMethod],
    path: tuple[str, ...],
    error: type[Exception],
    code: str,
    says: str,
) -> None:
    resolver = Resolver([KeyMethod(), make_web()])
    with pytest.raises(error) as info:
        resolver.resolve(_did(server, *path))
    exc = info.value
    assert exc.code == code  # type: ignore[attr-defined]
    assert says in exc.message  # type: ignore[attr-defined]
    assert SECRET.decode() not in exc.message  # type: ignore[attr-defined]
    assert "other.test/" not in exc.message  # type: ignore[attr-defined]


def test_redirect_not_followed(server: _Server, make_web: Callable[..., WebMethod]) -> None:
    before = len(server.seen)
    with pytest.raises(DIDResolutionError) as info:
        make_web().resolve(DID(_did(server, "redirect-local")))
    assert info.value.code == "did_resolution_failed"
    assert [s["path"] for s in server.seen[before:]] == ["/redirect-local/did.json"]


@pytest.mark.parametrize(
    "path", [pytest.param("big", id="content-length"), pytest.param("chunked", id="chunked-no-length")]
)
def test_oversized_body_refused_with_bounded_memory(
    server: _Server, make_web: Callable[..., WebMethod], path: str
) -> None:
    web = make_web(max_bytes=64 * 1024)
    tracemalloc.start()
    try:
        with pytest.raises(DIDDocumentInvalidError) as info:
            web.resolve(DID(_did(server, path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == "did_document_invalid"
    assert "larger than 65536 bytes" in info.value.message
    assert peak < 2 * 1024 * 1024  # the server offers 10 MiB / 32 MiB


def test_slow_server_times_out(server: _Server, make_web: Callable[..., WebMethod]) -> None:
    web = make_web(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(DIDResolutionError) as info:
        web.resolve(DID(_did(server, "slow")))
    assert info.value.code == "did_resolution_failed"
    assert "timed out" in info.value.message
    assert time.monotonic() - started < 1.5


def test_trickling_server_hits_the_deadline(server: _Server, make_web: Callable[..., WebMethod]) -> None:
    # One byte every 0.1 s never trips the per-read timeout; the overall deadline must.
    web = make_web(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(DIDResolutionError) as info:
        web.resolve(DID(_did(server, "trickle")))
    assert info.value.code == "did_resolution_failed"
    assert "timed out" in info.value.message
    assert time.monotonic() - started < 1.5


def test_certificate_for_another_name_refused(server: _Server, make_web: Callable[..., WebMethod]) -> None:
    # wrong.test resolves to the server, which only holds a certificate for did.test.
    before = len(server.seen)
    with pytest.raises(DIDResolutionError) as info:
        make_web().resolve(DID(f"did:web:wrong.test%3A{server.port}"))
    assert info.value.code == "did_resolution_failed"
    assert "TLS" in info.value.message
    assert server.sni[-1] == "wrong.test"
    assert len(server.seen) == before  # no HTTP request went out


def test_untrusted_certificate_refused(server: _Server, make_web: Callable[..., WebMethod]) -> None:
    with pytest.raises(DIDResolutionError) as info:
        make_web(verify=True).resolve(DID(_did(server)))  # system CAs do not know the test CA
    assert info.value.code == "did_resolution_failed"
    assert "TLS" in info.value.message


def test_plain_http_server_refused(plain_server: _Server, make_web: Callable[..., WebMethod]) -> None:
    with pytest.raises(DIDResolutionError) as info:
        make_web().resolve(DID(f"did:web:{HOST}%3A{plain_server.port}"))
    assert info.value.code == "did_resolution_failed"
    assert plain_server.seen == []  # the TLS handshake failed; no cleartext request was made


def test_nothing_listening(make_web: Callable[..., WebMethod]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DIDResolutionError) as info:
        make_web(allow_ports=[port]).resolve(DID(f"did:web:{HOST}%3A{port}"))
    assert info.value.code == "did_resolution_failed"
    assert "could not connect" in info.value.message


# --- ports (finding 6: did:web:host%3A6379 must not reach other services of a host) ------------


@pytest.mark.parametrize(
    ("did", "allow_ports"),
    [
        pytest.param("did:web:example.com%3A6379", (), id="redis"),
        pytest.param("did:web:example.com%3A22", (), id="ssh"),
        pytest.param("did:web:example.com%3A25", (), id="smtp"),
        pytest.param("did:web:example.com%3A80", (), id="http-port"),
        pytest.param("did:web:example.com%3A8443", (), id="8443-not-configured"),
        pytest.param("did:web:example.com%3A65535", (), id="highest"),
        pytest.param("did:web:example.com%3A1", (), id="lowest"),
        pytest.param("did:web:example.com%3A6379:user:alice", (), id="with-path"),
        pytest.param("did:web:example.com%3A6379", (8443,), id="other-port-configured"),
    ],
)
def test_ports_other_than_443_refused_before_any_lookup(did: str, allow_ports: tuple[int, ...]) -> None:
    lookups: list[tuple[str, int]] = []

    def lookup(host: str, port: int) -> list[str]:
        lookups.append((host, port))
        return ["93.184.216.34"]

    session = _NoSendSession()
    web = WebMethod(resolve_host=lookup, session=session, allow_ports=allow_ports)
    with pytest.raises(ForbiddenAddressError) as info:
        web.resolve(DID(did))
    err = info.value
    assert (err.code, err.status) == ("did_address_forbidden", 401)
    assert isinstance(err, DIDResolutionError)  # a kind of did_resolution_failed
    assert err.details == {"reason": "port_not_allowed"}
    assert "VCGATE_DID_WEB_PORTS" in err.message
    assert lookups == [] and session.sent == []  # refused before the name lookup


def test_configured_port_reaches_the_real_server(server: _Server, make_web: Callable[..., WebMethod]) -> None:
    did = _did(server)
    before = len(server.seen)
    with pytest.raises(ForbiddenAddressError):
        make_web(allow_ports=()).resolve(DID(did))
    assert len(server.seen) == before  # not configured: nothing sent
    web = make_web(allow_ports=[server.port])
    assert web.ports == frozenset({443, server.port})
    assert web.resolve(DID(did))["id"] == did
    assert len(server.seen) == before + 1


@pytest.mark.parametrize(
    "bad",
    [pytest.param(0, id="zero"), pytest.param(65536, id="too-large"), pytest.param(True, id="bool"),
     pytest.param("8443", id="string")],
)
def test_allow_ports_must_be_ports(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        WebMethod(allow_ports=[bad] if bad != "8443" else bad)


@pytest.mark.parametrize(
    ("text", "ports"),
    [pytest.param("8443", (8443,), id="one"), pytest.param("8443, 9443", (8443, 9443), id="comma-space"),
     pytest.param("8443 9443", (8443, 9443), id="space"), pytest.param("", (), id="empty")],
)
def test_parse_ports(text: str, ports: tuple[int, ...]) -> None:
    assert parse_ports(text) == ports


@pytest.mark.parametrize("text", ["0", "65536", "84x3", "-1", "8443;9443"])
def test_parse_ports_refuses_and_names_the_variable(text: str) -> None:
    with pytest.raises(ValueError, match="VCGATE_DID_WEB_PORTS"):
        parse_ports(text)


def test_environment_proxy_ignored(
    server: _Server, make_web: Callable[..., WebMethod], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy would make the connection somewhere other than the checked address.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    session = requests.Session()
    web = make_web(session=session)
    did = _did(server)
    assert web.resolve(DID(did))["id"] == did
    assert session.trust_env is False


# --- the default name lookup ------------------------------------------------------------------


def test_system_resolve_host_returns_addresses() -> None:
    assert {"127.0.0.1", "::1"} & set(system_resolve_host("localhost", 443, timeout=2.0))


def test_system_lookup_is_bounded_by_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hanging_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        release.wait(5)
        raise socket.gaierror(socket.EAI_AGAIN, "too late")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            system_resolve_host("slow.example", 443, timeout=0.2)
        with pytest.raises(DIDResolutionError) as info:
            WebMethod(timeout=0.2, session=_NoSendSession()).resolve(DID("did:web:slow.example"))
        assert info.value.code == "did_resolution_failed"
        assert "timed out" in info.value.message
        assert time.monotonic() - started < 1.5
    finally:
        release.set()
