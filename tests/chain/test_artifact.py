"""The committed artifact is what the pinned compiler makes of the committed source."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

from tests.chain.helpers import CHAIN_SRC, NPM_HINT, REPO, TOOLS, require_chain_stack
from tests.support import require_real

require_chain_stack()

from vcgate.chain.artifact import load_artifact, source_matches_artifact  # noqa: E402

SOURCE = CHAIN_SRC / "RevocationRegistry.sol"
ARTIFACT = CHAIN_SRC / "artifacts" / "RevocationRegistry.json"


def _pinned() -> dict[str, str]:
    return json.loads((TOOLS / "package.json").read_text())["dependencies"]


def test_source_hash_recorded():
    assert source_matches_artifact()
    assert load_artifact().source_sha256 == hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def test_npm_tools_pinned_exactly():
    lock = json.loads((TOOLS / "package-lock.json").read_text())["packages"]
    for name, version in _pinned().items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} must be pinned exactly, not {version!r}"
        assert lock[f"node_modules/{name}"]["version"] == version
    # anvil's binary comes from a platform package; the lock must pin those too.
    assert lock["node_modules/@foundry-rs/anvil-linux-amd64"]["version"] == _pinned()["@foundry-rs/anvil"]


def test_compiler_settings_pinned():
    compiler = load_artifact().compiler
    solc = _pinned()["solc"]
    assert compiler["version"].startswith(solc + "+")
    assert compiler["evmVersion"] == "cancun"
    assert compiler["optimizer"] == {"enabled": True, "runs": 200}
    assert re.search(rf"^pragma solidity {re.escape(solc)};$", SOURCE.read_text(), re.MULTILINE)


def test_fresh_build_matches_committed_artifact():
    node = shutil.which("node")
    if node is None:
        require_real("node", "install Node.js 20 or newer (Debian: apt-get install nodejs npm)")
    for name in _pinned():
        if not (TOOLS / "node_modules" / name / "package.json").is_file():
            require_real(f"npm package {name}", NPM_HINT)
    before = ARTIFACT.read_bytes()
    proc = subprocess.run(
        [node, str(TOOLS / "build.mjs"), "--check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert ARTIFACT.read_bytes() == before, "--check must not write"
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "matches a fresh build" in proc.stdout
