"""Limits in the policy: the ``limits:`` and ``prices:`` schema, and the pure step from an
allowed decision to the counters a call touches (``docs/limits.md``).

```yaml
limits:                              # top level: every allowed call with a credential
  - name: agent-rpm
    key: $subject                    # $subject, $principal, $credential, $issuer, $chain or a template
    requests: $claims.limits.rpm     # or a literal; tokens: / usd: for budgets
    per: 1m
    default: 60                      # only if the credential lacks the claim; absent: refuse
prices:                              # USD per 1M tokens, first matching model glob wins
  gpt-4o*: {input: 2.5, output: 10}
```

Nothing here does I/O: :func:`plan_limits` turns the limits that apply, the caller and an
estimate of the call into :class:`~vcgate.stores.Counter` objects; :mod:`vcgate.usage` does
the accounting around the store.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from ..credentials.models import FORMAT_SD_JWT_VC
from ..errors import ClaimNotDisclosedError, LimitUnresolvedError
from ..stores import MAX_WINDOW, Counter
from .model import MISSING, Template, compile_text_glob, is_number, lookup_claim

__all__ = [
    "DEFAULT_RESERVE",
    "KEY_VARIABLES",
    "LIMIT_KINDS",
    "USD_UNIT",
    "Caller",
    "CallEstimate",
    "LimitPlan",
    "LimitSpec",
    "PriceSpec",
    "ResolvedLimit",
    "check_priced",
    "cost_units",
    "parse_limits",
    "parse_prices",
    "plan_limits",
    "price_for",
]

LIMIT_KINDS = ("requests", "tokens", "usd")
#: Whole-key variables; any other key is a template ($subject, $issuer, $holder, $model, $claims.x).
KEY_VARIABLES = ("$subject", "$principal", "$credential", "$issuer", "$chain")
#: Output tokens reserved when a request sets no max_tokens (and the limit no ``reserve``).
DEFAULT_RESERVE = 4096
#: 1 USD in the integer unit the stores count (micro-USD): exact sums, no float drift.
USD_UNIT = 1_000_000
# 10**12 USD is 10**18 micro-USD: every count stays inside Redis's 64-bit integers.
_MAX_NUMBER = 10**12
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_LIMIT_KEYS = ("name", "description", "key", "requests", "tokens", "usd", "per", "default", "reserve")
_PRICE_KEYS = ("input", "output")
_CLAIM_REF = re.compile(r"\$claims\.([^\s.$]+(?:\.[^\s.$]+)*)")
_CREDENTIAL_KEYS = ("$subject", "$principal", "$credential", "$issuer", "$chain")


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """One limit as written in the policy. ``number`` is a literal or, with ``claim``, read
    from the credential (``default`` when the claim is missing; ``None``: refuse)."""

    name: str
    kind: str
    key: str
    template: Template | None
    number: float | None
    claim: tuple[str, ...] | None
    per: int
    default: float | None = None
    reserve: int = DEFAULT_RESERVE
    line: int | None = None
    column: int | None = None

    @property
    def uses_credential(self) -> bool:
        if self.key in _CREDENTIAL_KEYS or self.claim is not None:
            return True
        return self.template is not None and any(v[0] != "model" for v in self.template.variables)

    @property
    def needs_body(self) -> bool:
        """Token and cost limits read ``max_tokens`` and the model from the body."""
        return self.kind != "requests"


@dataclass(frozen=True, slots=True)
class PriceSpec:
    """USD per 1M tokens for the models matching ``model`` (a glob)."""

    model: str
    regex: re.Pattern[str]
    input: float
    output: float
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call is counted for.

    ``chain`` is the delegation chain as ``(DID, that hop's claims)`` pairs, the principal
    first and the acting agent last; empty without delegation (then the chain is the subject
    alone). ``principal`` defaults to the chain's first DID, else the subject.
    """

    subject: str | None
    issuer: str | None = None
    credential: str | None = None
    holder: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    principal: str | None = None
    chain: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    #: The claims may have been withheld (an SD-JWT VC discloses what its holder chooses): a
    #: missing number is then refused ``claim_not_disclosed``, never replaced by ``default``.
    withheld: bool = False

    @classmethod
    def from_decision(
        cls, decision: Any, *, holder: str | None = None, principal: str | None = None,
        chain: Sequence[tuple[str, Mapping[str, Any]]] = (),
    ) -> Caller:
        """From an allowing :class:`~vcgate.policy.PolicyDecision`. A decision made through a
        delegation chain (``decision.chain``) brings its principal and its links (each party's
        effective claims); ``principal`` / ``chain`` given here take precedence."""
        cred = decision.credential
        delegation = getattr(decision, "chain", None)
        # $credential counts the credential issued, for a chain its root: the chain's view
        # carries the leaf's token, and a root without an id (optional in VCDM, jti in SD-JWT
        # VC) gave every new delegation link a fresh budget (red-team finding).
        counted = delegation.root if delegation is not None else cred
        ident = None
        if counted is not None:
            ident = counted.id or "sha256:" + _sha256(counted.token)
        claims: Mapping[str, Any] = cred.claims if cred is not None else {}
        if delegation is not None:
            principal = principal or delegation.principal
            chain = chain or delegation.links
        if chain:
            claims = chain[-1][1]  # the caller's claims as narrowed by every hop above it
        return cls(
            subject=decision.subject, issuer=decision.issuer, credential=ident, holder=holder,
            claims=claims, principal=principal, chain=tuple(chain),
            withheld=getattr(counted, "format", None) == FORMAT_SD_JWT_VC,
        )


