"""Issuers that are https URLs: CID 1.0 controller documents over a real local HTTPS server.

The server is real (TLS with a throwaway CA, 127.0.0.1, a free port); only the name lookup of
``issuer.test`` is faked (RFC 6761: real DNS never answers ``.test``), so the fetcher's address
policy, pinning, TLS checks, size cap and the resolver's cache run as in production. Hostile
documents and URLs come first, each refused with its code; then credentials signed by keys
found there, through the Verifier and the real Gate with a policy naming the URL.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.https_server import PKI, HTTPSServer, QuietHandler, make_pki, resolve_hosts, serving
from tests.middleware.helpers import STATUS_TYPE, FakeStatus, policy_text
from tests.support import NOW, Party, forge, make_party
from vcgate.credentials import Verifier, create_presentation, issue_credential
from vcgate.did.controller import ControllerDocumentMethod
from vcgate.did.document import multikey_encode
from vcgate.did.key import KeyMethod
from vcgate.did.resolver import Resolver
from vcgate.errors import PolicyError, VCGateError
from vcgate.gate import Gate, RequestView
from vcgate.keys import PrivateKey, PublicKey
from vcgate.policy import Policy
from vcgate.status import StatusChecker

HOST = "issuer.test"
AUD = "https://gw.example"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"), HOST)


class _Handler(QuietHandler):
    server: _Server
    content_type = "application/json"

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.server.seen.append(self.path)
        status, body, headers = self.server.routes.get(self.path, (404, b"no such document", {}))
        self.reply(status, body, headers)


class _Server(HTTPSServer):
    def __init__(self, tls: ssl.SSLContext | None) -> None:
        super().__init__(_Handler, tls)
        self.routes: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.seen: list[str] = []

    def url(self, path: str) -> str:
        return f"https://{HOST}:{self.port}{path}"

    def put(self, path: str, document: Any, status: int = 200, headers: dict[str, str] | None = None) -> str:
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        self.routes[path] = (status, body, headers or {})
        return self.url(path)


@pytest.fixture(scope="module")
def server(pki: PKI) -> Iterator[_Server]:
    with serving(_Server(pki.server_context())) as srv:
        yield srv


@pytest.fixture(scope="module")
def plain_server() -> Iterator[_Server]:
    with serving(_Server(None)) as srv:
        yield srv


@pytest.fixture
def make_method(pki: PKI, server: _Server, plain_server: _Server) -> Iterator[Callable[..., ControllerDocumentMethod]]:
    made: list[ControllerDocumentMethod] = []

    def make(**overrides: Any) -> ControllerDocumentMethod:
        config: dict[str, Any] = {
            "resolve_host": resolve_hosts({HOST: ["127.0.0.1"]}),
            "allow_networks": ["127.0.0.1/32"],
            "allow_ports": [server.port, plain_server.port],
            "verify": str(pki.ca),
            "timeout": 2.0,
        }
        config.update(overrides)
        method = ControllerDocumentMethod(**config)
        made.append(method)
        return method

    yield make
    for method in made:
        method.close()


@pytest.fixture
def resolver(make_method: Callable[..., ControllerDocumentMethod]) -> Resolver:
    return Resolver([KeyMethod(), make_method()])


def multikey(url: str, key: PublicKey, fragment: str = "key-1", controller: str | None = None) -> dict[str, Any]:
    return {"id": f"{url}#{fragment}", "type": "Multikey", "controller": controller or url,
            "publicKeyMultibase": multikey_encode(key)}


def jsonwebkey(url: str, key: PublicKey, fragment: str = "key-1", controller: str | None = None) -> dict[str, Any]:
    return {"id": f"{url}#{fragment}", "type": "JsonWebKey", "controller": controller or url,
            "publicKeyJwk": key.jwk()}


def document(url: str, *methods: dict[str, Any], assertion: list[str] | None = None) -> dict[str, Any]:
    return {
        "@context": ["https://www.w3.org/ns/cid/v1"],
        "id": url,
        "verificationMethod": list(methods),
        "assertionMethod": assertion if assertion is not None else [m["id"] for m in methods],
    }


def code_of(call: Callable[[], Any]) -> str:
    with pytest.raises(VCGateError) as info:
        call()
    return info.value.code


# --- hostile URLs and documents, refused with codes ---------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://issuer.test/issuers/1", id="plain-http"),
        pytest.param("ftp://issuer.test/issuers/1", id="other-scheme"),
        pytest.param("https://127.0.0.1/issuers/1", id="ip-literal"),
        pytest.param("https://[::1]/issuers/1", id="ipv6-literal"),
        pytest.param("https://user@issuer.test/issuers/1", id="userinfo"),
        pytest.param("https://Issuer.Test/issuers/1", id="not-lower-case"),
        pytest.param("https://issuer.test:443/issuers/1", id="default-port-spelled-out"),
        pytest.param("https://localhost/issuers/1", id="single-label"),
    ],
)
def test_urls_vcgate_does_not_fetch(url: str, make_method: Callable[..., ControllerDocumentMethod]) -> None:
    lookups: list[str] = []
    method = make_method(resolve_host=lambda host, port: lookups.append(host) or ["127.0.0.1"])
    assert code_of(lambda: Resolver([method]).resolve(url)) == "controller_url_refused"
    assert lookups == []  # refused before any name lookup


def test_a_port_not_configured_is_refused_before_any_lookup(make_method: Callable[..., ControllerDocumentMethod]) -> None:
    lookups: list[str] = []
    method = make_method(allow_ports=[], resolve_host=lambda host, port: lookups.append(host) or ["127.0.0.1"])
    with pytest.raises(VCGateError) as info:
        Resolver([method]).resolve("https://issuer.test:6379/issuers/1")
    assert (info.value.code, info.value.details.get("reason")) == ("controller_address_forbidden", "port_not_allowed")
    assert lookups == []


def test_loopback_refused_without_allow_networks(server: _Server, make_method: Callable[..., ControllerDocumentMethod]) -> None:
    url = server.put("/loopback", document(server.url("/loopback"), multikey(server.url("/loopback"), make_party().key.public_key)))
    before = len(server.seen)
    assert code_of(lambda: Resolver([make_method(allow_networks=[])]).resolve(url)) == "controller_address_forbidden"
    assert len(server.seen) == before  # never connected


def _wrong_id(server: _Server) -> str:
    return server.put("/wrong-id", document(server.url("/other"), multikey(server.url("/other"), make_party().key.public_key)))


HOSTILE = [
    pytest.param(_wrong_id, "controller_id_mismatch", id="id-is-another-url"),
    pytest.param(lambda s: s.put("/no-id", {"verificationMethod": []}), "controller_id_mismatch", id="no-id"),
    pytest.param(lambda s: s.put("/did-id", {"id": "did:example:123"}), "controller_id_mismatch", id="id-is-a-did"),
    pytest.param(lambda s: s.put("/big", {"id": s.url("/big"), "pad": "x" * 70_000}), "controller_document_invalid",
                 id="oversized"),
    pytest.param(lambda s: s.put("/html", b"<html>hello</html>"), "controller_document_invalid", id="not-json"),
    pytest.param(lambda s: s.put("/array", [{"id": s.url("/array")}]), "controller_document_invalid", id="not-an-object"),
    pytest.param(lambda s: s.put("/dup", b'{"id": "a", "id": "b"}'), "controller_document_invalid", id="duplicate-keys"),
    pytest.param(lambda s: s.put("/deep", b'{"a":' * 100 + b"1" + b"}" * 100), "controller_document_invalid", id="too-deep"),
    pytest.param(lambda s: s.put("/vms", {"id": s.url("/vms"), "verificationMethod": {"id": "x"}}),
                 "controller_document_invalid", id="verificationMethod-not-a-list"),
    pytest.param(lambda s: s.url("/missing"), "controller_document_not_found", id="404"),
    pytest.param(lambda s: s.put("/gone", b"", status=410), "controller_document_not_found", id="410"),
    pytest.param(lambda s: s.put("/moved", b"", status=302, headers={"Location": s.url("/wrong-id")}),
                 "controller_document_unavailable", id="redirect-not-followed"),
    pytest.param(lambda s: s.put("/error", b"", status=500), "controller_document_unavailable", id="500"),
]


@pytest.mark.parametrize("setup, code", HOSTILE)
def test_hostile_documents_refused(server: _Server, make_method: Callable[..., ControllerDocumentMethod],
                                   setup: Callable[[_Server], str], code: str) -> None:
    url = setup(server)
    resolver = Resolver([make_method(max_bytes=64 * 1024, max_depth=32)])
    assert code_of(lambda: resolver.resolve(url)) == code


def test_plain_http_server_behind_an_https_url_is_refused(plain_server: _Server,
                                                          make_method: Callable[..., ControllerDocumentMethod]) -> None:
    url = plain_server.put("/doc", document(plain_server.url("/doc")))
    assert code_of(lambda: Resolver([make_method()]).resolve(url)) == "controller_document_unavailable"


def test_a_resolver_without_network_says_so() -> None:
    assert code_of(lambda: Resolver.local().resolve("https://issuer.test/issuers/1")) == "did_method_not_supported"


@pytest.mark.parametrize(
    "make_vm, code",
    [
        pytest.param(lambda url, key: multikey(url, key, controller="https://attacker.test/me"), "controller_mismatch",
                     id="controlled-by-another"),
        pytest.param(lambda url, key: {**multikey(url, key), "controller": None}, "controller_mismatch",
                     id="no-controller"),
        pytest.param(lambda url, key: {**multikey(url, key), "type": "Ed25519VerificationKey2020"}, "untrusted_key",
                     id="type-not-cid"),
        pytest.param(lambda url, key: {**jsonwebkey(url, key), "publicKeyMultibase": multikey_encode(key)},
                     "untrusted_key", id="two-key-representations"),
        pytest.param(lambda url, key: {**jsonwebkey(url, key), "publicKeyJwk": {**key.jwk(), "d": "AAAA"}},
                     "untrusted_key", id="private-jwk-member"),
    ],
)
def test_unusable_verification_methods(server: _Server, resolver: Resolver, make_vm: Callable[..., dict[str, Any]],
                                       code: str) -> None:
    path = f"/unusable-{code}-{len(server.routes)}"
    url = server.url(path)
    server.put(path, document(url, make_vm(url, make_party().key.public_key)))
    assert code_of(lambda: resolver.verification_method(f"{url}#key-1", "assertionMethod")) == code
    assert resolver.resolve(url).methods_for("assertionMethod") == []  # never a candidate either


def test_a_document_that_parses_is_cached(server: _Server, resolver: Resolver) -> None:
    key = make_party().key.public_key
    url = server.url("/cached")
    server.put("/cached", document(url, multikey(url, key)))
    before = len(server.seen)
    assert resolver.verification_method(f"{url}#key-1", "assertionMethod").public_key == key
    assert resolver.verification_method(f"{url}#key-1", "assertionMethod").public_key == key
    assert server.seen[before:] == ["/cached"]  # one fetch: the next verifications are warm


# --- credentials from an issuer URL ---------------------------------------------------------------


@pytest.fixture
def issuer_url(server: _Server) -> Iterator[tuple[str, PrivateKey]]:
    """An issuer URL with an Ed25519 Multikey and a P-256 JsonWebKey for assertions."""
    ed, p256 = PrivateKey.generate("EdDSA"), PrivateKey.generate("ES256")
    path = f"/issuers/{len(server.routes)}"
    url = server.url(path)
    server.put(path, document(url, multikey(url, ed.public_key), jsonwebkey(url, p256.public_key, "key-2")))
    yield url, ed
    server.routes.pop(path, None)


def _vc(key: PrivateKey, issuer: str, kid: str | None, subject: str = "did:example:agent", **kw: Any) -> str:
    return issue_credential(key, issuer=issuer, kid=kid, subject=subject, types=["ModelAccessCredential"],
                            claims={"models": ["gpt-4o"]}, valid_from=NOW - 3600, **kw)


@pytest.mark.parametrize(
    "kid",
    [
        pytest.param(lambda url: f"{url}#key-1", id="absolute-kid"),
        pytest.param(lambda url: "#key-1", id="fragment-kid"),
        pytest.param(lambda url: "key-1", id="bare-fragment-kid"),
        pytest.param(lambda url: None, id="no-kid"),
    ],
)
def test_credential_verifies_with_a_key_from_the_controller_document(resolver: Resolver, issuer_url, kid) -> None:
    url, key = issuer_url
    vc = Verifier(resolver=resolver, clock=lambda: NOW).verify_credential(_vc(key, url, kid(url)))
    assert (vc.issuer, vc.kid, vc.issuer_key) == (url, f"{url}#key-1", key.public_key)


def test_jsonwebkey_method(resolver: Resolver, server: _Server) -> None:
    key = PrivateKey.generate("ES256")
    url = server.put("/jwk-issuer", document(server.url("/jwk-issuer"), jsonwebkey(server.url("/jwk-issuer"), key.public_key)))
    vc = Verifier(resolver=resolver, clock=lambda: NOW).verify_credential(_vc(key, url, f"{url}#key-1"))
    assert vc.kid == f"{url}#key-1"


@pytest.mark.parametrize(
    "case, code",
    [
        pytest.param("kid-of-another-url", "untrusted_key", id="kid-of-another-controller"),
        pytest.param("kid-no-fragment", "untrusted_key", id="kid-without-fragment"),
        pytest.param("unknown-fragment", "untrusted_key", id="kid-fragment-not-in-document"),
        pytest.param("other-key", "signature_invalid", id="signed-by-a-key-not-in-the-document"),
        pytest.param("not-assertion", "untrusted_key", id="method-not-for-assertions"),
        pytest.param("issuer-http", "controller_url_refused", id="issuer-is-plain-http"),
    ],
)
def test_credential_refusals(resolver: Resolver, server: _Server, issuer_url, case: str, code: str) -> None:
    url, key = issuer_url
    verifier = Verifier(resolver=resolver, clock=lambda: NOW)
    if case == "kid-of-another-url":
        token = _vc(key, url, server.url("/issuers/elsewhere#key-1"))
    elif case == "kid-no-fragment":
        token = _vc(key, url, url + "#")
    elif case == "unknown-fragment":
        token = _vc(key, url, f"{url}#key-9")
    elif case == "other-key":
        token = _vc(PrivateKey.generate("EdDSA"), url, f"{url}#key-1")
    elif case == "not-assertion":
        path = "/auth-only"
        u = server.url(path)
        server.put(path, document(u, multikey(u, key.public_key), assertion=[]))
        token = _vc(key, u, f"{u}#key-1")
    else:
        token = _vc(key, "http://" + url.split("://", 1)[1], "#key-1")
    assert code_of(lambda: verifier.verify_credential(token)) == code


# --- trust: the policy must name the URL -------------------------------------------------------------


def _url_policy(url: str) -> str:
    return policy_text(AUD, "did:example:placeholder").replace("- did: did:example:placeholder", f"- url: {url}")


def _gate(resolver: Resolver, policy: str) -> Gate:
    return Gate(policy=Policy.from_yaml(policy), verifier=Verifier(resolver=resolver, clock=lambda: NOW),
                status=StatusChecker([FakeStatus()]), clock=lambda: NOW, gateway_key=PrivateKey.generate("EdDSA"))


def _call(gate: Gate, holder: Party, token: str) -> Any:
    view = RequestView(method="POST", path="/v1/chat/completions", host="gw.example", scheme="https", headers=(),
                       model="gpt-4o", body_available=True)
    nonce = gate.check(view).body["nonce"]
    vp = create_presentation(holder.key, holder=holder.did, kid=holder.kid, credentials=[token], audience=AUD,
                             nonce=nonce, issued_at=NOW)
    return gate.check(RequestView(method="POST", path="/v1/chat/completions", host="gw.example", scheme="https",
                                  headers=[("Authorization", f"VP {vp}")], model="gpt-4o", body_available=True))


def test_gate_allows_an_issuer_url_the_policy_names(resolver: Resolver, issuer_url) -> None:
    url, key = issuer_url
    holder = make_party()
    token = _vc(key, url, f"{url}#key-1", subject=holder.did, status={"type": STATUS_TYPE, "id": "test:1"})
    d = _call(_gate(resolver, _url_policy(url)), holder, token)
    assert d.allow, d.body
    assert dict(d.grant_headers)["X-Vcgate-Issuer"] == url


def test_gate_refuses_an_issuer_url_the_policy_does_not_name(resolver: Resolver, issuer_url, server: _Server) -> None:
    url, key = issuer_url
    holder = make_party()
    token = _vc(key, url, f"{url}#key-1", subject=holder.did, status={"type": STATUS_TYPE, "id": "test:1"})
    # A policy trusting another URL of the same host, and one trusting only a DID.
    for policy in (_url_policy(server.url("/issuers/other")), policy_text(AUD, make_party().did)):
        d = _call(_gate(resolver, policy), holder, token)
        assert (d.allow, d.code) == (False, "issuer_not_trusted")


def test_gate_refuses_a_hostile_document(resolver: Resolver, server: _Server) -> None:
    key, holder = PrivateKey.generate("EdDSA"), make_party()
    url = server.url("/hostile-issuer")
    server.put("/hostile-issuer", document(url, multikey(url, key.public_key, controller="https://attacker.test/")))
    token = _vc(key, url, f"{url}#key-1", subject=holder.did, status={"type": STATUS_TYPE, "id": "test:1"})
    d = _call(_gate(resolver, _url_policy(url)), holder, token)
    assert (d.allow, d.status, d.code) == (False, 401, "controller_mismatch")


@pytest.mark.parametrize(
    "entry, fragment",
    [
        pytest.param("url: http://issuer.example/issuers/1", "only https URLs", id="http"),
        pytest.param("url: https://Issuer.example/issuers/1", "canonical", id="not-canonical"),
        pytest.param("url: did:example:123", "only https URLs", id="did-under-url"),
        pytest.param("did: https://issuer.example/issuers/1", "not a DID", id="url-under-did"),
        pytest.param("{did: 'did:example:1', url: 'https://issuer.example/i'}", "exactly one", id="both"),
        pytest.param("{name: x}", "exactly one", id="neither"),
    ],
)
def test_policy_trusted_issuer_url_is_validated(entry: str, fragment: str) -> None:
    text = policy_text(AUD, "did:example:placeholder").replace("- did: did:example:placeholder", f"- {entry}")
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(text)
    assert fragment in info.value.message


def test_forged_token_with_an_embedded_key_is_not_helped_by_the_document(resolver: Resolver, issuer_url) -> None:
    url, key = issuer_url
    attacker = PrivateKey.generate("EdDSA")
    payload = {"@context": ["https://www.w3.org/ns/credentials/v2"], "type": ["VerifiableCredential"],
               "issuer": url, "credentialSubject": {"id": "did:example:agent"}}
    token = forge({"alg": "EdDSA", "typ": "vc+jwt", "kid": f"{url}#key-1", "jwk": attacker.public_key.jwk()}, payload,
                  attacker)
    assert code_of(lambda: Verifier(resolver=resolver, clock=lambda: NOW).verify_credential(token)) == "header_not_allowed"


def test_network_resolvers_of_the_cli_and_serve_take_issuer_urls(tmp_path) -> None:
    """`vcgate verify` (default resolver), `serve --did-web` / VCGATE_DID_WEB=1 and the plugins
    resolve issuer URLs with the did:web fetch settings; without network they do not."""
    from vcgate.assembly import GateConfig
    from vcgate.cli.base import NetworkOptions, make_resolver

    assert "https" in make_resolver("default", NetworkOptions(did_web_ports=(8443,))).methods
    assert "https" not in make_resolver("local").methods
    assert "https" in Resolver.default().methods
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(AUD, make_party().did))
    for did_web, expected in ((True, True), (False, False)):
        with GateConfig(policy=str(policy), did_web=did_web).build(gateway_key=PrivateKey.generate("EdDSA")) as built:
            assert ("https" in built.gate.verifier.resolver.methods) is expected
