"""Usage accounting: estimates from the request, the body rewrite, usage from JSON and SSE,
and the meter's reserve / settle / release with its 429 and RateLimit headers."""

from __future__ import annotations

import json
import math
import random

import pytest

from tests.fake_openai import answer
from tests.support import NOW
from vcgate.errors import QuotaExceededError
from vcgate.policy import Policy, RequestFacts
from vcgate.policy.limits import CallEstimate, Caller, plan_limits
from vcgate.stores import MemoryCounterStore
from vcgate.usage import LimitMetrics, Meter, StreamUsage, Usage, estimate_call, rewrite_body, usage_from_json

from .policy.helpers import HOLDER, cred, header


def body(**kw) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **kw}).encode()


@pytest.mark.parametrize(
    ("fields", "output"),
    [pytest.param({"max_tokens": 100}, 100, id="max_tokens"),
     pytest.param({"max_completion_tokens": 70, "max_tokens": 100}, 70, id="max_completion_tokens-wins"),
     pytest.param({"max_tokens": 100, "n": 3}, 300, id="n-choices"),
     pytest.param({}, 512, id="none-takes-the-cap"),
     pytest.param({"max_tokens": -5}, 512, id="negative-ignored"),
     pytest.param({"max_tokens": "100"}, 512, id="string-ignored"),
     pytest.param({"max_tokens": True}, 512, id="bool-ignored")],
)
def test_estimate_call(fields, output):
    spec = policy().document.limits[1]  # tokens, reserve 512
    raw = body(**fields)
    est = estimate_call(raw, specs=[spec])
    assert est == CallEstimate("gpt-4o", len(raw), output)


def test_estimate_without_body_or_with_garbage():
    spec = policy().document.limits[1]
    assert estimate_call(None, model="m", specs=[spec]) == CallEstimate("m", 0, 512)
    assert estimate_call(b"{not json", specs=[spec]) == CallEstimate(None, 9, 512)
    assert estimate_call(b"[" * 5000, specs=[]).prompt_tokens == 5000  # deep nesting: no crash


def test_rewrite_adds_the_cap_and_usage_for_streams():
    new, added = rewrite_body(body(stream=True), max_output=512)
    data = json.loads(new)
    assert added and data["max_tokens"] == 512 and data["stream_options"] == {"include_usage": True}
    new, added = rewrite_body(body(stream=True, stream_options={"include_usage": True}, max_tokens=9), max_output=512)
    assert not added and new == body(stream=True, stream_options={"include_usage": True}, max_tokens=9)
    new, added = rewrite_body(body(max_completion_tokens=5), max_output=512)
    assert new == body(max_completion_tokens=5) and not added  # the client's own cap is kept
    assert rewrite_body(b"not json", max_output=5) == (b"not json", False)


def test_usage_from_json():
    assert usage_from_json(b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4}}') == Usage(3, 4)
    assert usage_from_json(b'{"usage": {"input_tokens": 3, "output_tokens": 4}}') == Usage(3, 4)  # Responses API
    for bad in (b"{}", b'{"usage": null}', b'{"usage": {"prompt_tokens": -1, "completion_tokens": 2}}',
                b'{"usage": {"prompt_tokens": 1.5, "completion_tokens": 2}}', b"garbage \"usage\""):
        assert usage_from_json(bad) is None


@pytest.mark.parametrize("strip", [True, False])
@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_stream_usage_any_chunking(strip, size):
    raw, prompt, completion = answer(body(stream=True, stream_options={"include_usage": True}, max_tokens=50),
                                     rng=random.Random(1))
    reader = StreamUsage(strip_usage_chunk=strip)
    out = b"".join(reader.feed(raw[i : i + size]) for i in range(0, len(raw), size)) + reader.close()
    assert reader.usage == Usage(prompt, completion)
    if strip:
        assert b'"choices": []' not in out and out.count(b"data: ") == 4 and out.endswith(b"data: [DONE]\n\n")
    else:
        assert out == raw


def test_stream_usage_crlf_and_oversized_events():
    reader = StreamUsage()
    event = b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}\r\n\r\n'
    assert reader.feed(event) == event and reader.usage == Usage(1, 2)
    huge = b"data: " + b"x" * (2 * 1024 * 1024)
    assert reader.feed(huge) == huge  # passed on unread, never held


