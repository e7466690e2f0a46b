"""What importing the core costs: the gate must not load the HTTP stack did:web needs.

Run in a fresh interpreter: this test process has long imported ``requests``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={"PYTHONPATH": SRC}
    )


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(
            "import vcgate.gate, sys; assert 'requests' not in sys.modules and 'urllib3' not in sys.modules",
            id="import-vcgate.gate",
        ),
        pytest.param(
            # `vcgate key new`, `issue`, `--help` import the package, not the gate (PEP 562).
            "import vcgate, sys; assert 'vcgate.gate' not in sys.modules; "
            "from vcgate import Gate; assert Gate is sys.modules['vcgate.gate'].Gate",
            id="import-vcgate-loads-the-gate-on-first-use",
        ),
        pytest.param(
            "import sys; from vcgate.did import Resolver; r = Resolver.default(); "
            "assert 'web' in r.methods, r.methods; "
            "assert 'requests' not in sys.modules and 'urllib3' not in sys.modules",
            id="default-resolver-registers-did-web-lazily",
        ),
    ],
)
def test_the_core_does_not_import_requests(code: str) -> None:
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_did_web_loads_on_first_use() -> None:
    # The lazy method really is did:web: its first DID imports did/web.py (and requests), whose
    # own rule refuses an IP literal -- not "method not supported".
    result = _run(
        "import sys; from vcgate.did import Resolver; from vcgate.errors import VCGateError\n"
        "r = Resolver.default()\n"
        "try:\n"
        "    r.resolve('did:web:127.0.0.1')\n"
        "except VCGateError as exc:\n"
        "    print(exc.code)\n"
        "assert 'requests' in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "did_invalid"
