"""`make demo` runs examples/demo.py: it must tell the whole story and end well."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def test_demo_runs_end_to_end():
    out = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout
    assert "   200: [llama-3-70b for did:key:" in text
    assert "403 claim_mismatch" in text
    assert "forged credential refused: signature_invalid" in text
    assert "401 revoked" in text
    assert "llama-3-8b: 429 quota_exceeded" in text  # the sub-agent's narrower budget
    assert "llama-3-70b: 403 claim_mismatch" in text  # and narrower model list
    assert "sub-agent: 401 delegation_revoked" in text  # the root's revocation reaches it
    assert "chain intact: True" in text
    assert text.rstrip().endswith("Demo complete.")
    assert "Traceback" not in out.stderr
