"""The bodies of ``vcgate policy check`` and ``vcgate policy explain``, as plain functions.

Each returns ``(exit_code, text)``; the click commands only parse options and print. Exit
codes follow the CLI contract (``docs/cli.md``): 0 valid / allowed, 1 invalid / refused.
Text whose lines start with ``error:`` belongs on stderr; anything else on stdout.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from ..credentials.delegation import ChainCandidate, assemble, check_window, is_link
from ..credentials.models import VerifiedCredential
from ..credentials.verifier import Verifier
from ..did.resolver import Resolver
from ..errors import DelegationError, PolicyError, VCGateError
from ..policy.engine import Policy, PolicyDecision, RequestFacts, StatusOutcome
from ..policy.model import RuleSpec
from .base import hint_for

__all__ = ["check", "explain"]

EXIT_OK = 0
EXIT_REFUSED = 1


def _policy_errors(exc: PolicyError) -> str:
    if not exc.problems:
        return f"error: {exc.code}: {exc.message}"
    return "\n".join(f"error: {exc.code}: {p}" for p in exc.problems)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "none"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


def _rule_summary(rule: RuleSpec) -> str:
    m = rule.match
    bits = []
    if m.methods is not None:
        bits.append("|".join(sorted(m.methods)))
    if m.paths is not None:
        bits.append(" ".join(p.text for p in m.paths))
    if m.hosts is not None:
        bits.append("host " + " ".join(m.hosts))
    if m.models is not None:
        bits.append("model " + " ".join(m.models))
    what = " ".join(bits) or "every request"
    if not rule.allow:
        kind = "deny"
    elif rule.public:
        kind = "allow (public)"
    else:
        req = rule.require
        needs = sorted(req.types) or ["any credential"]
        kind = "allow with " + ", ".join(needs)
        if req.claims:
            kind += " + claims " + ", ".join(c.name for c in req.claims)
    return f"{rule.name}: {kind} for {what}" + (" [needs body]" if rule.needs_body else "")


def _shadowed(policy: Policy) -> list[str]:
    """Rules no request can reach because an earlier rule always matches first."""
    warnings = []
    rules = policy.rules
    for i, later in enumerate(rules):
        for earlier in rules[:i]:
            em, lm = earlier.match, later.match
            covers = (
                (em.methods is None or (lm.methods is not None and lm.methods <= em.methods))
                and (em.paths is None or any(p.text == "/**" for p in em.paths)
                     or (lm.paths is not None and {p.text for p in lm.paths} <= {p.text for p in em.paths}))
                and (em.hosts is None or (lm.hosts is not None and set(lm.hosts) <= set(em.hosts)))
                and (em.models is None or (lm.models is not None and set(lm.models) <= set(em.models)))
            )
            if covers:
                warnings.append(f"warning: rule '{later.name}' is never reached: rule '{earlier.name}' matches every request it would")
                break
    return warnings


def _delegation_warnings(policy: Policy) -> list[str]:
    """A rule that accepts chains without holder binding: whoever holds the root can use it."""
    out = []
    d = policy.document.delegation
    for rule in policy.rules:
        own = rule.require.delegation
        allowed = d.allowed if own is None or own.allowed is None else own.allowed
        binding = policy.defaults.holder_binding if rule.require.holder_binding is None else rule.require.holder_binding
        if allowed and rule.allow and not rule.public and not binding:
            out.append(
                f"warning: rule '{rule.name}' accepts delegation chains without holder binding: a delegate holding "
                "its delegator's credential could present it alone (docs/delegation.md)"
            )
    return out


def check(path: str | os.PathLike[str], *, as_json: bool = False) -> tuple[int, str]:
    """``vcgate policy check FILE``: validate, summarise, warn about unreachable rules."""
    try:
        policy = Policy.from_file(path)
    except PolicyError as exc:
        if as_json:
            problems = [
                {"source": p.source, "line": p.line, "column": p.column, "field": p.field, "message": p.message}
                for p in exc.problems
            ] or [{"message": exc.message}]
            return EXIT_REFUSED, json.dumps({"valid": False, "error": exc.code, "problems": problems,
                                             "hint": hint_for(exc.code)}, indent=2)
        return EXIT_REFUSED, _policy_errors(exc)
    if as_json:
        return EXIT_OK, json.dumps(_check_summary(policy), indent=2)
    doc = policy.document
    lines = [
        f"{doc.source}: ok (version {doc.version}, {len(doc.rules)} rule{'s' if len(doc.rules) != 1 else ''}, "
        f"{len(doc.trusted_issuers)} trusted issuer{'s' if len(doc.trusted_issuers) != 1 else ''})",
        f"audience: {doc.audience}",
        f"defaults: status {doc.defaults.status}, max credential age {_duration(doc.defaults.max_credential_age)}, "
        f"holder binding {'on' if doc.defaults.holder_binding else 'off'}",
        "trusted issuers:",
    ]
    for issuer in doc.trusted_issuers:
        types = ", ".join(sorted(issuer.types)) if issuer.types is not None else "any type"
        lines.append(f"  {issuer.did} ({types})")
    d = doc.delegation
    if d.allowed:
        kinds = ", ".join(sorted(d.types)) if d.types is not None else "any type"
        lines.append(f"delegation: allowed, at most {d.max_depth} link{'s' if d.max_depth != 1 else ''}, roots of {kinds}")
    else:
        lines.append("delegation: off (no delegation chain counts)")
    lines.append("rules (first match decides; no match: denied):")
    for i, rule in enumerate(doc.rules, 1):
        lines.append(f"  {i}. {_rule_summary(rule)}")
    lines.extend(_delegation_warnings(policy))
    lines.extend(_limit_lines(policy))
    lines.extend(_shadowed(policy))
    body_rules = [r.name for r in doc.rules if r.needs_body]
    if body_rules:
        lines.append(
            f"note: {', '.join(body_rules)} depend{'s' if len(body_rules) == 1 else ''} on the request body's "
            "'model': gateways that see only headers (NGINX auth_request, Traefik ForwardAuth) answer "
            "body_required where the model decides"
        )
    return EXIT_OK, "\n".join(lines)


def _check_summary(policy: Policy) -> dict[str, Any]:
    doc = policy.document
    return {
        "valid": True,
        "file": doc.source,
        "version": doc.version,
        "audience": doc.audience,
        "defaults": {
            "status": doc.defaults.status,
            "max_credential_age": doc.defaults.max_credential_age,
            "holder_binding": doc.defaults.holder_binding,
        },
        "trusted_issuers": [
            {"did": i.did, "types": sorted(i.types) if i.types is not None else None} for i in doc.trusted_issuers
        ],
        "delegation": {"allowed": doc.delegation.allowed, "max_depth": doc.delegation.max_depth},
        "rules": [{"name": r.name, "summary": _rule_summary(r), "needs_body": r.needs_body} for r in doc.rules],
        "warnings": [*_delegation_warnings(policy), *_shadowed(policy)],
    }


# --- limits (docs/limits.md) ---------------------------------------------------------------


def _limit_text(spec: Any) -> str:
    number = f"$claims.{'.'.join(spec.claim)}" if spec.claim else f"{spec.number:g}"
    if spec.claim and spec.default is not None:
        number += f" (default {spec.default:g})"
    elif spec.claim:
        number += " (missing: refused)"
    unit = "USD" if spec.kind == "usd" else spec.kind
    return f"{spec.name}: {number} {unit} per {_duration(spec.per)} by {spec.key}"


def _limit_lines(policy: Policy) -> list[str]:
    doc = policy.document
    lines = []
    if doc.limits or any(r.limits for r in doc.rules):
        lines.append("limits (counted atomically per call; docs/limits.md):")
        lines.extend(f"  {_limit_text(spec)}" for spec in doc.limits)
        for rule in doc.rules:
            lines.extend(f"  {_limit_text(spec)} [rule {rule.name}]" for spec in rule.limits)
    for price in doc.prices:
        lines.append(f"  price {price.model}: input {price.input:g}, output {price.output:g} USD per 1M tokens")
    return lines


def _counter_lines(policy: Policy, decision: PolicyDecision, model: str | None, store: Any) -> list[str]:
    """The counters the call would touch, with their state when a store is given."""
    from ..policy.limits import USD_UNIT, CallEstimate, Caller, plan_limits

    specs = policy.limits_for(decision)
    if not specs:
        return []
    lines = ["counters (this call):"]
    try:
        plan = plan_limits(specs, policy.prices, Caller.from_decision(decision), CallEstimate(model))
    except VCGateError as exc:
        return [*lines, f"  refused: {exc.code}: {exc.message}"]
    states = store.peek(plan.counters) if store is not None else None
    for i, r in enumerate(plan.limits):
        scale = USD_UNIT if r.spec.kind == "usd" else 1
        text = (f"  {r.name} [{_short_key(r.key)}]: limit {r.limit / scale:g} per {_duration(r.spec.per)}, "
                f"reserves {r.counter.amount / scale:g}")
        if states is not None:
            text += f", used {states[i].used / scale:g}, window resets in {states[i].reset:.0f}s"
        lines.append(text)
    if states is None:
        lines.append("  (give --redis URL or VCGATE_REDIS_URL to show how much of each is used)")
    return lines


def _short_key(key: str) -> str:
    return key if len(key) <= 72 else key[:40] + "..." + key[-24:]


def _format_decision(decision: PolicyDecision, request: RequestFacts, assumptions: list[str]) -> str:
    outcome = "allow" if decision.allow else f"deny ({decision.code})"
    lines = [
        f"decision: {outcome}, HTTP {decision.status}",
        f"rule: {decision.rule or '(none)'}",
        f"request: {request.method.upper()} {request.path} host={request.host or '-'} model={request.model or '-'}"
        f"{'' if request.body_available or request.model else ' (body not seen)'}",
        f"message: {decision.message}",
    ]
    cred = decision.credential
    if cred is not None:
        types = ", ".join(t for t in cred.types if t != "VerifiableCredential") or "VerifiableCredential"
        lines.append(f"credential: {types} issued by {cred.issuer} to {cred.subject or '-'}")
    for note in assumptions:
        lines.append(f"assumed: {note}")
    if decision.reasons:
        lines.append("reasons:")
        lines.extend(f"  - {r.code}: {r.message}" for r in decision.reasons)
    if decision.allow:
        lines.append("grants:")
        if not decision.grants.headers and not decision.grants.scopes:
            lines.append("  (none)")
        for name, value in decision.grants.headers.items():
            lines.append(f"  {name}: {value}")
        if decision.grants.scopes:
            lines.append(f"  scopes: {' '.join(decision.grants.scopes)}")
    return "\n".join(lines)


# --- delegation chains (docs/delegation.md) ------------------------------------------------------


def _hop_report(candidate: ChainCandidate, now: float, status_results: dict[str, StatusOutcome]) -> list[dict[str, Any]]:
    """Each hop of a chain, and whether it holds: the chain's own error names its hop; a hop
    after it is not checked; otherwise each hop's validity and (assumed) status."""
    offset = 1 if is_link(candidate.hops[0]) else 0  # the root was not presented
    failed_at = None
    if candidate.error is not None:
        failed_at = candidate.error.details.get("hop", len(candidate.hops) - 1 + offset)
    out = []
    for index, cred in enumerate(candidate.hops):
        hop = index + offset
        entry: dict[str, Any] = {
            "hop": hop,
            "issuer": cred.issuer,
            "subject": cred.subject,
            "types": [t for t in cred.types if t != "VerifiableCredential"],
            "restates": sorted(cred.claims) if hop else [],
        }
        why: tuple[str, str] | None = None
        if failed_at is not None and hop > failed_at:
            entry["checked"] = False
            out.append(entry)
            continue
        if failed_at == hop and candidate.error is not None:
            why = (candidate.error.code, candidate.error.message)
        if why is None:
            try:
                check_window(cred, hop, now)
            except DelegationError as exc:
                why = (exc.code, exc.message)
        if why is None and cred.status:
            outcome = status_results.get(cred.token, StatusOutcome.UNAVAILABLE)
            if outcome in (StatusOutcome.REVOKED, StatusOutcome.SUSPENDED):
                why = (f"delegation_{outcome.value}", f"hop {hop}: {outcome.value} (assumed)")
            elif outcome is not StatusOutcome.OK:
                why = (f"status_{outcome.value}", f"hop {hop}: status {outcome.value} (assumed)")
        entry["holds"] = why is None
        if why is not None:
            entry["code"], entry["message"] = why
        out.append(entry)
    return out


