"""docs/limits.md: its policy loads as written and its code runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.policy.helpers import HOLDER, cred
from tests.support import NOW
from vcgate.policy import Policy

DOC = (Path(__file__).resolve().parents[1] / "docs" / "limits.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, re.S)


def test_the_policy_loads():
    (text,) = [b for b in _blocks("yaml") if b.startswith("version: 1")]
    policy = Policy.from_yaml(text)
    assert [s.name for s in policy.document.limits] == ["agent-rpm", "monthly-tokens", "monthly-spend"]
    assert [s.name for s in policy.rules[0].limits] == ["chat-burst"]


def test_the_code_runs():
    (policy_text,) = [b for b in _blocks("yaml") if b.startswith("version: 1")]
    code = _blocks("python")[-1]  # the pieces on their own (the first block needs real files)
    credential = cred(subject=HOLDER, claims={"limits": {"rpm": 60, "tokens_per_month": 1_000_000}})
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
    scope = {"POLICY": policy_text, "credential": credential, "body": body, "now": NOW}
    exec(compile(code, "docs/limits.md", "exec"), scope)  # noqa: S102 -- our own documentation
    assert json.loads(scope["upstream_body"])["max_tokens"] == 1024
    used = scope["meter"].store.peek(scope["admission"].plan.counters)
    # agent-rpm, monthly-tokens (12 + 34), monthly-spend (12 x 2.5 + 34 x 10 micro-USD), chat-burst
    assert [s.used for s in used] == [1, 46, 370, 1]
