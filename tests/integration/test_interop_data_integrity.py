"""Data Integrity interoperability with Digital Bazaar's @digitalbazaar/vc (npm), both ways:
eddsa-rdfc-2022 (VCDM 2.0) and Ed25519Signature2020 (VCDM 1.1, what most deployed issuers emit).

The node side is ``node-di/di-interop.mjs`` with the versions pinned in ``node-di/package.json``
and its lock; ``make test`` installs them with ``npm ci``. Documents load only from the packages'
bundled contexts and the did:key driver, on both sides: no network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import require_real
from vcgate.credentials.dataintegrity import DataIntegrity
from vcgate.did.key import did_key_from_public_key
from vcgate.errors import SignatureInvalidError
from vcgate.keys import PrivateKey

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).parent / "node-di"
SCRIPT = NODE_DIR / "di-interop.mjs"
SEED = bytes(range(100, 132))

V2 = {"@context": ["https://www.w3.org/ns/credentials/v2", "https://www.w3.org/ns/credentials/examples/v2"],
      "id": "urn:uuid:0f5a1f3c-2b8e-4c61-9d0a-6c1b2a3d4e5f", "type": ["VerifiableCredential", "ModelAccessCredential"],
      "validFrom": "2026-01-01T00:00:00Z", "credentialSubject": {"id": "did:example:agent", "tier": "gold"}}
V11 = {"@context": ["https://www.w3.org/2018/credentials/v1", "https://w3id.org/security/suites/ed25519-2020/v1"],
       "id": "urn:uuid:5e0b7c2d-8a1f-4e3b-b6c9-0d1e2f3a4b5c", "type": ["VerifiableCredential"],
       "issuanceDate": "2026-01-01T00:00:00Z", "credentialSubject": {"id": "did:example:agent"}}
CASES = [pytest.param("eddsa-rdfc-2022", V2, id="eddsa-rdfc-2022"),
         pytest.param("Ed25519Signature2020", V11, id="Ed25519Signature2020")]


@pytest.fixture(scope="module")
def node() -> Any:
    exe = shutil.which("node")
    if exe is None:
        require_real("node", "install Node.js 20 or newer")
    if not (NODE_DIR / "node_modules" / "@digitalbazaar" / "vc").is_dir():
        require_real("@digitalbazaar/vc", "run `make test`, or `npm ci --prefix tests/integration/node-di`")

    def run(*args: str, document: dict[str, Any]) -> dict[str, Any]:
        done = subprocess.run([exe, str(SCRIPT), *args], input=json.dumps(document), capture_output=True,
                              text=True, timeout=60, cwd=NODE_DIR)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    return run


@pytest.mark.parametrize("suite, credential", CASES)
def test_digital_bazaar_signs_vcgate_verifies(node: Any, suite: str, credential: dict[str, Any]) -> None:
    signed = node("sign", suite, SEED.hex(), document=credential)
    key = PrivateKey.from_raw_private("EdDSA", SEED)
    assert signed["issuer"] == str(did_key_from_public_key(key.public_key))  # same did:key from the seed
    di = DataIntegrity()
    (result,) = di.verify(signed, purpose="assertionMethod", controller=signed["issuer"])
    assert result.cryptosuite == suite and result.contexts_pinned
    signed["credentialSubject"]["id"] = "did:example:mallory"
    with pytest.raises(SignatureInvalidError):
        di.verify(signed, purpose="assertionMethod", controller=signed["issuer"])


@pytest.mark.parametrize("suite, credential", CASES)
def test_vcgate_signs_digital_bazaar_verifies(node: Any, suite: str, credential: dict[str, Any]) -> None:
    key = PrivateKey.from_raw_private("EdDSA", SEED)
    did = str(did_key_from_public_key(key.public_key))
    document = {**credential, "issuer": did}
    signed = DataIntegrity().add_proof(document, key, verification_method=f"{did}#{did[8:]}", cryptosuite=suite)
    assert node("verify", suite, document=signed) == {"verified": True, "error": None}
    tampered = json.loads(json.dumps(signed))
    tampered["credentialSubject"]["id"] = "did:example:mallory"
    assert node("verify", suite, document=tampered)["verified"] is False
