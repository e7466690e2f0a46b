"""Usage accounting for limits and budgets (``docs/limits.md``): reserve when a call is
admitted, reconcile with the ``usage`` the model server reports, release on failure.

The pieces, each usable alone (no I/O here except through the injected counter store):

* :func:`estimate_call` -- from the OpenAI request body: the model, an upper bound of the
  prompt's tokens (its UTF-8 size) and the output it may generate (``max_completion_tokens``
  or ``max_tokens`` times ``n``);
* :func:`rewrite_body` -- the request body the upstream must get so the accounting holds: an
  output cap when the client set none, and ``stream_options.include_usage`` on a stream;
* :func:`usage_from_json` and :class:`StreamUsage` -- the ``usage`` of a JSON answer and of a
  server-sent-events stream (dropping the usage-only chunk when the client did not ask for it);
* :class:`Meter` -- reserve / settle / release on a :class:`~vcgate.stores.CounterStore`, the
  429 ``quota_exceeded`` with ``Retry-After`` and the IETF ``RateLimit-Policy`` /
  ``RateLimit`` header values, and Prometheus counters per limit name.

The prompt bound is conservative on purpose: a BPE token covers at least one byte of text in
the tokenizers in use, and the JSON around the messages outweighs the chat template's few
tokens per message, so reserving the body's size in tokens never reserves too little for text.
Images and audio parts are not bounded this way (see docs/limits.md).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import MalformedError, QuotaExceededError, VCGateError
from .policy.limits import (
    USD_UNIT,
    CallEstimate,
    Caller,
    LimitPlan,
    LimitSpec,
    PriceSpec,
    ResolvedLimit,
    cost_units,
    plan_limits,
)
from .stores import Counter, CounterState, CounterStore, ReplayStore, Reservation
from .strictjson import loads_strict

__all__ = [
    "MAX_EVENT_BYTES",
    "Charge",
    "LimitMetrics",
    "Meter",
    "Metered",
    "RESERVATION_TYP",
    "ResponseUsage",
    "charge_claims",
    "charge_from_token",
    "charge_token",
    "StreamUsage",
    "Usage",
    "estimate_call",
    "output_cap",
    "rewrite_body",
    "usage_from_json",
]

log = logging.getLogger("vcgate.limits")

_MAX_TOKENS = 10**9
_BODY_DEPTH = 128
#: An SSE event larger than this is passed through unparsed (its usage, if any, is not read:
#: the call is then charged its whole reservation).
MAX_EVENT_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a call used, as the model server reported them."""

    prompt_tokens: int
    completion_tokens: int

    @classmethod
    def from_mapping(cls, usage: Any) -> Usage | None:
        """OpenAI ``usage`` (chat/completions: prompt/completion; Responses API: input/output)."""
        if not isinstance(usage, Mapping):
            return None
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        if not (_count(prompt) and _count(completion)):
            return None
        return cls(prompt, completion)


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _MAX_TOKENS


# --- the request ------------------------------------------------------------------------------


def _parse(body: bytes) -> dict[str, Any] | None:
    try:
        data = loads_strict(body, max_depth=_BODY_DEPTH, what="the request body")
    except VCGateError:
        return None
    return data if isinstance(data, dict) else None


def _requested_output(data: Mapping[str, Any]) -> int | None:
    """The output the request allows itself: ``max_completion_tokens`` (or ``max_tokens``) x ``n``."""
    cap = data.get("max_completion_tokens", data.get("max_tokens", data.get("max_output_tokens")))
    if not _count(cap):
        return None
    n = data.get("n", 1)
    return cap * (n if _count(n) and n >= 1 else 1)


def output_cap(specs: Sequence[LimitSpec]) -> int | None:
    """The output tokens a request that sets none gets: the smallest ``reserve`` of the token
    and cost limits that apply (``None`` if none applies)."""
    reserves = [s.reserve for s in specs if s.kind != "requests"]
    return min(reserves) if reserves else None


def estimate_call(
    body: bytes | None, *, model: str | None = None, specs: Sequence[LimitSpec] = (), data: Any = None
) -> CallEstimate:
    """What a call may use, from its body (``None``: a headers-only gateway did not see it).

    ``data`` is the body already parsed, when the caller has it (the gate reads ``model``).
    Without a body the prompt is unknown (0) and the output is the limits' :func:`output_cap`:
    budgets there rely on the usage report (docs/limits.md).
    """
    cap = output_cap(specs)
    if not body:
        return CallEstimate(model, 0, cap)
    if not isinstance(data, dict):
        data = _parse(body)
    if data is None:
        return CallEstimate(model, len(body), cap)
    if model is None and isinstance(data.get("model"), str):
        model = data["model"]
    requested = _requested_output(data)
    return CallEstimate(model, len(body), requested if requested is not None else cap)


