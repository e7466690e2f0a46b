"""Red-team finding: a fetch's time budget did not cover the response headers (only each socket
read was bounded), so a host trickling them held the fetch, and the auth-service thread waiting
on it, as long as it liked. (A trickled TLS handshake held: CPython bounds it as a whole.)

Whoever signs a presentation chooses such a host: a did:web holder (``--did-web``) is resolved
before any policy decision, and a delegation link (signed by a delegate, not a trusted issuer)
names its own status list. A few such presentations took every thread of ``vcgate serve``.
Real TLS servers on 127.0.0.1; only the name lookup of ``did.test`` is faked (RFC 6761).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.https_server import HTTPSServer, QuietHandler, make_pki, resolve_hosts, serving
from vcgate.did.web import WebMethod
from vcgate.errors import VCGateError

HOST = "did.test"
BUDGET = 1.0


class HeaderTrickle(QuietHandler):
    """Sends a status line, then one header byte every 0.2 s until the test ends."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        self.wfile.flush()
        while not self.server.stopping.wait(0.2):
            self.wfile.write(b"X")
            self.wfile.flush()


class HandshakeTrickle(QuietHandler):
    """Served without TLS: answers the ClientHello with the header of a 16 KiB TLS handshake
    record, then its body one byte every 0.2 s (the client's handshake waits for all of it)."""

    def setup(self) -> None:
        self.request.recv(4096)  # the ClientHello
        self.request.sendall(bytes([0x16, 0x03, 0x03, 0x40, 0x00]))
        while not self.server.stopping.wait(0.2):
            self.request.sendall(b"\x00")

    def handle(self) -> None:
        pass

    def finish(self) -> None:
        pass


@pytest.fixture(scope="module")
def ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    pki = make_pki(tmp_path_factory.mktemp("fetch"), HOST)
    with serving(HTTPSServer(HeaderTrickle, pki.server_context())) as headers, \
            serving(HTTPSServer(HandshakeTrickle)) as handshake:
        yield {"headers": headers.port, "handshake": handshake.port, "ca": str(pki.ca)}


@pytest.mark.parametrize("stage", ["headers", "handshake"])
def test_a_trickling_did_web_host_is_cut_off_at_the_budget(ports, stage):
    method = WebMethod(resolve_host=resolve_hosts({HOST: ["127.0.0.1"]}), allow_networks=["127.0.0.1/32"],
                       allow_ports=[ports[stage]], verify=ports["ca"], timeout=BUDGET)
    outcome: list[BaseException] = []

    def resolve() -> None:
        try:
            method.resolve(f"did:web:{HOST}%3A{ports[stage]}")
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    # A safety net, not a timing assertion: unbounded, the fetch runs until the server stops.
    worker.join(60)
    method.close()
    assert not worker.is_alive(), "the fetch was still running after 60 s (budget 1 s)"
    assert len(outcome) == 1 and isinstance(outcome[0], VCGateError), outcome
    assert outcome[0].code == "did_resolution_failed", outcome[0].code
