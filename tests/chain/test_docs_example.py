"""The example in docs/chain.md runs as written (on the embedded chain)."""

from __future__ import annotations

import re

from tests.chain.helpers import REPO, require_chain_stack

require_chain_stack()


def test_docs_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "chain.md").read_text(), re.DOTALL)
    (example,) = [b for b in blocks if "fetch_events(" in b]
    exec(compile(example, "docs/chain.md", "exec"), {})  # noqa: S102 - our own documentation
    assert "revoked in block" in capsys.readouterr().out
