"""examples/policy.yaml loads, decides as documented, and is the example in docs/policy.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import NOW
from vcgate.policy import Policy, RequestFacts
from vcgate.cli.policy_report import check

from .helpers import HOLDER, cred

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policy.yaml"
DOC = ROOT / "docs" / "policy.md"
PLATFORM = "did:web:issuer.example.com"
LAB = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.from_file(EXAMPLE)


def test_docs_embed_the_example_verbatim():
    text = DOC.read_text()
    start = text.index("<!-- examples/policy.yaml -->\n```yaml\n") + len("<!-- examples/policy.yaml -->\n```yaml\n")
    end = text.index("```\n", start)
    assert text[start:end] == EXAMPLE.read_text()


def test_example_checks_clean():
    code, text = check(EXAMPLE)
    assert code == 0 and "warning" not in text


GOLD = dict(issuer=PLATFORM, tier="gold", models=["gpt-4o", "llama-3"], limits={"rpm": 600}, agent="agent-1")


@pytest.mark.parametrize(
    "method, path, host, model, overrides, allow, code, rule",
    [
        pytest.param("GET", "/healthz", None, None, None, True, None, "health", id="health-public"),
        pytest.param("GET", "/v1/admin/keys", None, None, {}, False, "denied_by_rule", "no-admin", id="admin-denied"),
        pytest.param("GET", "/v1/models", None, None, {}, True, None, "list-models", id="list-models"),
        pytest.param("POST", "/v1/chat/completions", None, "gpt-4o", GOLD, True, None, "frontier-models", id="frontier-gold"),
        pytest.param(
            "POST", "/v1/chat/completions", None, "gpt-4o", dict(GOLD, tier="silver"), False, "claim_mismatch",
            "frontier-models", id="frontier-silver",
        ),
        pytest.param(
            "POST", "/v1/chat/completions", None, "gpt-4o", dict(GOLD, issuer=LAB), False, "issuer_not_trusted",
            "frontier-models", id="frontier-wrong-issuer",
        ),
        pytest.param(
            "POST", "/v1/chat/completions", None, "llama-3", dict(GOLD, tier="silver"), True, None, "chat", id="chat-silver",
        ),
        pytest.param(
            "POST", "/v1/chat/completions", None, "mixtral", GOLD, False, "claim_mismatch", "chat", id="model-not-covered",
        ),
        pytest.param(
            "GET", "/v1/experiments", "gpu.research.example.com", None,
            dict(issuer=LAB, types=("ResearchCredential",), project="proj-x"), True, None, "research", id="research",
        ),
        pytest.param("GET", "/v1/experiments", "models.example.com", None, {}, False, "no_matching_rule", None, id="default-deny"),
    ],
)
def test_example_decisions(policy, method, path, host, model, overrides, allow, code, rule):
    creds = None if overrides is None else [cred(**overrides)]
    request = RequestFacts(method, path, host=host, model=model, body_available=model is not None)
    decision = policy.decide(request, creds, now=NOW, holder=HOLDER)
    assert (decision.allow, decision.code, decision.rule) == (allow, code, rule), decision


def test_example_grants(policy):
    decision = policy.decide(
        RequestFacts("POST", "/v1/chat/completions", model="gpt-4o"), [cred(**GOLD)], now=NOW, holder=HOLDER
    )
    assert dict(decision.grants.headers) == {
        "X-Vcgate-Subject": HOLDER,
        "X-Vcgate-Issuer": PLATFORM,
        "X-Vcgate-Tier": "gold",
        "X-Vcgate-Rule": "frontier-models",
    }
    assert decision.grants.scopes == ("chat", "frontier")
