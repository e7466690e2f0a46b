"""DCQL (OpenID4VP 1.0, section 6): say which claims a verifier needs; find them in a credential.

A verifier (the gate's challenge) builds a query with :func:`dcql_query`; a holder
(:class:`vcgate.client.Holder`, ``vcgate present --dcql``) reads it with :func:`parse_dcql` and
calls :func:`select` to learn which of its SD-JWT VCs answers and exactly which claim paths to
disclose -- nothing else. Pure functions over JSON; no I/O.

Supported: ``credentials`` entries of ``format`` ``dc+sd-jwt`` with ``meta.vct_values``,
``claims`` (``path`` of strings, non-negative integers and ``null`` for every array element,
optional ``values``, ``id``) and ``claim_sets`` (the first satisfiable set wins, as the
specification asks); ``credential_sets`` (section 6.2 and "Selecting Credentials"): every
required set (``required`` true or absent) is answered with its first option whose credentials
all match, optional ones when they can be, and nothing at all when a required set (or, without
``credential_sets``, any requested credential) cannot be. Queries of other formats are read
(a ``jwt_vc_json`` delegation link, say) but never matched here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedError
from ..keys import b64url_encode

__all__ = [
    "ASK_AGAIN_CODES",
    "DELEGATION_QUERY_ID",
    "ClaimQuery",
    "CredentialSet",
    "CredentialQuery",
    "DCQLQuery",
    "dcql_query",
    "dcql_for_rule",
    "challenge_param",
    "parse_dcql",
    "select",
    "claim_values",
]

FORMAT = "dc+sd-jwt"
#: The credential query of a delegation link in vcgate's queries (a VC-JOSE credential:
#: OpenID4VP's ``jwt_vc_json`` format, ``meta.type_values``), next to its root's query.
DELEGATION_QUERY_ID = "vcgate_delegation"
_DELEGATION_QUERY = {"id": DELEGATION_QUERY_ID, "format": "jwt_vc_json",
                     "meta": {"type_values": [["DelegationCredential"]]}}
_MAX_SETS = 16
#: Refusals a presentation of other claims or another credential can turn around: the token
#: endpoint's error then carries the rule's query (``dcql_query``) and a fresh ``nonce``, and
#: the client presents once more with them.
ASK_AGAIN_CODES = frozenset({"claim_not_disclosed", "credential_type_missing"})
_MAX_CREDENTIALS = 16
_MAX_CLAIMS = 64
_MAX_PATH = 16
_MAX_VALUES = 64

PathElement = str | int | None


@dataclass(frozen=True, slots=True)
class ClaimQuery:
    path: tuple[PathElement, ...]
    values: tuple[Any, ...] | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class CredentialQuery:
    id: str
    format: str
    vct_values: tuple[str, ...] | None
    claims: tuple[ClaimQuery, ...]
    claim_sets: tuple[tuple[str, ...], ...] | None = None


@dataclass(frozen=True, slots=True)
class CredentialSet:
    """One Credential Set Query: ``options`` (each a list of credential query ids that
    together satisfy it, in the verifier's order of preference) and ``required``."""

    options: tuple[tuple[str, ...], ...]
    required: bool = True


@dataclass(frozen=True, slots=True)
class DCQLQuery:
    credentials: tuple[CredentialQuery, ...]
    credential_sets: tuple[CredentialSet, ...] | None = None


def dcql_query(
    *,
    vct_values: Iterable[str] | None,
    claims: Iterable[Sequence[PathElement] | Mapping[str, Any]],
    id: str = "vcgate",
) -> dict[str, Any]:
    """A DCQL query (JSON) for one SD-JWT VC of one of ``vct_values`` disclosing ``claims``.

    ``claims`` are paths (``["org"]``, ``["address", "country"]``) or ready claim queries
    (``{"path": [...], "values": [...]}``).
    """
    entry: dict[str, Any] = {"id": id, "format": FORMAT}
    vcts = list(vct_values or ())
    if vcts:
        entry["meta"] = {"vct_values": vcts}
    items = [dict(c) if isinstance(c, Mapping) else {"path": list(c)} for c in claims]
    if items:
        entry["claims"] = items
    query = {"credentials": [entry]}
    parse_dcql(query)  # what vcgate sends must be what it accepts
    return query


def dcql_for_rule(rule: Any, *, limits: Iterable[Any] = (), delegation: Any = None) -> dict[str, Any] | None:
    """The query a policy rule amounts to: its ``types`` as ``vct_values`` and the paths of
    every claim the gate reads for it -- its ``claims`` requirements, then the ``$claims.x`` of
    its grant headers and of its limits (its own and ``limits``, the top-level ones): a budget
    or a header whose claim the holder withheld would be refused (``limit_unresolved``) or
    empty. ``None`` for a rule that needs no credential claim or type.

    When the rule accepts delegation chains (``delegation``: the policy's top-level
    ``DelegationSettings``, overridden by the rule's own ``require.delegation``), the query
    offers the alternative as ``credential_sets``: the credential itself, or that credential
    as a chain's root together with a delegation link.

    ``rule`` is a :class:`vcgate.policy.model.RuleSpec` and ``limits`` are
    :class:`vcgate.policy.limits.LimitSpec` (read by attribute, so this module does not import
    the policy package).
    """
    types = sorted(rule.require.types)
    paths: dict[tuple[str, ...], None] = {tuple(c.path): None for c in rule.require.claims}
    templates = [t for _, t in getattr(rule.grants, "headers", ())]
    for limit in (*limits, *getattr(rule, "limits", ())):
        if limit.claim is not None:
            paths.setdefault(tuple(limit.claim))
        if limit.template is not None:
            templates.append(limit.template)
    for template in templates:
        for variable in template.variables:
            if variable[0] == "claims" and len(variable) > 1:
                paths.setdefault(tuple(variable[1:]))
    if not types and not paths:
        return None
    query = dcql_query(vct_values=types or None, claims=[list(p) for p in paths])
    own = rule.require.delegation
    allowed = getattr(delegation, "allowed", False)
    if own is not None and own.allowed is not None:
        allowed = own.allowed
    if allowed:
        query["credentials"].append(dict(_DELEGATION_QUERY))
        query["credential_sets"] = [{"options": [[query["credentials"][0]["id"]],
                                                 [query["credentials"][0]["id"], DELEGATION_QUERY_ID]]}]
        parse_dcql(query)
    return query


def challenge_param(query: Mapping[str, Any]) -> str:
    """The ``dcql`` parameter of a ``VP`` challenge: base64url of the query's compact JSON
    (no quotes or backslashes to escape in a quoted-string; what the client flow decodes)."""
    return b64url_encode(json.dumps(query, separators=(",", ":")).encode())


def _path(value: Any) -> tuple[PathElement, ...]:
    if not isinstance(value, list) or not value or len(value) > _MAX_PATH:
        raise MalformedError(f"a DCQL claim path is a non-empty array of at most {_MAX_PATH} elements")
    for element in value:
        if element is not None and not isinstance(element, str) and not (
            isinstance(element, int) and not isinstance(element, bool) and element >= 0
        ):
            raise MalformedError("a DCQL claim path element is a string, a non-negative integer or null")
    return tuple(value)


def _claim(value: Any) -> ClaimQuery:
    if not isinstance(value, dict):
        raise MalformedError("a DCQL claims entry is an object")
    values = value.get("values")
    if values is not None:
        if not isinstance(values, list) or not values or len(values) > _MAX_VALUES or any(
            not isinstance(v, (str, int, bool)) for v in values
        ):
            raise MalformedError("DCQL 'values' is a non-empty array of strings, integers or booleans")
        values = tuple(values)
    cid = value.get("id")
    if cid is not None and not isinstance(cid, str):
        raise MalformedError("a DCQL claim 'id' is a string")
    return ClaimQuery(_path(value.get("path")), values, cid)


def _credential(value: Any) -> CredentialQuery:
    if not isinstance(value, dict):
        raise MalformedError("a DCQL credential query is an object")
    cid, fmt = value.get("id"), value.get("format")
    if not isinstance(cid, str) or not cid or not isinstance(fmt, str):
        raise MalformedError("a DCQL credential query needs an 'id' and a 'format'")
    meta = value.get("meta", {})
    if not isinstance(meta, dict):
        raise MalformedError("DCQL 'meta' is an object")
    vcts = meta.get("vct_values")
    if vcts is not None and (not isinstance(vcts, list) or not all(isinstance(v, str) for v in vcts)):
        raise MalformedError("DCQL 'meta.vct_values' is an array of strings")
    raw_claims = value.get("claims", [])
    if not isinstance(raw_claims, list) or len(raw_claims) > _MAX_CLAIMS:
        raise MalformedError(f"DCQL 'claims' is an array of at most {_MAX_CLAIMS} entries")
    claims = tuple(_claim(c) for c in raw_claims)
    sets = value.get("claim_sets")
    if sets is not None:
        ids = {c.id for c in claims}
        if not isinstance(sets, list) or not sets or not all(
            isinstance(s, list) and all(isinstance(i, str) and i in ids for i in s) for s in sets
        ):
            raise MalformedError("DCQL 'claim_sets' lists arrays of claim ids defined in 'claims'")
        sets = tuple(tuple(s) for s in sets)
    return CredentialQuery(cid, fmt, tuple(vcts) if vcts is not None else None, claims, sets)


def parse_dcql(query: Any) -> DCQLQuery:
    """Validate a DCQL query (a parsed JSON object); raise ``MalformedError``."""
    if not isinstance(query, dict):
        raise MalformedError("a DCQL query is a JSON object")
    creds = query.get("credentials")
    if not isinstance(creds, list) or not creds or len(creds) > _MAX_CREDENTIALS:
        raise MalformedError(f"DCQL 'credentials' is a non-empty array of at most {_MAX_CREDENTIALS} queries")
    parsed = tuple(_credential(c) for c in creds)
    if len({c.id for c in parsed}) != len(parsed):
        raise MalformedError("DCQL credential query ids must be unique")
    sets = query.get("credential_sets")
    if sets is None:
        return DCQLQuery(parsed, None)
    if not isinstance(sets, list) or not sets or len(sets) > _MAX_SETS:
        raise MalformedError(f"DCQL 'credential_sets' is a non-empty array of at most {_MAX_SETS} objects")
    ids = {c.id for c in parsed}
    return DCQLQuery(parsed, tuple(_credential_set(s, ids) for s in sets))


def _credential_set(value: Any, ids: set[str]) -> CredentialSet:
    if not isinstance(value, dict):
        raise MalformedError("a DCQL credential set query is an object")
    options, required = value.get("options"), value.get("required", True)
    if not isinstance(options, list) or not options or len(options) > _MAX_CREDENTIALS or not all(
        isinstance(o, list) and o and len(o) <= _MAX_CREDENTIALS and all(isinstance(i, str) and i in ids for i in o)
        for o in options
    ):
        raise MalformedError("DCQL 'credential_sets[].options' lists non-empty arrays of ids defined in 'credentials'")
    if not isinstance(required, bool):
        raise MalformedError("DCQL 'credential_sets[].required' is a boolean")
    return CredentialSet(tuple(tuple(o) for o in options), required)


def claim_values(claims: Any, path: Sequence[PathElement]) -> list[Any]:
    """Every value ``path`` selects in ``claims`` (OpenID4VP 7: ``null`` = each array element)."""
    current = [claims]
    for element in path:
        nxt: list[Any] = []
        for node in current:
            if element is None:
                if isinstance(node, list):
                    nxt.extend(node)
            elif isinstance(element, str):
                if isinstance(node, dict) and element in node:
                    nxt.append(node[element])
            elif isinstance(node, list) and element < len(node):
                nxt.append(node[element])
        current = nxt
        if not current:
            return []
    return current


def _satisfied(claims: Mapping[str, Any], claim: ClaimQuery) -> bool:
    found = claim_values(claims, claim.path)
    if not found:
        return False
    return claim.values is None or any(v in claim.values and type(v) in (str, int, bool) for v in found)


def select(query: DCQLQuery, credentials: Iterable[tuple[str, Sequence[str], Mapping[str, Any]]]) -> dict[str, tuple[Any, list[tuple[PathElement, ...]]]]:
    """Match ``credentials`` (``(handle, types, all claims)``, e.g. the holder's SD-JWT VCs
    with every Disclosure applied) against ``query``.

    Each credential query is answered by the first credential of a matching ``vct`` holding
    every requested claim (or the first satisfiable ``claim_sets`` option); a query without
    ``claims`` asks for no selectively disclosable claim at all. Then OpenID4VP's rules for
    selecting credentials: without ``credential_sets`` every credential query must be answered;
    with them, each required set by its first option whose queries are all answered, each
    optional set likewise if it can be, and only the queries of the chosen options are
    returned. Returns ``{credential query id: (handle, claim paths to disclose)}`` in the
    query's order, or ``{}`` when a required credential cannot be delivered (the wallet then
    returns nothing).
    """
    pool = list(credentials)
    answers: dict[str, tuple[Any, list[tuple[PathElement, ...]]]] = {}
    for cq in query.credentials:
        if cq.format != FORMAT:
            continue
        for handle, types, claims in pool:
            if cq.vct_values is not None and not set(cq.vct_values).intersection(types):
                continue
            options: list[tuple[ClaimQuery, ...]]
            if cq.claim_sets:
                by_id = {c.id: c for c in cq.claims}
                options = [tuple(by_id[i] for i in s) for s in cq.claim_sets]
            else:
                options = [cq.claims]
            chosen = next((opt for opt in options if all(_satisfied(claims, c) for c in opt)), None)
            if chosen is not None:
                answers[cq.id] = (handle, [c.path for c in chosen])
                break
    if query.credential_sets is None:
        wanted = {cq.id for cq in query.credentials}
    else:
        wanted = set()
        for cs in query.credential_sets:
            option = next((o for o in cs.options if all(i in answers for i in o)), None)
            if option is None and cs.required:
                return {}
            wanted.update(option or ())
    if not wanted.issubset(answers):
        return {}
    return {cq.id: answers[cq.id] for cq in query.credentials if cq.id in wanted}
