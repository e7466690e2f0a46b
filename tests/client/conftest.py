from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from tests.support import NOW, Party, make_party
from vcgate.client import Holder
from vcgate.credentials import issue_credential

from .gateway import Clock, FakeGateway

BASE = "http://gateway.test"


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def issuer() -> Party:
    return make_party("ES256")


@pytest.fixture
def agent() -> Party:
    return make_party("EdDSA")


@pytest.fixture
def credential(issuer: Party, agent: Party) -> str:
    return issue_credential(
        issuer.key, issuer=str(issuer.did), kid=issuer.kid, subject=str(agent.did),
        types=["ModelAccessCredential"], claims={"models": ["m"]}, valid_from=NOW - 3600, valid_until=NOW + 86400,
    )


@pytest.fixture
def holder(agent: Party, credential: str, clock: Clock) -> Holder:
    return Holder(agent.key, credentials=[credential], clock=clock)


@pytest.fixture
def make_gateway(clock: Clock, issuer: Party):
    def make(base: str = BASE, **options) -> FakeGateway:
        return FakeGateway(base=base, clock=clock, trusted_issuer=str(issuer.did), **options)

    return make


@pytest.fixture
def gateway(make_gateway) -> FakeGateway:
    return make_gateway()


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served(make_gateway) -> Iterator:
    """Start a fake gateway on 127.0.0.1 (a real HTTP server, for requests)."""
    servers = []

    def start(**options) -> FakeGateway:
        holder_box: list[FakeGateway] = []
        server = make_server("127.0.0.1", 0, lambda e, s: holder_box[0].wsgi_app(e, s), handler_class=_Quiet)
        gw = make_gateway(f"http://127.0.0.1:{server.server_port}", **options)
        holder_box.append(gw)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        return gw

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