def rewrite_body(body: bytes, *, max_output: int | None, data: Any = None) -> tuple[bytes, bool]:
    """The body to send upstream, and whether ``include_usage`` was added (strip its chunk).

    Adds ``max_tokens: max_output`` when the client set no output cap (``max_tokens`` is the
    field every OpenAI-compatible server knows; a client that needs
    ``max_completion_tokens`` sets it itself), and ``stream_options.include_usage: true`` on
    a stream that did not ask for usage. An unparseable or unchanged body is returned as is.
    ``data``: the body already parsed (it is not modified).
    """
    data = dict(data) if isinstance(data, dict) else _parse(body)
    if data is None:
        return body, False
    changed = added = False
    if max_output is not None and _requested_output(data) is None:
        data["max_tokens"] = max_output
        changed = True
    if data.get("stream") is True:
        options = data.get("stream_options")
        if not isinstance(options, dict):
            options = {}
        if options.get("include_usage") is not True:
            data["stream_options"] = {**options, "include_usage": True}
            changed = added = True
    if not changed:
        return body, False
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(), added


# --- the response -----------------------------------------------------------------------------


def usage_from_json(body: bytes) -> Usage | None:
    """The ``usage`` of a JSON answer, or ``None`` if it has none (or is not JSON)."""
    if b'"usage"' not in body:
        return None
    data = _parse(body)
    return Usage.from_mapping(data.get("usage")) if data is not None else None


