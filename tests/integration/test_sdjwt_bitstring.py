"""A Bitstring Status List behind an SD-JWT VC, through the real gate and a real list host.

The credential carries ``status.bitstring_status_list`` (a ``BitstringStatusListEntry``,
docs/sd-jwt.md); the gate is built as ``vcgate serve`` builds it (``GateConfig(status_lists=True)``:
the Bitstring method with its SSRF-checked fetcher, size caps and cache), answers through the
ASGI middleware, and the list is served over TLS from 127.0.0.1 as ``status.test`` (only the
name lookup is faked). Issue -> allowed -> revoke and republish -> refused ``revoked``; a
purpose the list does not have and a list host that does not answer both fail closed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import vcgate.fetch
from tests.https_server import FileHandler, FileServer, make_pki, resolve_hosts, serving
from tests.integration.gateway_support import POLICY, free_port
from tests.middleware.apps import starlette_app
from tests.support import make_party
from vcgate.assembly import GateConfig
from vcgate.client import Holder
from vcgate.credentials.sdjwt import BITSTRING_STATUS_MEMBER, issue_sd_jwt_vc
from vcgate.status.bitstring import StatusList

pytestmark = pytest.mark.integration

HOST = "status.test"  # RFC 6761: never in real DNS
AUD = "https://models.example.com"
CHAT = {"model": "llama-3-70b", "messages": []}


class _Handler(FileHandler):
    content_type = "application/vc+jwt"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def status_test_resolves_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vcgate.fetch, "system_resolve_host",
                        resolve_hosts({HOST: ["127.0.0.1"]}, fallback=vcgate.fetch.system_resolve_host))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict]:
    pki = make_pki(tmp_path, HOST, ca_name="vcgate SD-JWT bitstring test CA")
    served = tmp_path / "www"
    (served / "lists").mkdir(parents=True)
    issuer, agent = make_party("EdDSA"), make_party("ES256")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(audience=AUD, issuer=issuer.did))
    clock = Clock()
    with serving(FileServer(pki.server_context(), served, _Handler)) as server:
        url = f"https://{HOST}:{server.port}/lists/1"
        lst = StatusList.create(url)

        def publish() -> None:
            token = lst.to_credential(issuer.key, issuer=issuer.did, kid=issuer.kid, valid_from=clock() - 60)
            (served / "lists" / "1").write_text(token)

        def credential(entry: dict) -> str:
            return issue_sd_jwt_vc(
                issuer.key, issuer=issuer.did, kid=issuer.kid, vct="ModelAccessCredential",
                claims={"models": ["llama-3-70b"], "org": "acme"}, valid_from=clock() - 60,
                valid_until=clock() + 86400, holder_kid=agent.kid, status={BITSTRING_STATUS_MEMBER: entry},
            )

        config = GateConfig(policy=str(policy), status_lists=True, allow_networks=("127.0.0.1/32",), ca_bundle=str(pki.ca))
        assembled = config.build(clock=clock, gateway_key=make_party().key)
        try:
            yield {"lst": lst, "publish": publish, "credential": credential, "agent": agent, "clock": clock,
                   "app": starlette_app(assembled.gate), "url": url}
        finally:
            assembled.close()


def _client(world: dict, vc: str) -> tuple[TestClient, object]:
    holder = Holder(world["agent"].key, credentials=[vc], clock=world["clock"])
    return TestClient(world["app"], base_url=AUD), holder.httpx2_auth()


def test_issue_verify_revoke_through_the_gate(world: dict) -> None:
    lst = world["lst"]
    index = lst.allocate()
    vc = world["credential"](lst.entry(index))
    world["publish"]()
    client, auth = _client(world, vc)
    with client:
        r = client.post("/v1/chat/completions", json=CHAT, auth=auth)
        assert r.status_code == 200, r.text
        lst.set(index)  # the issuer revokes and republishes
        world["publish"]()
        world["clock"].now += 3600  # past the cached list's TTL
        r = client.post("/v1/chat/completions", json=CHAT, auth=auth)
        assert (r.status_code, r.json()["error"]) == (401, "revoked"), r.text  # a new presentation is refused too


@pytest.mark.parametrize(
    "change, code",
    [
        # The list is a revocation list: an entry claiming a suspension purpose is not in it.
        pytest.param(lambda e, url: {**e, "statusPurpose": "suspension"}, "status_unavailable", id="purpose-mismatch"),
        # Nothing listens there: the gate refuses rather than guessing "not revoked".
        pytest.param(lambda e, url: {**e, "statusListCredential": f"https://{HOST}:{free_port()}/lists/1",
                                     "id": f"https://{HOST}/x#1"}, "status_unavailable", id="unreachable-list"),
        # A list the gate must never fetch (plain http): refused before any request.
        pytest.param(lambda e, url: {**e, "statusListCredential": url.replace("https:", "http:")},
                     "status_unavailable", id="http-list-url"),
    ],
)
def test_fails_closed(world: dict, change, code: str) -> None:
    lst = world["lst"]
    entry = change(lst.entry(lst.allocate()), world["url"])
    world["publish"]()
    client, auth = _client(world, world["credential"](entry))
    with client:
        r = client.post("/v1/chat/completions", json=CHAT, auth=auth)
    assert (r.status_code, r.json()["error"]) == (503, code), r.text
