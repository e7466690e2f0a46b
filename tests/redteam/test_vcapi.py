"""Red-team findings on ``vcgate serve --vc-api``, through real HTTP against real processes.

* ``/credentials/issue`` mounted beside the gate (``--policy ... --vc-api``): anyone who reached
  the auth service had the issuer sign a ModelAccessCredential for their own DID and was let
  through by the gate that trusts that issuer.
* Hostile bodies (2000+ nested brackets, any size) ended in a 500 with a traceback.
* RDFC-1.0 has no work bound in pyld: a ~1 KB document with 7 blank nodes in a clique took 37 s
  of CPU (8: minutes) on ``/credentials/verify`` and ``/credentials/issue``.
* ``GET /1.0/identifiers/did:key:z<60 KB>`` took 5 s (quadratic base58 decoding).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.gateway_support import AuthService, free_port, gateway_world, stop_process, wait_http
from tests.redteam.nginx import ask, challenge_nonce
from tests.support import make_party
from vcgate.credentials import create_presentation
from vcgate.keys import write_key_file

V2 = "https://www.w3.org/ns/credentials/v2"
TIMEOUT = 120  # a safety net only: the unbounded cases ran for minutes


class VCAPI:
    """``vcgate serve --vc-api`` alone (the issuing service), on a free port."""

    def __init__(self, key_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "vcgate", "serve", "--vc-api", "--issuer-key", str(key_file),
                    "--port", str(self.port)]

    def __enter__(self) -> VCAPI:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        wait_http(self.url + "/status-lists/0", proc=self.proc)  # any HTTP answer (404) means up
        return self

    def __exit__(self, *exc: object) -> None:
        self.output = stop_process(self.proc)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AuthService, VCAPI, object]]:
    tmp = tmp_path_factory.mktemp("vcapi")
    world = gateway_world(tmp, "http://127.0.0.1:9")
    # Status off (as in many policies): the minted credential's in-memory status list is not fetched.
    world.policy.write_text(world.policy.read_text().replace("rules:\n", "defaults: {status: off}\nrules:\n", 1))
    # The operator's case: the auth service's VC-API runs with the very issuer key the policy trusts.
    write_key_file(tmp / "issuer.key", world.issuer.key, passphrase=None)
    with AuthService(world.policy, args=("--vc-api", "--issuer-key", str(tmp / "issuer.key"))) as gate, \
            VCAPI(tmp / "issuer.key") as alone:
        yield gate, alone, world
    for proc in (gate, alone):
        assert "Traceback" not in proc.output, proc.output[-3000:]


def _request(world: object, subject: str) -> dict:
    return {"credential": {"@context": [V2, "https://www.w3.org/ns/credentials/examples/v2"],
                           "type": ["VerifiableCredential", "ModelAccessCredential"],
                           "issuer": str(world.issuer.did), "credentialSubject": {"id": subject}}}


@pytest.mark.parametrize("path", [
    pytest.param("/credentials/issue", id="default-profile"),
    pytest.param("/vc-jose/credentials/issue", id="vc-jose"),
    pytest.param("/eddsa-rdfc-2022/credentials/issue", id="eddsa-rdfc"),
])
def test_the_auth_service_mints_nothing(servers, path):
    gate, alone, world = servers
    attacker = make_party()
    minted = requests.post(gate.url + path, json=_request(world, str(attacker.did)), timeout=TIMEOUT)
    assert minted.status_code == 404, minted.text
    assert requests.get(gate.url + "/status-lists/0", timeout=10).status_code == 404
    # What the attacker did with it before: present it to the gate that trusts the issuer.
    issued = requests.post(alone.url + "/vc-jose/credentials/issue", json=_request(world, str(attacker.did)),
                           timeout=TIMEOUT)
    assert issued.status_code == 201  # the standalone issuer (its operator's choice) still issues
    # ... and the auth service still verifies.
    verified = requests.post(gate.url + "/credentials/verify",
                             json={"verifiableCredential": issued.json()["verifiableCredential"]}, timeout=TIMEOUT)
    assert verified.status_code == 200 and verified.json()["verified"] is True


def test_minted_credential_would_have_opened_the_gate(servers):
    """The exploit's second half, so the first one is known to matter: a credential from the issuer
    key, for the attacker's own DID, is allowed by the gate (the fix is that nobody can mint it)."""
    gate, alone, world = servers
    attacker = make_party()
    issued = requests.post(alone.url + "/vc-jose/credentials/issue", json=_request(world, str(attacker.did)),
                           timeout=TIMEOUT).json()["verifiableCredential"]
    token = issued["id"].split(",", 1)[1]
    vp = create_presentation(attacker.key, holder=attacker.did, kid=attacker.kid, credentials=[token],
                             audience=world.audience, nonce=challenge_nonce(gate.url), issued_at=time.time())
    allowed = ask(gate.url, vp)
    assert allowed.status_code == 200, allowed.text


