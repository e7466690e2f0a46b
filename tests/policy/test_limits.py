"""Policy ``limits:`` and ``prices:``: the schema with positioned errors, and how a decision
becomes counters (numbers from the credential or the policy, never unlimited by accident)."""

from __future__ import annotations

import pytest

from tests.support import NOW
from vcgate.errors import LimitUnresolvedError
from vcgate.policy import Policy, RequestFacts
from vcgate.errors import PolicyError
from vcgate.policy.limits import CallEstimate, Caller, plan_limits

from .helpers import HOLDER, cred, header, line_of

RULE = """  - name: chat
    match: {paths: [/v1/chat/completions]}
    require: {types: [ModelAccessCredential]}
"""

ISSUE_LIMITS = """limits:
  - name: agent-rpm
    key: $subject
    requests: $claims.limits.rpm
    per: 1m
  - name: monthly-tokens
    key: $principal
    tokens: $claims.limits.tokens_per_month
    per: 30d
  - name: monthly-spend
    key: $principal
    usd: 50
    per: 30d
prices:
  gpt-4o*: {input: 2.5, output: 10}
  "*": {input: 1, output: 1}
"""


def policy(limits: str = ISSUE_LIMITS, rule: str = RULE) -> Policy:
    return Policy.from_yaml(header() + rule + limits, source="p.yaml")


def decide(p: Policy, **claims):  # noqa: D103
    c = cred(claims={"limits": {"rpm": 60, "tokens_per_month": 1_000_000}} | claims)
    d = p.decide(RequestFacts("POST", "/v1/chat/completions", model="gpt-4o", body_available=True), [c], now=NOW, holder=HOLDER)
    assert d.allow, d
    return d


def test_the_issue_example_loads_and_plans_three_counters():
    p = policy()
    d = decide(p)
    specs = p.limits_for(d)
    assert [s.name for s in specs] == ["agent-rpm", "monthly-tokens", "monthly-spend"]
    plan = plan_limits(specs, p.prices, Caller.from_decision(d), CallEstimate("gpt-4o", prompt_tokens=100, max_output=50))
    got = [(r.name, r.key, r.limit, r.counter.window, r.counter.amount) for r in plan.limits]
    assert got == [
        ("agent-rpm", HOLDER, 60, 60, 1),
        ("monthly-tokens", HOLDER, 1_000_000, 30 * 86400, 150),
        # 50 USD in micro-USD; 100 * 2.5 + 50 * 10 micro-USD reserved.
        ("monthly-spend", HOLDER, 50_000_000, 30 * 86400, 750),
    ]
    # Counter keys carry the limit's name and window: a changed window never mixes counts.
    assert plan.counters[0].key == f"agent-rpm/60|{HOLDER}"


def test_missing_number_is_refused_not_unlimited():
    p = policy()
    d = decide(p, limits={"tokens_per_month": 5})
    with pytest.raises(LimitUnresolvedError) as info:
        plan_limits(p.limits_for(d), p.prices, Caller.from_decision(d), CallEstimate("gpt-4o"))
    assert info.value.code == "limit_unresolved" and info.value.status == 403
    assert "agent-rpm" in info.value.message and "limits.rpm" in info.value.message


def test_missing_number_takes_the_stated_default():
    p = policy(ISSUE_LIMITS.replace("    per: 1m\n", "    per: 1m\n    default: 10\n", 1))
    d = decide(p, limits={"tokens_per_month": 5})
    plan = plan_limits(p.limits_for(d), p.prices, Caller.from_decision(d), CallEstimate("gpt-4o"))
    assert plan.limits[0].limit == 10


@pytest.mark.parametrize(
    "value",
    [pytest.param("60", id="string"), pytest.param(-1, id="negative"), pytest.param(1.5, id="fraction"),
     pytest.param(True, id="bool"), pytest.param({"n": 1}, id="object")],
)
def test_unusable_claim_number_is_refused(value):
    p = policy()
    d = decide(p, limits={"rpm": value, "tokens_per_month": 5})
    with pytest.raises(LimitUnresolvedError, match="not a usable number"):
        plan_limits(p.limits_for(d), p.prices, Caller.from_decision(d), CallEstimate("gpt-4o"))