def _chain_lines(chains: list[tuple[ChainCandidate, list[dict[str, Any]]]]) -> list[str]:
    lines = []
    for candidate, hops in chains:
        chain = candidate.chain
        if chain is not None:
            links = f"{chain.depth} link{'s' if chain.depth != 1 else ''}"
            lines.append(f"chain: {links}, principal {chain.principal}, acting: {' > '.join(chain.actors)}")
        else:
            assert candidate.error is not None
            lines.append(f"chain: does not hold ({candidate.error.code})")
        for h in hops:
            head = f"  hop {h['hop']}: "
            if h["hop"] == 0:
                head += f"{', '.join(h['types']) or 'VerifiableCredential'} from {h['issuer']} to {h['subject']}"
            else:
                head += f"{h['issuer']} -> {h['subject']}"
            if h.get("checked") is False:
                lines.append(head + ": not checked (an earlier hop fails)")
            elif h["holds"]:
                what = "root" if h["hop"] == 0 else ("restates " + ", ".join(h["restates"]) if h["restates"] else "inherits all")
                lines.append(f"{head}: holds ({what})")
            else:
                lines.append(f"{head}: fails: {h['code']}: {h['message']}")
        if chain is not None:
            lines.append("effective claims: " + json.dumps(chain.claims, sort_keys=True, separators=(",", ":")))
    return lines