def _clique(n: int) -> list[dict]:
    return [{"@id": f"_:b{i}", "knows": [{"@id": f"_:b{j}"} for j in range(n) if j != i]} for i in range(n)]


def _di_credential(issuer: str, subject: dict) -> dict:
    key = issuer.split(":")[2]
    return {"@context": [V2, {"@vocab": "https://vocab.example/#"}], "type": ["VerifiableCredential"],
            "issuer": issuer, "credentialSubject": {"id": "did:example:s", **subject},
            "proof": {"type": "DataIntegrityProof", "cryptosuite": "eddsa-rdfc-2022",
                      "proofPurpose": "assertionMethod", "verificationMethod": f"{issuer}#{key}",
                      "proofValue": "z" + "1" * 64}}


def _deep(n: int, open_: str, close: str) -> bytes:
    return ('{"verifiableCredential":' + open_ * n + close * n + "}").encode()


BODIES = [
    pytest.param(_deep(100_000, "[", "]"), "too_large", id="deep-arrays"),
    pytest.param(_deep(3_000, '{"a":', "}"), "too_large", id="deep-objects"),
    pytest.param(b'{"verifiableCredential": {}, "verifiableCredential": 1}', "malformed", id="duplicate-names"),
    pytest.param(b'{"verifiableCredential": "\xff\xfe"}', "malformed", id="not-utf8"),
    pytest.param(b'{"verifiableCredential": NaN}', "malformed", id="nan"),
    pytest.param(b'{"verifiableCredential": "' + b"a" * (2 << 20) + b'"}', "too_large", id="over-1MiB"),
]
ENDPOINTS = ["/credentials/verify", "/presentations/verify", "/vc-jose/credentials/issue"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("body, code", BODIES)
def test_hostile_bodies_get_coded_refusals(servers, endpoint, body, code):
    _, alone, _ = servers
    answer = requests.post(alone.url + endpoint, data=body, timeout=TIMEOUT)
    assert answer.status_code in (400, 413), answer.text[:300]
    assert answer.json()["errors"][0]["code"] == code


@pytest.mark.parametrize("where", ["gate", "alone"])
def test_canonicalisation_has_a_work_bound(servers, where):
    gate, alone, world = servers
    url = (gate if where == "gate" else alone).url
    credential = _di_credential(str(world.issuer.did), {"knows": _clique(8)})
    answer = requests.post(url + "/credentials/verify", json={"verifiableCredential": credential}, timeout=TIMEOUT)
    assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == "too_large", answer.text[:300]
    if where == "alone":
        unsigned = {k: v for k, v in credential.items() if k != "proof"}
        issued = requests.post(url + "/credentials/issue", json={"credential": unsigned}, timeout=TIMEOUT)
        assert issued.status_code == 400 and issued.json()["errors"][0]["code"] == "too_large", issued.text[:300]


def test_ordinary_nesting_still_canonicalises(servers):
    """The bound is not a ban: ten nested blank nodes and a few identical objects verify."""
    _, alone, world = servers
    nested: dict = {"level": 0}
    for i in range(1, 10):
        nested = {"level": i, "inner": nested}
    subject = {"nested": nested, "skills": [{"name": "x"}, {"name": "x"}, {"name": "x"}]}
    unsigned = {k: v for k, v in _di_credential(str(world.issuer.did), subject).items() if k != "proof"}
    issued = requests.post(alone.url + "/credentials/issue", json={"credential": unsigned}, timeout=TIMEOUT)
    assert issued.status_code == 201, issued.text[:300]
    verified = requests.post(alone.url + "/credentials/verify",
                             json={"verifiableCredential": issued.json()["verifiableCredential"]}, timeout=TIMEOUT)
    assert verified.status_code == 200 and verified.json()["verified"] is True


def test_did_resolution_refuses_a_huge_did_at_once(servers):
    _, alone, _ = servers
    answer = requests.get(alone.url + "/1.0/identifiers/did:key:z" + "2" * 200_000, timeout=TIMEOUT)
    assert answer.status_code == 400
    assert answer.json()["didResolutionMetadata"]["error"] == "invalidDid"


@pytest.mark.parametrize("copies, status", [pytest.param(2, 200, id="two"), pytest.param(17, 400, id="seventeen")])
def test_a_presentation_carries_a_bounded_number_of_credentials(servers, copies, status):
    """Each embedded credential costs a canonicalisation: 300 copies of one (256 KB) took 16 s."""
    from vcgate.credentials.dataintegrity import DataIntegrity

    _, alone, world = servers
    unsigned = {k: v for k, v in _di_credential(str(world.issuer.did), {}).items() if k != "proof"}
    vc = requests.post(alone.url + "/credentials/issue", json={"credential": unsigned},
                       timeout=TIMEOUT).json()["verifiableCredential"]
    holder = make_party()
    vp = DataIntegrity().add_proof(
        {"@context": [V2], "type": ["VerifiablePresentation"], "holder": str(holder.did),
         "verifiableCredential": [vc] * copies},
        holder.key, verification_method=holder.kid, purpose="authentication", challenge="c",
        cryptosuite="eddsa-jcs-2022")
    answer = requests.post(alone.url + "/presentations/verify",
                           json={"verifiablePresentation": vp, "options": {"challenge": "c"}}, timeout=TIMEOUT)
    assert answer.status_code == status, answer.text[:300]
    if status == 400:
        assert answer.json()["errors"][0]["code"] == "too_large"


def test_expansion_is_bounded_before_it_starts(servers):
    """pyld applies a scoped context to every object it covers: 300 status entries (a bundled
    type-scoped context) took 3.5 s to expand, 1900 objects under an inline one 38 s, before the
    node count after expansion could refuse them. Objects are now counted first."""
    _, alone, world = servers
    credential = _di_credential(str(world.issuer.did), {})
    # 600 objects of one node each: under the node limit after expansion, over the object limit.
    credential["credentialStatus"] = [
        {"id": f"https://status.example/1#{i}", "type": "BitstringStatusListEntry"} for i in range(600)]
    answer = requests.post(alone.url + "/credentials/verify", json={"verifiableCredential": credential}, timeout=TIMEOUT)
    assert answer.status_code == 400 and answer.json()["errors"][0]["code"] == "too_large", answer.text[:300]


@pytest.mark.parametrize("number, index", [
    pytest.param("9" * 5000, "1", id="list-number-5000-digits"),
    pytest.param("0", "9" * 5000, id="index-5000-digits"),
    pytest.param("0", "\u00b2", id="index-superscript-two"),
])
def test_status_check_of_odd_numbers_is_a_coded_refusal(servers, number, index):
    """``int()`` refuses more than 4300 digits and ``str.isdigit()`` takes '²': both were a 500
    with a traceback on a self-signed credential (verification trusts no issuer)."""
    from vcgate.credentials.dataintegrity import DataIntegrity

    _, alone, _ = servers
    signer = make_party()
    credential = {"@context": [V2], "type": ["VerifiableCredential"], "issuer": str(signer.did),
                  "credentialSubject": {"id": "did:example:1"},
                  "credentialStatus": {"id": f"{alone.url}/status-lists/0#1", "type": "BitstringStatusListEntry",
                                       "statusPurpose": "revocation", "statusListIndex": index,
                                       "statusListCredential": f"{alone.url}/status-lists/{number}"}}
    signed = DataIntegrity().add_proof(credential, signer.key, verification_method=signer.kid,
                                       cryptosuite="eddsa-jcs-2022")
    answer = requests.post(alone.url + "/credentials/verify", timeout=TIMEOUT,
                           json={"verifiableCredential": signed, "options": {"checks": ["proof", "credentialStatus"]}})
    assert answer.status_code == 422 and answer.json()["errors"][0]["code"] == "status_unavailable", answer.text[:300]