def test_unpriced_model_is_refused():
    p = policy(ISSUE_LIMITS.replace('  "*": {input: 1, output: 1}\n', ""))
    d = decide(p)
    with pytest.raises(LimitUnresolvedError, match="no price"):
        plan_limits(p.limits_for(d), p.prices, Caller.from_decision(d), CallEstimate("llama-3"))


def test_default_output_reserve_and_per_limit_reserve():
    p = policy("""limits:
  - {name: t1, key: $subject, tokens: 1000000, per: 1d}
  - {name: t2, key: $subject, tokens: 1000000, per: 1d, reserve: 256}
""")
    d = decide(p)
    plan = plan_limits(p.limits_for(d), p.prices, Caller.from_decision(d), CallEstimate(None, prompt_tokens=10))
    assert [r.counter.amount for r in plan.limits] == [10 + 4096, 10 + 256]


def test_rule_limits_follow_top_level_and_public_rules_get_only_their_own():
    rules = RULE + """    limits:
      - {name: chat-rpm, key: "$issuer:$claims.agent", requests: 5, per: 10s}
  - name: models
    public: true
    match: {paths: [/v1/models]}
    limits:
      - {name: models-global, key: everyone, requests: 100, per: 1s}
"""
    p = policy("limits:\n  - {name: all-rpm, key: $subject, requests: 60, per: 1m}\n", rules)
    d = decide(p, agent="agent-7")
    plan = plan_limits(p.limits_for(d), p.prices, Caller.from_decision(d), CallEstimate())
    assert [(r.name, r.key) for r in plan.limits] == [("all-rpm", HOLDER), ("chat-rpm", f"{cred().issuer}:agent-7")]
    public = p.decide(RequestFacts("GET", "/v1/models"), None, now=NOW)
    assert public.allow and [s.name for s in p.limits_for(public)] == ["models-global"]


def test_chain_counts_every_hop_and_a_delegate_only_narrows():
    p = policy("limits:\n  - {name: chain-tokens, key: $chain, tokens: $claims.limits.tokens, per: 30d}\n")
    d = decide(p)
    chain = (("did:key:zP", {"limits": {"tokens": 1000, "tokens_per_month": 7}}), ("did:key:zO", {}),
             ("did:key:zA", {"limits": {"tokens": 5000}}))
    plan = plan_limits(p.limits_for(d), p.prices, Caller.from_decision(d, chain=chain), CallEstimate(prompt_tokens=1, max_output=1))
    assert [(r.key, r.limit) for r in plan.limits] == [
        ("did:key:zP", 1000),
        ("did:key:zP > did:key:zO", 1000),  # states nothing: inherits its delegator's
        ("did:key:zP > did:key:zO > did:key:zA", 1000),  # claims more than its delegator: narrowed
    ]
    principal = plan_limits(
        policy().limits_for(d)[1:2], (), Caller.from_decision(d, chain=chain), CallEstimate(prompt_tokens=1, max_output=1)
    )
    # $principal is the chain's first DID, and its number is the principal's own.
    assert (principal.limits[0].key, principal.limits[0].limit) == ("did:key:zP", 7)


def test_chain_without_any_number_is_refused():
    p = policy("limits:\n  - {name: chain-tokens, key: $chain, tokens: $claims.limits.tokens, per: 30d}\n")
    d = decide(p)
    with pytest.raises(LimitUnresolvedError, match="did:key:zP"):
        plan_limits(p.limits_for(d), (), Caller.from_decision(d, chain=(("did:key:zP", {}),)), CallEstimate())


def test_denied_decision_has_no_limits():
    p = policy()
    d = p.decide(RequestFacts("POST", "/v1/other"), [cred()], now=NOW, holder=HOLDER)
    assert not d.allow and p.limits_for(d) == ()


def problems(text: str) -> list:
    with pytest.raises(PolicyError) as info:
        Policy.from_yaml(text, source="p.yaml")
    return list(info.value.problems)