LIMITS = """limits:
  - {name: rpm, key: $subject, requests: 2, per: 1m}
  - {name: tokens, key: $subject, tokens: 10000, per: 1d, reserve: 512}
  - {name: spend, key: $subject, usd: 0.5, per: 30d}
prices:
  gpt-4o: {input: 2.5, output: 10}
"""


def policy(limits: str = LIMITS) -> Policy:
    return Policy.from_yaml(header() + "  - name: chat\n    match: {paths: [/v1/chat/completions]}\n" + limits)


def plan_for(p: Policy, raw: bytes):
    d = p.decide(RequestFacts("POST", "/v1/chat/completions", model="gpt-4o", body_available=True), [cred()],
                 now=NOW, holder=HOLDER)
    specs = p.limits_for(d)
    return plan_limits(specs, p.prices, Caller.from_decision(d), estimate_call(raw, specs=specs))


def test_meter_admits_settles_and_refuses_with_headers():
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    p, store = policy(), MemoryCounterStore()
    meter = Meter(store=store, metrics=LimitMetrics(registry))
    raw = body(max_tokens=100)
    first = meter.admit(plan_for(p, raw))
    assert first is not None
    headers = dict(first.headers())
    assert headers["RateLimit-Policy"] == ('"rpm";q=2;w=60, "tokens";q=10000;w=86400;qu="tokens", '
                                          '"spend";q=500000;w=2592000;qu="usd-micros"')
    assert headers["RateLimit"].startswith('"rpm";r=1;t=60, "tokens";r=' + str(10000 - len(raw) - 100) + ";t=86400")
    assert meter.settle(first, Usage(20, 30)) == [1, 50, 20 * 2.5 + 30 * 10]
    assert [s.used for s in store.peek(first.plan.counters)] == [1, 50, 350]
    second = meter.admit(plan_for(p, raw))
    meter.release(second)  # failed upstream: the request counts, tokens and cost return
    assert [s.used for s in store.peek(first.plan.counters)] == [2, 50, 350]
    with pytest.raises(QuotaExceededError) as info:
        meter.admit(plan_for(p, raw))
    err = info.value
    assert (err.code, err.status) == ("quota_exceeded", 429) and "limit 'rpm'" in err.message
    hdrs = dict(err.headers)
    assert hdrs["Retry-After"] == "60" and '"rpm";r=0;t=60' in hdrs["RateLimit"]
    assert err.details == {"limit": "rpm", "retry_after": 60}
    assert registry.get_sample_value("vcgate_limit_calls_total", {"limit": "rpm", "outcome": "refused"}) == 1
    assert registry.get_sample_value("vcgate_limit_calls_total", {"limit": "tokens", "outcome": "admitted"}) == 2
    assert registry.get_sample_value("vcgate_limit_used_total", {"limit": "tokens", "unit": "tokens"}) == 50


def test_meter_unknown_usage_keeps_the_reservation_charged():
    p, store = policy(), MemoryCounterStore()
    meter = Meter(store=store)
    raw = body(max_tokens=100)
    admission = meter.admit(plan_for(p, raw))
    meter.settle(admission, None)
    assert store.peek(admission.plan.counters)[1].used == len(raw) + 100


def test_call_larger_than_the_budget_says_so():
    p = policy(LIMITS.replace("tokens: 10000", "tokens: 100"))
    with pytest.raises(QuotaExceededError, match="this call alone needs"):
        Meter(store=MemoryCounterStore()).admit(plan_for(p, body(max_tokens=500)))