@dataclass(frozen=True, slots=True)
class CallEstimate:
    """What a call may use, known before it runs: the model, an upper bound of its prompt
    tokens, and the output tokens it may generate (``None``: the limit's ``reserve``)."""

    model: str | None = None
    prompt_tokens: int = 0
    max_output: int | None = None


@dataclass(frozen=True, slots=True)
class ResolvedLimit:
    """A limit applied to one call: the counted ``key``, its ``limit`` in store units
    (requests, tokens or micro-USD), and the counter this call reserves on."""

    spec: LimitSpec
    key: str
    limit: int
    counter: Counter
    price: PriceSpec | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """Every counter one call touches, in one atomic reservation."""

    limits: tuple[ResolvedLimit, ...] = ()

    @property
    def counters(self) -> tuple[Counter, ...]:
        return tuple(r.counter for r in self.limits)

    def __bool__(self) -> bool:
        return bool(self.limits)


# --- validation (called by the policy loader) --------------------------------------------


def parse_limits(c: Any, node: Node, field_: str, names: dict[str, int], *, public: bool = False) -> tuple[LimitSpec, ...] | None:
    """The ``limits:`` list at ``node``; problems go to the loader's checker ``c``."""
    items = c.sequence(node, field_)
    if items is None:
        return None
    out: list[LimitSpec] = []
    ok = True
    for i, item in enumerate(items):
        spec = _limit(c, item, f"{field_}[{i}]", names)
        if spec is None:
            ok = False
            continue
        if public and spec.uses_credential:
            c.problem(item, f"{field_}[{i}]", f"limit '{spec.name}': a public rule has no credential to count or read numbers from")
            ok = False
            continue
        out.append(spec)
    return tuple(out) if ok else None


def _number(c: Any, node: Node, field_: str, kind: str) -> tuple[bool, float | None, tuple[str, ...] | None]:
    ok, value = c.scalar(node, field_)
    if not ok:
        return False, None, None
    if isinstance(value, str):
        m = _CLAIM_REF.fullmatch(value)
        if m is None:
            c.problem(node, field_, f"{value[:40]!r}: write a number or $claims.<path> (e.g. $claims.limits.rpm)")
            return False, None, None
        return True, None, tuple(m.group(1).split("."))
    if not _good_number(value, kind):
        c.problem(node, field_, _number_rule(kind))
        return False, None, None
    return True, float(value), None