# The limits text, the text on the offending line, the field, words of the message.
INVALID = [
    pytest.param("limits:\n  - {name: a, key: $subject, per: 1m}\n", "name: a", "limits[0]", "exactly one of", id="no-kind"),
    pytest.param("limits:\n  - {name: a, key: $subject, requests: 1, tokens: 2, per: 1m}\n", "name: a", "limits[0]",
                 "exactly one of", id="two-kinds"),
    pytest.param("limits:\n  - name: a\n    key: $subject\n    requests: 1.5\n    per: 1m\n", "requests: 1.5",
                 "limits[0].requests", "whole number", id="fractional-requests"),
    pytest.param("limits:\n  - name: a\n    key: $subject\n    requests: $claim.rpm\n    per: 1m\n", "requests: $claim",
                 "limits[0].requests", "$claims.<path>", id="bad-claim-ref"),
    pytest.param("limits:\n  - name: a\n    key: $subject\n    requests: 5\n    per: 60\n", "per: 60", "limits[0].per",
                 "no unit", id="per-without-unit"),
    pytest.param("limits:\n  - name: a\n    key: $someone\n    requests: 5\n    per: 1m\n", "key: $someone", "limits[0].key",
                 "unknown variable", id="unknown-key-variable"),
    pytest.param("limits:\n  - name: a\n    key: $subject\n    requests: 5\n    default: 3\n    per: 1m\n", "default: 3",
                 "limits[0].default", "only applies", id="default-without-claim"),
    pytest.param("limits:\n  - name: a\n    key: $subject\n    requests: 5\n    reserve: 10\n    per: 1m\n", "reserve: 10",
                 "limits[0].reserve", "reserve nothing", id="reserve-on-requests"),
    pytest.param("limits:\n  - {name: a, key: $subject, usd: 5, per: 1d}\n", "name: a", "limits (a).usd", "prices",
                 id="usd-without-prices"),
    pytest.param("limits:\n  - {name: a, key: $subject, requests: 5, per: 1m}\n  - {name: a, key: $issuer, requests: 5, per: 1m}\n",
                 "key: $issuer", "limits[1].name", "duplicate limit name", id="duplicate-name"),
    pytest.param("limits:\n  - {name: a, key: $subject, requests: 5, per: 1m}\nprices:\n  gpt-4o: {input: 1}\n",
                 "gpt-4o:", "prices.gpt-4o", "missing required key 'output'", id="price-missing-output"),
    pytest.param("limits:\n  - {name: a, key: $subject, requests: 5, per: 1m, window: 3}\n", "name: a", "limits[0].window",
                 "unknown key", id="unknown-key"),
    pytest.param("limits:\n  - name: a\n    key: $subject\n    requests: 5\n    per: 2y\n", "per: 2y", "limits[0].per",
                 "not a duration", id="per-unit-unknown"),
    pytest.param("limits:\n  - name: a\n    key: $subject\n    requests: 5\n    per: 400d\n", "per: 400d", "limits[0].per",
                 "at most 366d", id="per-too-long"),
    pytest.param("limits:\n  - name: a\n    key: $subject\n    usd: 10000000000000\n    per: 1d\n", "usd: 1", "limits[0].usd",
                 "non-negative amount", id="usd-too-large"),
]


@pytest.mark.parametrize(("limits", "marker", "field", "words"), INVALID)
def test_invalid_limits_name_line_and_field(limits, marker, field, words):
    text = header() + RULE + limits
    found = problems(text)
    assert any(p.field == field and words in p.message and p.line == line_of(text, marker) for p in found), found


def test_public_rule_limit_cannot_count_by_credential():
    rule = RULE + "  - name: pub\n    public: true\n    match: {paths: [/p]}\n    limits:\n      - {name: x, key: $subject, requests: 1, per: 1s}\n"
    text = header() + rule
    found = problems(text)
    assert any("public rule has no credential" in p.message and p.line == line_of(text, "name: x") for p in found), found


def test_deny_rule_takes_no_limits():
    rule = "  - name: d\n    allow: false\n    match: {paths: [/p]}\n    limits:\n      - {name: x, key: all, requests: 1, per: 1s}\n"
    found = problems(header() + rule)
    assert any("takes no 'limits'" in p.message for p in found), found


# --- vcgate policy check / explain ------------------------------------------------------------

from tests.policy.test_cli_support import policy_text, token  # noqa: E402
from vcgate.cli.policy_report import check, explain  # noqa: E402
from vcgate.stores import MemoryCounterStore  # noqa: E402

CLI_LIMITS = """limits:
  - {name: agent-rpm, key: $subject, requests: $claims.limits.rpm, per: 1m, default: 30}
  - {name: monthly-spend, key: $principal, usd: 50, per: 30d}
prices:
  gpt-4o: {input: 2.5, output: 10}
"""