def explain(
    policy_path: str | os.PathLike[str],
    credential_token: str | None,
    method: str,
    path: str,
    model: str | None = None,
    host: str | None = None,
    *,
    holder: str | None = None,
    body_available: bool = True,
    assume_status: str = "ok",
    now: float | None = None,
    resolver: Resolver | None = None,
    as_json: bool = False,
    clock: Callable[[], float] = time.time,
    counter_store: Any = None,
    presentation_token: str | None = None,
) -> tuple[int, str]:
    """``vcgate policy explain``: verify one credential (or a presentation) and show how the
    policy decides a request.

    With ``presentation_token`` instead of ``credential_token``, the presentation's signature
    and every credential in it are verified (audience and nonce are not checked), its signer
    is the holder, and each delegation chain in it is shown hop by hop (docs/delegation.md).

    The credential is verified (signature, issuer key, validity) with a local resolver
    (did:key, did:jwk) unless ``resolver`` is given. Without a presentation, the holder is
    assumed to be the credential's subject unless ``holder`` says otherwise; status is not
    checked here but assumed to be ``assume_status`` (ok, revoked, suspended, unavailable,
    unsupported). Exit code 0 if the request would be allowed, 1 if refused or on an error.
    With ``counter_store`` (a :class:`~vcgate.stores.CounterStore`) the counters the call
    would touch are shown with how much of each is used; nothing is counted.
    """
    try:
        policy = Policy.from_file(policy_path)
    except PolicyError as exc:
        return EXIT_REFUSED, _policy_errors(exc)
    try:
        outcome = StatusOutcome(assume_status)
    except ValueError:
        known = ", ".join(o.value for o in StatusOutcome)
        return EXIT_REFUSED, f"error: usage: unknown status outcome {assume_status!r} (use {known})"
    at = clock() if now is None else now
    verifier = Verifier(resolver=resolver if resolver is not None else Resolver.local(), clock=lambda: at)
    assumptions = []
    credentials: list[VerifiedCredential]
    try:
        if presentation_token is not None:
            pres = verifier.verify_presentation(presentation_token.strip(), audience=None, nonce=None, holder_binding=False)
            credentials = list(pres.credentials)
            if holder is None:
                holder = pres.holder
                assumptions.append(f"presented by {holder} (the presentation's signer; its audience and nonce are not checked)")
        else:
            credentials = [verifier.verify_credential((credential_token or "").strip())]
    except VCGateError as exc:
        return EXIT_REFUSED, f"error: {exc.code}: {exc.message}"
    if holder is None:
        holder = credentials[0].subject
        assumptions.append("presented by its subject (no presentation here to prove the holder)")
    elif not assumptions:
        assumptions.append(f"presented by {holder}")
    status_results = {c.token: outcome for c in credentials if c.status}
    if status_results:
        assumptions.append(f"status {outcome.value} (status is not checked by explain)")
    request = RequestFacts(method=method, path=path, host=host, model=model, body_available=body_available)
    decision = policy.decide(request, credentials, now=at, holder=holder, status_results=status_results or None)
    chains = [(c, _hop_report(c, at, status_results)) for c in assemble(credentials)[1]]
    code = EXIT_OK if decision.allow else EXIT_REFUSED
    if as_json:
        body = decision.to_dict()
        body["assumed"] = assumptions
        if chains:
            body["chains"] = [{"holds": c.chain is not None, "hops": hops} for c, hops in chains]
        return code, json.dumps(body, indent=2)
    try:
        counters = _counter_lines(policy, decision, model, counter_store)
    except VCGateError as exc:
        counters = [f"counters: {exc.code}: {exc.message}"]
    return code, "\n".join([_format_decision(decision, request, assumptions), *_chain_lines(chains), *counters])