def _good_number(value: Any, kind: str) -> bool:
    if not is_number(value) or not math.isfinite(value) or value < 0 or value > _MAX_NUMBER:
        return False
    return kind == "usd" or float(value).is_integer()


def _number_rule(kind: str) -> str:
    what = "a non-negative amount of USD" if kind == "usd" else f"a non-negative whole number of {kind}"
    return f"expected {what} (or $claims.<path>)"


def _limit(c: Any, node: Node, field_: str, names: dict[str, int]) -> LimitSpec | None:
    spec = c.mapping(node, field_, _LIMIT_KEYS, required=("name", "key", "per"))
    if spec is None:
        return None
    ok = True
    name = None
    if "name" in spec:
        name = c.unique_name(spec["name"][1], f"{field_}.name", names, _NAME,
                             "limit names are letters, digits and _ . : - (at most 64)", what="limit", max_len=64)
        ok &= name is not None
    if "description" in spec:
        c.string(spec["description"][1], f"{field_}.description")
    key = template = None
    if "key" in spec:
        key_node = spec["key"][1]
        key = c.string(key_node, f"{field_}.key", max_len=256)
        if key is not None and key not in KEY_VARIABLES:
            try:
                template = Template.parse(key)
            except ValueError as exc:
                c.problem(key_node, f"{field_}.key", f"{exc}; or one of {', '.join(KEY_VARIABLES)}")
                key = None
        ok &= key is not None
    kinds = [k for k in LIMIT_KINDS if k in spec]
    kind = kinds[0] if len(kinds) == 1 else None
    number = claim = None
    if len(kinds) != 1:
        where = spec[kinds[1]][0] if len(kinds) > 1 else node
        c.problem(where, field_, "give exactly one of requests, tokens or usd")
        ok = False
    else:
        good, number, claim = _number(c, spec[kind][1], f"{field_}.{kind}", kind)
        ok &= good
    per = c.duration(spec["per"][1], f"{field_}.per") if "per" in spec else None
    if per is not None and per > MAX_WINDOW:
        c.problem(spec["per"][1], f"{field_}.per", "a limit's window is at most 366d")
        per = None
    ok &= per is not None
    default = None
    if "default" in spec:
        dnode = spec["default"][1]
        if claim is None:
            c.problem(dnode, f"{field_}.default", "a default only applies to a number read from $claims")
            ok = False
        elif kind is not None:
            good, value = c.scalar(dnode, f"{field_}.default")
            if good and not _good_number(value, kind):
                c.problem(dnode, f"{field_}.default", _number_rule(kind).replace(" (or $claims.<path>)", ""))
                good = False
            ok &= good
            default = float(value) if good else None
    reserve = DEFAULT_RESERVE
    if "reserve" in spec:
        rnode = spec["reserve"][1]
        good, value = c.scalar(rnode, f"{field_}.reserve")
        if good and (kind == "requests" or type(value) is not int or not 1 <= value <= 10_000_000):
            message = ("requests limits reserve nothing" if kind == "requests"
                       else "expected a whole number of output tokens (1 to 10000000)")
            c.problem(rnode, f"{field_}.reserve", message)
            good = False
        ok &= good
        if good:
            reserve = value
    if not ok or name is None or key is None or kind is None or per is None:
        return None
    return LimitSpec(name, kind, key, template, number, claim, per, default, reserve,
                     node.start_mark.line + 1, node.start_mark.column + 1)