@pytest.fixture
def limited_policy(tmp_path, issuer):
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(issuer) + CLI_LIMITS)
    return path


def test_check_lists_limits_and_prices(limited_policy):
    code, text = check(limited_policy)
    assert code == 0, text
    assert "agent-rpm: $claims.limits.rpm (default 30) requests per 1m by $subject" in text
    assert "monthly-spend: 50 USD per 30d by $principal" in text
    assert "price gpt-4o: input 2.5, output 10 USD per 1M tokens" in text


def test_check_positions_limit_errors(tmp_path, issuer):
    path = tmp_path / "bad.yaml"
    text = policy_text(issuer) + CLI_LIMITS.replace("per: 1m", "per: 60")
    path.write_text(text)
    code, out = check(path)
    assert code == 1
    assert f"{path}:{line_of(text, 'agent-rpm')}:" in out and "limits[0].per" in out and "no unit" in out


def test_explain_shows_the_counters_and_their_use(limited_policy, issuer, holder):
    store = MemoryCounterStore()
    code, text = explain(limited_policy, token(issuer, holder), "POST", "/v1/chat/completions", "gpt-4o", None,
                         now=NOW, counter_store=store)
    assert code == 0, text
    assert "counters (this call):" in text
    assert "agent-rpm [" in text and "limit 30 per 1m, reserves 1, used 0" in text
    assert "monthly-spend [" in text and "limit 50 per 30d" in text
    # explain only reads: nothing was counted.
    _, again = explain(limited_policy, token(issuer, holder), "POST", "/v1/chat/completions", "gpt-4o", None,
                       now=NOW, counter_store=store)
    assert "reserves 1, used 0" in again


def test_explain_names_an_unresolvable_limit(tmp_path, issuer, holder):
    path = tmp_path / "p.yaml"
    path.write_text(policy_text(issuer) + CLI_LIMITS.replace(", default: 30", ""))
    _, text = explain(path, token(issuer, holder), "POST", "/v1/chat/completions", "gpt-4o", None, now=NOW)
    assert "refused: limit_unresolved: limit 'agent-rpm' needs claim limits.rpm" in text


def test_real_delegation_chain_counts_every_hop_and_blocks_siblings():
    """A signed chain (user -> agent -> sub-agent) decided by the engine: its use counts on
    the user, the agent and the sub-agent in one reservation; the user's exhausted budget
    then blocks another delegate of the same user."""
    from tests.chains import World
    from tests.policy.test_delegation import decide as decide_chain
    from tests.policy.test_delegation import policy_text as delegation_policy
    from vcgate.stores import MemoryCounterStore
    from vcgate.usage import Meter
    from vcgate.errors import QuotaExceededError

    w = World()
    p = Policy.from_yaml(delegation_policy(w.org.did) + "limits:\n"
                         "  - {name: chain-rpm, key: $chain, requests: $claims.limits.rpm, per: 1m}\n")
    meter = Meter(store=MemoryCounterStore())

    def plan(depth: int):
        d = decide_chain(w, w.chain(depth))
        assert d.allow, d
        return plan_limits(p.limits_for(d), p.prices, Caller.from_decision(d), CallEstimate("llama-3"))

    deep = plan(2)
    assert [(r.key, r.limit) for r in deep.limits] == [
        (w.user.did, 100), (f"{w.user.did} > {w.agent.did}", 100), (f"{w.user.did} > {w.agent.did} > {w.sub.did}", 50),
    ]
    for _ in range(50):
        meter.admit(plan(2))
    with pytest.raises(QuotaExceededError, match="chain-rpm"):
        meter.admit(plan(2))  # the sub-agent's own 50 are used
    for _ in range(50):
        meter.admit(plan(1))  # the agent itself still has room: 50 of its 100 were the sub-agent's
    with pytest.raises(QuotaExceededError):
        meter.admit(plan(1))  # now the user's 100 are used: every delegate of the user is blocked
    states = meter.store.peek(deep.counters)
    assert [s.used for s in states] == [100, 100, 50]


def test_limits_need_body_only_for_token_and_cost_limits():
    assert policy().limits_need_body
    assert not policy("limits:\n  - {name: r, key: $subject, requests: 1, per: 1m}\n").limits_need_body
    assert not policy("").has_limits and not policy("").limits_need_body