def test_token_budget_streamed_and_json_never_exceeds():
    """Calls until the budget refuses: mixed streams and JSON, reconciled from their usage."""
    p = policy(LIMITS.replace("requests: 2", "requests: 100000"))
    store, meter, rng = MemoryCounterStore(), Meter(store=MemoryCounterStore()), random.Random(7)
    meter.store = store
    total = refused = 0
    for i in range(400):
        raw = body(stream=bool(i % 2), messages=[{"role": "user", "content": "x" * rng.randint(1, 400)}])
        plan = plan_for(p, raw)
        try:
            admission = meter.admit(plan)
        except QuotaExceededError:
            refused += 1
            continue
        sent, added = rewrite_body(raw, max_output=plan.limits[1].spec.reserve)
        response, prompt, completion = answer(sent, rng=rng)
        if i % 2:
            reader = StreamUsage(strip_usage_chunk=added)
            reader.feed(response)
            usage = reader.usage
        else:
            usage = usage_from_json(response)
        assert usage == Usage(prompt, completion)
        meter.settle(admission, usage)
        total += prompt + completion
    tokens_used = store.peek(plan.counters)[1].used
    assert refused > 0 and tokens_used == total <= 10000


def test_meter_call_and_response_usage_for_adapters():
    from vcgate.usage import ResponseUsage, meter_call

    p, store = policy(), MemoryCounterStore()
    meter = Meter(store=store)
    d = p.decide(RequestFacts("POST", "/v1/chat/completions", model="gpt-4o", body_available=True), [cred()],
                 now=NOW, holder=HOLDER)
    raw = body(stream=True)
    metered = meter_call(meter, p, d, raw)
    assert metered is not None and metered.strip_usage_chunk
    sent = json.loads(metered.body)
    assert sent["max_tokens"] == 512 and sent["stream_options"] == {"include_usage": True}
    assert metered.reserved == {"rpm": 1, "tokens": len(raw) + 512, "spend": math.ceil(len(raw) * 2.5 + 512 * 10)}
    assert dict(metered.headers)["RateLimit"].startswith('"rpm";r=1;t=60')
    response, prompt, completion = answer(metered.body, rng=random.Random(3))
    reader = ResponseUsage(strip_usage_chunk=True)
    reader.start("text/event-stream; charset=utf-8")
    out = reader.feed(response[:10]) + reader.feed(response[10:])
    rest, usage = reader.finish()
    assert usage == Usage(prompt, completion) and b'"choices": []' not in out + rest
    meter.settle(metered.charge, usage)
    assert store.peek(metered.charge.plan.counters)[1].used == prompt + completion
    json_reader = ResponseUsage()
    json_reader.start("application/json")
    doc = b'{"usage": {"prompt_tokens": 5, "completion_tokens": 6}}'
    assert json_reader.feed(doc[:7]) + json_reader.feed(doc[7:]) == doc
    assert json_reader.finish() == (b"", Usage(5, 6))
    # A request-only policy never rewrites the body.
    only_rpm = policy("limits:\n  - {name: rpm, key: $subject, requests: 5, per: 1m}\n")
    assert meter_call(meter, only_rpm, d, raw).body is None


def test_reservation_token_settles_once():
    from vcgate.errors import MalformedError
    from vcgate.keys import PrivateKey
    from vcgate.stores import MemoryReplayStore
    from vcgate.usage import charge_from_token, charge_token

    p, store, key = policy(), MemoryCounterStore(), PrivateKey.generate("EdDSA")
    meter = Meter(store=store)
    raw = body(max_tokens=100)
    charge = meter.admit(plan_for(p, raw))
    token = charge_token(charge, key=key, issuer="https://gw.example", now=NOW)
    replay = MemoryReplayStore()
    back = charge_from_token(token, key=key.public_key, issuer="https://gw.example", now=NOW + 5, replay=replay)
    meter.settle(back, Usage(10, 20))
    assert [s.used for s in store.peek(charge.plan.counters)] == [1, 30, math.ceil(10 * 2.5 + 20 * 10)]
    for bad, kw, reason in [
        (token, {}, "reservation_reported"),  # a second report
        (token, {"key": PrivateKey.generate("EdDSA").public_key}, "reservation_invalid"),  # not our key
        (token, {"issuer": "https://other.example"}, "reservation_invalid"),
        (token, {"now": NOW + 86401}, "reservation_expired"),
        (token[:-4] + "AAAA", {}, "reservation_invalid"),
    ]:
        args = {"key": key.public_key, "issuer": "https://gw.example", "now": NOW + 5, "replay": MemoryReplayStore()} | kw
        if reason == "reservation_reported":
            args["replay"] = replay
        with pytest.raises(MalformedError) as info:
            charge_from_token(bad, **args)
        assert info.value.details["reason"] == reason