def parse_prices(c: Any, node: Node) -> tuple[PriceSpec, ...] | None:
    """The top-level ``prices:`` mapping of model globs to ``{input, output}`` USD per 1M tokens."""
    if not isinstance(node, MappingNode):
        c.problem(node, "prices", "expected a mapping of model globs to {input: ..., output: ...}")
        return None
    out: list[PriceSpec] = []
    ok = True
    seen: dict[str, int] = {}
    for key, value in node.value:
        if not (isinstance(key, ScalarNode) and key.tag.endswith(":str") and key.value):
            c.problem(key, "prices", "model globs are strings")
            ok = False
            continue
        pfield = f"prices.{key.value}"
        if key.value in seen:
            c.problem(key, pfield, f"duplicate model (first at line {seen[key.value]})")
            ok = False
            continue
        seen[key.value] = key.start_mark.line + 1
        try:
            regex = compile_text_glob(key.value)
        except ValueError as exc:
            c.problem(key, pfield, f"bad model glob: {exc}")
            ok = False
            continue
        spec = c.mapping(value, pfield, _PRICE_KEYS, required=_PRICE_KEYS)
        if spec is None or len(spec) != 2:
            ok = False
            continue
        prices = []
        for which in _PRICE_KEYS:
            good, number = c.scalar(spec[which][1], f"{pfield}.{which}")
            if good and not (is_number(number) and math.isfinite(number) and 0 <= number <= 1_000_000):
                c.problem(spec[which][1], f"{pfield}.{which}", "expected USD per 1M tokens (a number from 0 to 1000000)")
                good = False
            ok &= good
            prices.append(float(number) if good else 0.0)
        out.append(PriceSpec(key.value, regex, prices[0], prices[1], key.start_mark.line + 1))
    return tuple(out) if ok else None


def check_priced(c: Any, limits: Sequence[LimitSpec], prices: Sequence[PriceSpec] | None) -> None:
    """Every ``usd`` limit needs a ``prices:`` table."""
    if prices:
        return
    from ..errors import PolicyProblem

    for spec in limits:
        if spec.kind == "usd":
            c.problems.append(PolicyProblem(c.source, spec.line, spec.column, f"limits ({spec.name}).usd",
                                            "a usd limit needs a top-level 'prices:' table (USD per 1M tokens per model)"))


# --- resolution (per call) ----------------------------------------------------------------


def price_for(prices: Sequence[PriceSpec], model: str | None) -> PriceSpec | None:
    """The first price whose glob matches ``model``."""
    if model is None:
        return None
    for price in prices:
        if price.regex.match(model):
            return price
    return None


def _sha256(text: str) -> str:
    import hashlib

    from ..keys import b64url_encode

    return b64url_encode(hashlib.sha256(text.encode()).digest())


def _units(spec: LimitSpec, value: float) -> int:
    return int(round(value * USD_UNIT)) if spec.kind == "usd" else int(value)


def _number_from(spec: LimitSpec, claims: Mapping[str, Any], inherited: int | None = None, *,
                 withheld: bool = False) -> int | None:
    """The limit in store units from ``claims`` (``None``: the claim is missing)."""
    if spec.claim is None:
        return _units(spec, spec.number or 0.0)
    value = lookup_claim(claims, spec.claim)
    if value is MISSING or value is None:
        if inherited is not None:
            return inherited
        if spec.default is None:
            return None
        if withheld:
            # Red-team finding: an SD-JWT holder withheld its own `limits.rpm: 1` and got the
            # policy's default of 5 (vcgate issue makes every claim disclosable by default).
            name = ".".join(spec.claim)
            raise ClaimNotDisclosedError(
                f"limit '{spec.name}' reads claim {name}, which the presentation does not disclose (the "
                "policy's default applies only to credentials that cannot withhold claims)",
                limit=spec.name, claim=name,
            )
        return _units(spec, spec.default)
    if not _good_number(value, spec.kind):
        raise LimitUnresolvedError(
            f"limit '{spec.name}': claim {'.'.join(spec.claim)} is {str(value)[:40]!r}, not a usable number",
            limit=spec.name,
        )
    return _units(spec, float(value))


def _missing(spec: LimitSpec, who: str | None = None) -> LimitUnresolvedError:
    whose = f" of {who}" if who else ""
    return LimitUnresolvedError(
        f"limit '{spec.name}' needs claim {'.'.join(spec.claim or ())}{whose}, which the credential does not "
        "carry, and the policy states no default",
        limit=spec.name,
    )


