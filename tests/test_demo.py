"""`make demo` runs examples/demo.py: it must tell the whole story and end well."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def test_demo_runs_end_to_end():
    out = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ACCEPTED" in out.stdout
    assert "REFUSED signature_invalid" in out.stdout
    assert "REFUSED audience_mismatch" in out.stdout
    assert "REFUSED revoked" in out.stdout  # revoked on the embedded chain, seen by the mirror
    assert out.stdout.rstrip().endswith("Demo complete.")
    assert "Traceback" not in out.stderr