_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class StreamUsage:
    """Reads ``usage`` out of an OpenAI server-sent-events stream as it passes through.

    ``feed`` returns the bytes to send on (whole events; a partial one waits for its end),
    ``close`` the rest. With ``strip_usage_chunk`` (the gate asked for usage the client did
    not) the usage-only chunk (``choices: []``) is dropped, so the client sees the stream it
    asked for. The last non-null ``usage`` seen is :attr:`usage`.
    """

    def __init__(self, *, strip_usage_chunk: bool = False) -> None:
        self.strip = strip_usage_chunk
        self.usage: Usage | None = None
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        out: list[bytes] = []
        start = 0
        buf = self._buffer
        for m in _EVENT_END.finditer(buf):
            event = buf[start : m.end()]
            start = m.end()
            if self._keep(event):
                out.append(event)
        rest = buf[start:]
        if len(rest) > MAX_EVENT_BYTES:  # never hold an unbounded event: pass it on unread
            out.append(rest)
            rest = b""
        self._buffer = rest
        return b"".join(out)

    def close(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest if not rest or self._keep(rest) else b""

    def _keep(self, event: bytes) -> bool:
        if b'"usage"' not in event:
            return True
        data_lines = [line[5:].lstrip() for line in event.splitlines() if line.startswith(b"data:")]
        if not data_lines:
            return True
        data = _parse(b"\n".join(data_lines))
        if data is None:
            return True
        usage = Usage.from_mapping(data.get("usage"))
        if usage is None:
            return True
        self.usage = usage
        return not (self.strip and data.get("choices") == [])


# --- the meter ----------------------------------------------------------------------------------


def _sf_string(text: str) -> str:
    # Limit names are [A-Za-z0-9_.:-] (policy/limits.py), safe inside an sf-string as they are.
    return '"' + text + '"'


@dataclass(frozen=True, slots=True)
class Charge:
    """An admitted call's charge against its limits: its plan and the reservation to settle or release."""

    plan: LimitPlan
    reservation: Reservation

    def headers(self) -> list[tuple[str, str]]:
        """``RateLimit-Policy`` and ``RateLimit`` for the answer (IETF httpapi ratelimit draft)."""
        return _ratelimit_headers(self.plan.limits, self.reservation)


def _unit(spec: LimitSpec) -> str:
    # The quota unit registry knows "request"; tokens and micro-USD are vcgate's own units.
    return {"requests": "", "tokens": ';qu="tokens"', "usd": ';qu="usd-micros"'}[spec.kind]


def _ratelimit_headers(limits: Sequence[ResolvedLimit], reservation: Reservation) -> list[tuple[str, str]]:
    # One entry per limit name; a $chain limit reports the counter with the least room.
    tightest: dict[str, tuple[int, ResolvedLimit, int]] = {}
    for index, resolved in enumerate(limits):
        state = reservation.states[index]
        remaining = max(0, resolved.limit - state.used)
        seen = tightest.get(resolved.name)
        if seen is None or remaining < seen[0]:
            tightest[resolved.name] = (remaining, resolved, index)
    policy, current = [], []
    for name, (remaining, resolved, index) in tightest.items():
        reset = math.ceil(reservation.states[index].reset)
        policy.append(f"{_sf_string(name)};q={resolved.limit};w={resolved.spec.per}{_unit(resolved.spec)}")
        current.append(f"{_sf_string(name)};r={remaining};t={reset}")
    if not policy:
        return []
    return [("RateLimit-Policy", ", ".join(policy)), ("RateLimit", ", ".join(current))]


class LimitMetrics:
    """Prometheus counters per limit name (never per subject: bounded label cardinality).

    ``vcgate_limit_calls_total{limit, outcome}`` (admitted, refused) and
    ``vcgate_limit_used_total{limit, unit}`` (units committed: requests, tokens, usd_micros).
    """

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter as PromCounter

        self.calls = PromCounter("vcgate_limit_calls_total", "Calls checked against each limit",
                                 ["limit", "outcome"], registry=registry)
        self.used = PromCounter("vcgate_limit_used_total", "Units committed on each limit",
                                ["limit", "unit"], registry=registry)
        self.resets = PromCounter("vcgate_limit_store_resets_total",
                                  "Times the limit store was found empty (Redis lost its data, or first use)",
                                  registry=registry)

    def admitted(self, plan: LimitPlan) -> None:
        for name in {r.name for r in plan.limits}:
            self.calls.labels(name, "admitted").inc()

    def refused(self, name: str) -> None:
        self.calls.labels(name, "refused").inc()

    def committed(self, plan: LimitPlan, used: Sequence[int]) -> None:
        seen: set[str] = set()
        for resolved, value in zip(plan.limits, used):
            if resolved.name in seen:  # a $chain limit's hops count the same units once
                continue
            seen.add(resolved.name)
            unit = {"requests": "requests", "tokens": "tokens", "usd": "usd_micros"}[resolved.spec.kind]
            self.used.labels(resolved.name, unit).inc(value)


class Meter:
    """Admits calls against their limits on a counter store and settles what they used.

    ``admit`` raises :class:`~vcgate.errors.QuotaExceededError` (429) with the headers to
    answer with in ``error.headers``; a store that cannot answer raises
    :class:`~vcgate.errors.StoreUnavailableError` (503) -- never an unchecked admit.
    ``settle`` commits the reported usage (without one, the reservation stays charged: a call
    whose usage is unknown costs what it was allowed to cost); ``release`` returns a failed or
    cancelled call's tokens and cost (its request stays counted).
    """

    def __init__(self, *, store: CounterStore, metrics: LimitMetrics | None = None,
                 on_usage: Callable[[Charge, Sequence[int]], None] | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.on_usage = on_usage

    def admit(self, plan: LimitPlan) -> Charge | None:
        """Reserve the plan's counters; ``None`` for an empty plan (no limit applies)."""
        if not plan:
            return None
        reservation = self.store.reserve(plan.counters)
        if reservation.store_reset:
            log.warning("vcgate: the limit store's data began again (a Redis restarted empty, or its first use): "
                        "every counter restarted from zero")
            if self.metrics is not None:
                self.metrics.resets.inc()
        if not reservation.admitted:
            raise self._refusal(plan, reservation)
        if self.metrics is not None:
            self.metrics.admitted(plan)
        return Charge(plan, reservation)

    def _refusal(self, plan: LimitPlan, reservation: Reservation) -> QuotaExceededError:
        index = reservation.blocked or 0
        resolved = plan.limits[index]
        state = reservation.states[index]
        counter = resolved.counter
        scale = USD_UNIT if resolved.spec.kind == "usd" else 1
        unit = "USD" if resolved.spec.kind == "usd" else resolved.spec.kind
        retry = max(1, math.ceil(state.reset))
        if counter.amount > counter.limit:
            message = (f"limit '{resolved.name}': this call alone needs {counter.amount / scale:g} {unit}, "
                       f"more than the limit of {counter.limit / scale:g}")
        else:
            message = (f"limit '{resolved.name}' is exhausted: {state.used / scale:g} of {counter.limit / scale:g} "
                       f"{unit} used; this call needs {counter.amount / scale:g}; the window resets in {retry}s")
        error = QuotaExceededError(message, limit=resolved.name, retry_after=retry)
        error.headers = [("Retry-After", str(retry)), *_ratelimit_headers(plan.limits, reservation)]  # type: ignore[attr-defined]
        if self.metrics is not None:
            self.metrics.refused(resolved.name)
        return error

    def settle(self, admission: Charge | None, usage: Usage | None) -> list[int] | None:
        """Commit what the call used; returns the units counted per counter (for the audit)."""
        if admission is None:
            return None
        if usage is None:
            used = [r.counter.amount for r in admission.plan.limits]
        else:
            used = [cost_units(r, usage.prompt_tokens, usage.completion_tokens) for r in admission.plan.limits]
        self._commit(admission, used)
        return used

    def release(self, admission: Charge | None) -> None:
        """The call failed or was cancelled: give back its tokens and cost."""
        if admission is None:
            return
        self._commit(admission, [1 if r.spec.kind == "requests" else 0 for r in admission.plan.limits])

    def _commit(self, admission: Charge, used: list[int]) -> None:
        # A call that used exactly what it reserved (every request-only plan) needs no round trip.
        if any(u != r.counter.amount for u, r in zip(used, admission.plan.limits)):
            self.store.commit(admission.reservation, used)
        if self.metrics is not None:
            self.metrics.committed(admission.plan, used)
        if self.on_usage is not None:
            self.on_usage(admission, used)



# --- for adapters: one call in, the response out ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metered:
    """What the limits did to an allowed call: its ``charge`` to settle or release, the
    ``body`` to send upstream instead of the client's (``None``: unchanged), whether the
    response's usage-only stream chunk is to be dropped, and the ``RateLimit`` headers for
    the answer."""

    charge: Charge
    body: bytes | None = None
    strip_usage_chunk: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def reserved(self) -> dict[str, int]:
        """Units reserved per limit name (for the audit record)."""
        out: dict[str, int] = {}
        for r in self.charge.plan.limits:
            out[r.name] = max(out.get(r.name, 0), r.counter.amount)
        return out


def meter_call(meter: Meter, policy: Any, decision: Any, body: bytes | None, *, holder: str | None = None,
               data: Any = None) -> Metered | None:
    """Admit an allowed ``decision`` of ``policy`` against its limits (``None``: none apply).

    Raises :class:`~vcgate.errors.LimitUnresolvedError` (403),
    :class:`~vcgate.errors.QuotaExceededError` (429, with ``headers``) or
    :class:`~vcgate.errors.StoreUnavailableError` (503).
    """
    specs = policy.limits_for(decision)
    if not specs:
        return None
    estimate = estimate_call(body, specs=specs, data=data)
    plan = plan_limits(specs, policy.prices, Caller.from_decision(decision, holder=holder), estimate)
    charge = meter.admit(plan)
    assert charge is not None
    new_body, strip = None, False
    if body and any(s.kind != "requests" for s in specs):
        rewritten, strip = rewrite_body(body, max_output=estimate.max_output, data=data)
        new_body = rewritten if rewritten is not body else None
    return Metered(charge, new_body, strip, tuple(charge.headers()))


class ResponseUsage:
    """Reads the ``usage`` of a response as an adapter passes its body on.

    ``start(content_type)`` once, then ``feed(chunk)`` returns the bytes to send (a stream's
    usage-only chunk dropped when ``strip_usage_chunk``; a JSON body unchanged, a copy of at
    most :data:`MAX_EVENT_BYTES` kept to read its usage), and ``finish()`` the rest to send
    and the usage found (``None``: none, or the body was too large to read).
    """

    def __init__(self, *, strip_usage_chunk: bool = False) -> None:
        self._strip = strip_usage_chunk
        self._stream: StreamUsage | None = None
        self._json: list[bytes] | None = []
        self._size = 0

    def start(self, content_type: str | None) -> None:
        if content_type and content_type.split(";", 1)[0].strip().lower() == "text/event-stream":
            self._stream = StreamUsage(strip_usage_chunk=self._strip)

    def feed(self, chunk: bytes) -> bytes:
        if self._stream is not None:
            return self._stream.feed(chunk)
        if self._json is not None:
            self._size += len(chunk)
            if self._size > MAX_EVENT_BYTES:
                self._json = None
            else:
                self._json.append(chunk)
        return chunk

    def finish(self) -> tuple[bytes, Usage | None]:
        if self._stream is not None:
            rest = self._stream.close()
            return rest, self._stream.usage
        if self._json is None:
            return b"", None
        return b"", usage_from_json(b"".join(self._json))


# --- the usage report: a charge handed to a gateway that reports usage later ---------------------

#: ``typ`` of the signed reservation a headers-only gateway reports usage with (docs/limits.md).
RESERVATION_TYP = "vcgate-reservation+jwt"
_MAX_RESERVATION_BYTES = 16 * 1024


def charge_claims(charge: Charge, *, issuer: str, now: float) -> dict[str, Any]:
    """The claims of a reservation token for ``charge`` (sign them with the gateway key:
    :func:`charge_token`). The token expires with the longest window it reserved in, and at
    most after a day (the replay store that makes each report count once remembers a day): a
    later report is refused and the reservation stays charged."""
    import secrets

    rows = []
    for r, window in zip(charge.plan.limits, charge.reservation.windows):
        price = [r.price.input, r.price.output] if r.price is not None else None
        rows.append([r.name, r.spec.kind, r.counter.key, r.counter.limit, r.counter.window, r.counter.amount, window,
                     price])
    longest = min(86400, max(r.counter.window for r in charge.plan.limits))
    return {"iss": issuer, "iat": int(now), "exp": int(now) + longest, "jti": secrets.token_urlsafe(16), "c": rows}


def charge_token(charge: Charge, *, key: Any, issuer: str, now: float) -> str:
    """The charge as a JWS signed with ``key`` (the gateway's), for ``X-Vcgate-Reservation``:
    what a gateway that cannot see the response reports its usage with (:func:`charge_from_token`)."""
    from .credentials.jws import sign_jws

    return sign_jws(key, charge_claims(charge, issuer=issuer, now=now), typ=RESERVATION_TYP, kid=None)


def charge_from_token(token: str, *, key: Any, issuer: str, now: float, replay: ReplayStore) -> Charge:
    """The charge a reservation token stands for, once: a second report of the same token, a
    forged, expired or foreign one raises :class:`~vcgate.errors.MalformedError` (400)."""
    from .credentials.jws import parse_jws

    try:
        jws = parse_jws(token, algorithms=[key.alg], max_bytes=_MAX_RESERVATION_BYTES)
        jws.verify_with(key)
    except VCGateError as exc:
        raise MalformedError(f"the reservation does not verify: {exc.message}", reason="reservation_invalid") from exc
    c = jws.payload
    if jws.typ != RESERVATION_TYP or c.get("iss") != issuer:
        raise MalformedError("not a reservation of this gateway", reason="reservation_invalid")
    exp, jti, rows = c.get("exp"), c.get("jti"), c.get("c")
    if type(exp) is not int or exp <= now:
        raise MalformedError("the reservation has expired", reason="reservation_expired")
    if not isinstance(jti, str) or not isinstance(rows, list) or not rows:
        raise MalformedError("the reservation is malformed", reason="reservation_invalid")
    try:
        limits, windows = [], []
        for name, kind, ckey, limit, window, amount, window_id, price in rows:
            spec = LimitSpec(name, kind, "$reported", None, None, None, window)
            priced = PriceSpec("*", re.compile(".*"), price[0], price[1]) if price is not None else None
            limits.append(ResolvedLimit(spec, ckey, limit, Counter(ckey, limit, window, amount), priced))
            windows.append(window_id)
    except (TypeError, ValueError, IndexError) as exc:
        raise MalformedError("the reservation is malformed", reason="reservation_invalid") from exc
    # Each reservation is settled once: its jti is remembered until it expires.
    if not replay.add_if_absent("reservation:" + jti, min(86400, max(1, exp - int(now)))):
        raise MalformedError("this reservation was already reported", reason="reservation_reported")
    counters = tuple(r.counter for r in limits)
    states = tuple(CounterState(0, 0.0) for _ in counters)
    return Charge(LimitPlan(tuple(limits)), Reservation(True, counters, states, None, tuple(windows)))