def _amount(spec: LimitSpec, estimate: CallEstimate, price: PriceSpec | None) -> int:
    if spec.kind == "requests":
        return 1
    output = estimate.max_output if estimate.max_output is not None else spec.reserve
    if spec.kind == "tokens":
        return estimate.prompt_tokens + output
    assert price is not None
    return math.ceil(estimate.prompt_tokens * price.input + output * price.output)


def _key_value(spec: LimitSpec, caller: Caller, model: str | None) -> str | None:
    key = spec.key
    if key == "$subject":
        return caller.subject
    if key == "$principal":
        return caller.principal or (caller.chain[0][0] if caller.chain else caller.subject)
    if key == "$credential":
        return caller.credential
    if key == "$issuer":
        return caller.issuer
    assert spec.template is not None
    pieces = []
    for part in spec.template.parts:
        if isinstance(part, str):
            pieces.append(part)
            continue
        if part[0] == "claims":
            value: Any = lookup_claim(caller.claims, part[1:])
            value = None if value is MISSING or isinstance(value, (dict, list)) else value
        else:
            value = {"subject": caller.subject, "issuer": caller.issuer, "holder": caller.holder,
                     "model": model, "rule": None}[part[0]]
        if value is None:
            return None
        pieces.append(str(value))
    return "".join(pieces)


def plan_limits(
    specs: Sequence[LimitSpec], prices: Sequence[PriceSpec], caller: Caller, estimate: CallEstimate
) -> LimitPlan:
    """The counters ``specs`` put on one call. Raises :class:`LimitUnresolvedError` when a
    limit cannot be evaluated (fail closed: a limit never becomes "unlimited" by accident)."""
    out: list[ResolvedLimit] = []
    for spec in specs:
        price = None
        if spec.kind == "usd":
            price = price_for(prices, estimate.model)
            if price is None:
                what = f"model {estimate.model[:80]!r}" if estimate.model else "a call that names no model"
                raise LimitUnresolvedError(f"limit '{spec.name}' prices tokens, and {what} has no price in the policy",
                                           limit=spec.name)
        amount = _amount(spec, estimate, price)
        counter_name = f"{spec.name}/{spec.per}"
        if spec.key == "$chain":
            if not caller.chain and not caller.subject:
                raise LimitUnresolvedError(f"limit '{spec.name}' counts by $chain, and this call has no subject",
                                           limit=spec.name)
            hops = caller.chain or ((str(caller.subject), caller.claims),)
            path: list[str] = []
            inherited: int | None = None
            for did, claims in hops:
                path.append(did)
                own = _number_from(spec, claims, inherited, withheld=caller.withheld)
                if own is None:
                    raise _missing(spec, did)
                # A delegate's limit only narrows its delegator's.
                inherited = own if inherited is None else min(own, inherited)
                key = " > ".join(path)
                out.append(ResolvedLimit(spec, key, inherited, Counter(f"{counter_name}|{key}", inherited, spec.per, amount), price))
            continue
        key = _key_value(spec, caller, estimate.model)
        if not key:
            raise LimitUnresolvedError(f"limit '{spec.name}' counts by {spec.key}, which this call has no value for",
                                       limit=spec.name)
        # A principal's budget is the principal's number; every other key reads the caller's.
        claims = caller.chain[0][1] if spec.key == "$principal" and caller.chain else caller.claims
        limit = _number_from(spec, claims, withheld=caller.withheld)
        if limit is None:
            raise _missing(spec)
        out.append(ResolvedLimit(spec, key, limit, Counter(f"{counter_name}|{key}", limit, spec.per, amount), price))
    return LimitPlan(tuple(out))


def cost_units(resolved: ResolvedLimit, prompt_tokens: int, completion_tokens: int) -> int:
    """What a call that used these tokens counts on ``resolved``, in store units."""
    kind = resolved.spec.kind
    if kind == "requests":
        return 1
    if kind == "tokens":
        return prompt_tokens + completion_tokens
    price = resolved.price
    assert price is not None
    return math.ceil(prompt_tokens * price.input + completion_tokens * price.output)

