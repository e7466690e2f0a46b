"""The policy engine: request facts + verified credentials + status outcomes -> a decision.

Pure: no I/O, no clock (the caller passes ``now``), no global state. A normal refusal is a
:class:`PolicyDecision` with ``allow=False``, never an exception. The rule table is compiled
once: globs become regular expressions (one alternation per rule, behind a literal-prefix
check), claim constraints become small predicates, and which rules a (method, path) pair can
reach is memoised per policy, so a request usually costs one dict lookup before the deciding
rule's own checks. Reasons (text) are built only on a denial.

How a request is decided:

1. The path is checked (raw, percent-encoded form; query string ignored). Encoded ``/``,
   ``\\``, ``%``, ``#``, ``?`` or ``;``, a raw ``;`` (path parameters, which servlet containers
   and some proxies strip before routing), ``#``, control characters, empty segments and dot
   segments, and segments ending in '.' or a space (IIS drops those), are refused with
   ``request_invalid`` -- never "normalised", since a backend might normalise differently.
   What is left decodes to exactly one path every server agrees on. A trailing '/' and
   capitals, which many servers route as the bare and the lower-case path, are decided both
   ways: the request must be allowed under each reading (see :meth:`Policy._route`).
2. Rules are tried in file order; the first whose ``match`` holds decides. A deny rule
   denies; an allow rule allows if one presented credential meets all its requirements,
   else denies with every reason. No rule matching is ``no_matching_rule`` (default deny).
3. When the request's model is unknown (no body) a rule matching on ``models`` might or might
   not apply. If every outcome that could follow is a denial, the first is returned; if any
   could allow, the decision is ``body_required`` -- never a guess that could let through a
   request a model-specific rule would refuse.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, NamedTuple

from ..credentials.delegation import ChainCandidate, DelegationChain, assemble, check_window, is_link
from ..credentials.models import FORMAT_SD_JWT_VC, VerifiedCredential
from ..errors import (
    BodyRequiredError,
    ClaimMismatchError,
    ClaimNotDisclosedError,
    CredentialRequiredError,
    CredentialTooOldError,
    CredentialTypeMissingError,
    DelegationError,
    DelegationRevokedError,
    DelegationSuspendedError,
    DeniedByRuleError,
    ExpiredError,
    GrantInvalidError,
    HolderMismatchError,
    IssuerNotTrustedError,
    LimitUnresolvedError,
    NoMatchingRuleError,
    PolicyDeniedError,
    PolicyError,
    PolicyProblem,
    QuotaExceededError,
    RequestInvalidError,
    RevokedError,
    StatusUnavailableError,
    StatusUnsupportedError,
    SuspendedError,
    VCGateError,
)
from .model import (
    MAX_POLICY_BYTES,
    MISSING,
    NEEDS_MODEL,
    ClaimConstraint,
    Defaults,
    DelegationSettings,
    PolicyDocument,
    RuleSpec,
    Template,
    TrustedIssuer,
    is_number,
    load_policy,
    lookup_claim,
    same,
)

__all__ = [
    "DENIAL_CODES",
    "Admission",
    "Grants",
    "Policy",
    "PolicyDecision",
    "Reason",
    "RequestFacts",
    "StatusOutcome",
]


#: Every code a :class:`~vcgate.policy.PolicyDecision` can carry, mapped to its error class
#: (in :mod:`vcgate.errors`), whose ``status`` is the HTTP status the gateway answers with.
#: Denials that reuse an existing code (``revoked``, ``expired``, ...) use the existing classes.
DENIAL_CODES: dict[str, type[VCGateError]] = {
    cls.code: cls
    for cls in (
        PolicyDeniedError,
        NoMatchingRuleError,
        DeniedByRuleError,
        CredentialRequiredError,
        CredentialTypeMissingError,
        IssuerNotTrustedError,
        ClaimMismatchError,
        ClaimNotDisclosedError,
        CredentialTooOldError,
        BodyRequiredError,
        RequestInvalidError,
        GrantInvalidError,
        QuotaExceededError,
        LimitUnresolvedError,
        HolderMismatchError,
        ExpiredError,
        RevokedError,
        SuspendedError,
        StatusUnavailableError,
        StatusUnsupportedError,
        # Every delegation_* code (docs/delegation.md) can be a decision's code.
        DelegationError,
        *DelegationError.__subclasses__(),
    )
}


class StatusOutcome(str, Enum):
    """What status checking found for one credential (done elsewhere; the engine only applies it)."""

    OK = "ok"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    UNAVAILABLE = "unavailable"
    UNSUPPORTED = "unsupported"

    @classmethod
    def from_error(cls, exc: BaseException) -> StatusOutcome:
        """Map an exception from :class:`vcgate.status.StatusChecker` to an outcome.

        Anything not clearly "revoked", "suspended" or "cannot check this type" -- a list that
        does not verify, a malformed entry -- counts as unavailable, which ``required`` refuses
        and ``fail-open`` lets through with a note.
        """
        if isinstance(exc, RevokedError):
            return cls.REVOKED
        if isinstance(exc, SuspendedError):
            return cls.SUSPENDED
        if isinstance(exc, StatusUnsupportedError):
            return cls.UNSUPPORTED
        return cls.UNAVAILABLE


class Admission(NamedTuple):
    """The outcome of :meth:`Policy.admit`: the decision and the credentials admitted."""

    decision: PolicyDecision
    credentials: tuple[VerifiedCredential, ...]


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the engine knows about the HTTP request.

    ``path`` is the raw request target as sent (percent-encoding intact: ASGI ``raw_path``,
    WSGI ``REQUEST_URI``, Envoy ``:path``, NGINX ``$request_uri``); a query string is ignored.
    ``model`` is the OpenAI body's ``model`` field. ``body_available`` says whether the body
    was seen: with ``model=None`` it separates "the body names no model" (rules on models do
    not match) from "the body was not seen" (they might).
    """

    method: str
    path: str
    host: str | None = None
    model: str | None = None
    body_available: bool = False


class Reason(NamedTuple):
    """One reason behind a decision: a stable code and a message for people."""

    code: str
    message: str


# Grants and PolicyDecision are named tuples rather than frozen dataclasses: both are built on
# every request, and a frozen dataclass's __init__ alone measured 1.4 us here -- a quarter of
# a whole decision. A named tuple is just as immutable and costs 0.3 us.


class Grants(NamedTuple):
    """What an allowing rule grants: ``headers`` to inject upstream (names as written in the
    policy, all ``X-Vcgate-*``) and ``scopes`` for a session token."""

    headers: Mapping[str, str] = MappingProxyType({})
    scopes: tuple[str, ...] = ()


_NO_GRANTS = Grants()


class PolicyDecision(NamedTuple):
    """The outcome of :meth:`Policy.decide` (immutable).

    ``code`` is ``None`` when allowed, else the stable error code of the main reason (its
    class is ``DENIAL_CODES[code]``); ``status`` is the HTTP status to answer with. ``reasons``
    lists every reason found (on an allow: notes such as a fail-open status check).
    ``subject``/``issuer``/``credential``: the credential that satisfied the rule, or on a
    denial the one that came closest (for the audit log), if any.
    """

    allow: bool
    status: int
    code: str | None
    message: str
    rule: str | None = None
    reasons: tuple[Reason, ...] = ()
    grants: Grants = _NO_GRANTS
    subject: str | None = None
    issuer: str | None = None
    credential: VerifiedCredential | None = None
    #: The delegation chain that satisfied the rule (or came closest), if a chain was presented.
    chain: DelegationChain | None = None

    def error(self) -> VCGateError | None:
        """The refusal as an exception (``None`` if allowed), for adapters that raise."""
        if self.allow or self.code is None:
            return None
        cls = DENIAL_CODES[self.code]
        return cls(self.message, rule=self.rule) if self.rule else cls(self.message)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (for logs, ``policy explain --json`` and tests)."""
        return {
            "allow": self.allow,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "rule": self.rule,
            "reasons": [list(r) for r in self.reasons],
            "grants": {"headers": dict(self.grants.headers), "scopes": list(self.grants.scopes)},
            "subject": self.subject,
            "issuer": self.issuer,
            **(
                {"principal": self.chain.principal, "actors": list(self.chain.actors)}
                if self.chain is not None
                else {}
            ),
        }


# --- request normalisation -----------------------------------------------------------------------

# Anything that needs a closer look; most paths contain none of these and skip the slow path.
_PATH_SUSPECT = re.compile(r"[%#;\\\x00-\x20\x7f]|//|\.(?:/|\Z)")
_DOT_OR_EMPTY = re.compile(r"//|/\.\.?(?:/|\Z)")
_TRAILING_DOT_OR_SPACE = re.compile(r"[. ](?:/|\Z)")
_HEX = frozenset("0123456789abcdefABCDEF")
#: Bytes that, once decoded, would change how a server splits or routes the path.
_NEVER_ENCODED = frozenset(b"/\\%#?;")


def _check_path(raw: str) -> tuple[str | None, str]:
    """(the decoded path, "") or (None, why it is refused). ``raw`` has no query string."""
    path = raw
    if not path.startswith("/"):
        return None, "the request path must start with '/'"
    if _PATH_SUSPECT.search(path) is None:
        return path, ""
    if re.search(r"[#\\\x00-\x20\x7f]", path):
        return None, "the request path contains a space, a control character, '#' or a backslash"
    if ";" in path:
        return None, "the request path contains ';' (path parameters), which servers and proxies read differently"
    if "%" in path:
        pieces = path.split("%")
        out = [pieces[0].encode("utf-8")]
        for piece in pieces[1:]:
            if len(piece) < 2 or piece[0] not in _HEX or piece[1] not in _HEX:
                return None, "the request path has an invalid percent-encoding"
            byte = int(piece[:2], 16)
            if byte < 0x20 or byte == 0x7F or byte in _NEVER_ENCODED:
                return None, "the request path percent-encodes '/', '\\', '%', '#', '?', ';' or a control character"
            out.append(bytes((byte,)))
            out.append(piece[2:].encode("utf-8"))
        try:
            path = b"".join(out).decode("utf-8")
        except UnicodeDecodeError:
            return None, "the request path is not UTF-8 after percent-decoding"
    if _DOT_OR_EMPTY.search(path):
        return None, "the request path has an empty ('//') or dot ('.', '..') segment"
    if _TRAILING_DOT_OR_SPACE.search(path):
        # IIS and Windows file systems drop them: '/v1/chat/completions.' is served as
        # '/v1/chat/completions' there, but would not match that path's rules here.
        return None, "a segment of the request path ends with '.' or a space, which some servers drop"
    return path, ""


_HOST = re.compile(r"(?:([a-z0-9_-]+(?:\.[a-z0-9_-]+)*)\.?|(\[[0-9a-f:.]+\]))(?::([0-9]{1,5}))?")


def _check_host(raw: str | None) -> tuple[str, str] | None:
    """(host without port, host[:port]) lower-cased, trailing dot dropped; None if invalid."""
    if not raw:
        return ("", "")
    m = _HOST.fullmatch(raw.lower())
    if m is None:
        return None
    name = m.group(1) or m.group(2)
    return (name, f"{name}:{m.group(3)}" if m.group(3) else name)


# --- compiled rules -----------------------------------------------------------------------------

_OFF, _FAIL_OPEN = "off", "fail-open"
_REQUEST_INVALID = "request_invalid"
_OUTCOMES = frozenset(o.value for o in StatusOutcome)

# Stages of the requirement checks, in order. On a denial the credential whose first failure
# came latest is the "closest" one and gives the main reason.
_S_ISSUER, _S_TYPE, _S_SCOPE, _S_EXPIRED, _S_HOLDER, _S_AGE, _S_CLAIMS, _S_STATUS, _S_MODEL = range(1, 10)

_MAX_HEADER_VALUE = 4096
#: Distinct (method, raw path) pairs whose routing is memoised per policy (then the memo restarts).
ROUTE_CACHE_SIZE = 4096
#: Distinct presented delegation chains whose assembly is memoised per policy (then it restarts).
CHAIN_CACHE_SIZE = 1024
_MAX_CACHED_PATH = 512

_NEEDS_MODEL: Any = object()


def _getter(path: tuple[str, ...]) -> Callable[[Any], Any]:
    if len(path) == 1:
        key = path[0]

        def get(claims: Any) -> Any:
            if type(claims) is dict:
                return claims.get(key, MISSING)
            return lookup_claim(claims, path)

        return get
    return lambda claims: lookup_claim(claims, path)


def _predicate(c: ClaimConstraint) -> Callable[..., bool]:
    """A fast yes/no version of ``c.test`` (same semantics; ``test`` explains a "no").

    For a ``contains: $model`` constraint the predicate takes the model as a second argument.
    """
    checks: list[Callable[[Any], bool]] = []
    if c.equals is not MISSING:
        target = c.equals
        if isinstance(target, str):
            checks.append(lambda v: isinstance(v, str) and v == target)
        else:
            checks.append(lambda v: same(v, target))
    if c.one_of is not None:
        options = c.one_of
        if all(isinstance(o, str) for o in options):
            fast = frozenset(options)
            checks.append(lambda v: isinstance(v, str) and v in fast)
        else:
            checks.append(lambda v: any(same(v, o) for o in options))
    if c.glob is not None:
        match = c.glob.match
        checks.append(lambda v: isinstance(v, str) and match(v) is not None)
    if c.min is not None or c.max is not None:
        lo = c.min if c.min is not None else -math.inf
        hi = c.max if c.max is not None else math.inf
        checks.append(lambda v: is_number(v) and lo <= v <= hi)
    if c.contains is not MISSING and not c.uses_model:
        item = c.contains
        if isinstance(item, str):
            # ``in`` compares with ==, which for a str is only ever true against a str.
            checks.append(lambda v: isinstance(v, list) and item in v)
        else:
            checks.append(lambda v: isinstance(v, list) and any(same(x, item) for x in v))
    get = _getter(c.path)
    if c.uses_model:
        rest = tuple(checks)

        def with_model(claims: Any, model: str) -> bool:
            v = get(claims)
            if type(v) is not list and not isinstance(v, list):
                return False
            return model in v and (not rest or all(chk(v) for chk in rest))

        return with_model
    if len(checks) == 1:
        only = checks[0]

        def one(claims: Any) -> bool:
            v = get(claims)
            return v is not MISSING and only(v)

        return one
    every = tuple(checks)

    def all_of(claims: Any) -> bool:
        v = get(claims)
        return v is not MISSING and all(chk(v) for chk in every)

    return all_of


# How a granted header gets its value: a constant, one variable, or a template of several parts.
_H_CONST, _H_SUBJECT, _H_ISSUER, _H_HOLDER, _H_MODEL, _H_CLAIM, _H_TEMPLATE = range(7)
_SINGLE_VARS = {"subject": _H_SUBJECT, "issuer": _H_ISSUER, "holder": _H_HOLDER, "model": _H_MODEL}


def _compile_header(name: str, template: Template, rule: str) -> tuple[str, int, Any]:
    # $rule is known now: fold it into the literal text.
    parts: list[str | tuple[str, ...]] = []
    for part in template.parts:
        if part == ("rule",):
            part = rule
        if isinstance(part, str) and parts and isinstance(parts[-1], str):
            parts[-1] = parts[-1] + part  # type: ignore[operator]
        else:
            parts.append(part)
    if not parts:
        return name, _H_CONST, ""
    if len(parts) == 1:
        only = parts[0]
        if isinstance(only, str):
            return name, _H_CONST, only
        if only[0] == "claims":
            return name, _H_CLAIM, only[1:]
        if only[0] in _SINGLE_VARS:
            return name, _SINGLE_VARS[only[0]], None
    return name, _H_TEMPLATE, tuple(parts)


class _Rule:
    """A rule compiled for speed. Defaults are folded in, so the engine never looks them up."""

    __slots__ = (
        "spec",
        "name",
        "allow",
        "public",
        "methods",
        "any_path",
        "path_literals",
        "path_prefixes",
        "path_regex",
        "folded_literals",
        "folded_prefixes",
        "folded_regex",
        "hosts",
        "models",
        "types",
        "issuers",
        "claims",
        "predicates",
        "model_claims",
        "model_predicates",
        "holder_binding",
        "status",
        "max_age",
        "headers",
        "scopes",
        "allowed_message",
        "delegation_allowed",
        "delegation_max_depth",
        "delegation_types",
    )

    def __init__(self, spec: RuleSpec, defaults: Defaults, delegation: DelegationSettings = DelegationSettings()) -> None:
        self.spec = spec
        self.name = spec.name
        self.allow = spec.allow
        self.public = spec.public
        match = spec.match
        self.methods = match.methods
        self.any_path = match.paths is None
        globs = match.paths or ()
        self.path_literals = frozenset(g.literal for g in globs if g.literal is not None)
        wild = [g for g in globs if g.regex is not None]
        self.path_prefixes = tuple(g.prefix for g in wild)
        self.path_regex = re.compile("|".join(f"(?:{g.regex})" for g in wild)) if wild else None
        # The same globs without regard to case, for servers that route that way (see _route).
        self.folded_literals = frozenset(text.lower() for text in self.path_literals)
        self.folded_prefixes = tuple(prefix.lower() for prefix in self.path_prefixes)
        self.folded_regex = re.compile(self.path_regex.pattern, re.IGNORECASE) if self.path_regex is not None else None
        self.hosts = tuple((":" in text, regex) for text, regex in zip(match.hosts or (), match.host_regexes))
        # One alternation per rule: fnmatch.translate anchors each glob with \Z.
        self.models = (
            re.compile("|".join(r.pattern for r in match.model_regexes)) if match.models is not None else None
        )
        req = spec.require
        self.types = tuple(sorted(req.types))
        self.issuers = req.issuers
        self.claims = tuple(c for c in req.claims if not c.uses_model)
        self.predicates = tuple(_predicate(c) for c in self.claims)
        self.model_claims = tuple(c for c in req.claims if c.uses_model)
        self.model_predicates = tuple(_predicate(c) for c in self.model_claims)
        self.holder_binding = defaults.holder_binding if req.holder_binding is None else req.holder_binding
        self.status = req.status or defaults.status
        self.max_age = req.max_age if req.max_age is not None else defaults.max_credential_age
        self.headers = tuple(_compile_header(name, t, spec.name) for name, t in spec.grants.headers)
        self.scopes = spec.grants.scopes
        self.allowed_message = f"allowed by rule '{spec.name}'"
        own = req.delegation
        self.delegation_allowed = delegation.allowed if own is None or own.allowed is None else own.allowed
        self.delegation_max_depth = delegation.max_depth if own is None or own.max_depth is None else own.max_depth
        self.delegation_types = delegation.types if own is None or own.types is None else own.types

    def path_ok(self, path: str) -> bool:
        if self.any_path or path in self.path_literals:
            return True
        regex = self.path_regex
        return regex is not None and path.startswith(self.path_prefixes) and regex.fullmatch(path) is not None

    def folded_path_ok(self, folded: str) -> bool:
        """:meth:`path_ok` without regard to case; ``folded`` is the lower-cased path."""
        if self.any_path or folded in self.folded_literals:
            return True
        regex = self.folded_regex
        return regex is not None and folded.startswith(self.folded_prefixes) and regex.fullmatch(folded) is not None

    def host_ok(self, host: tuple[str, str] | None) -> bool:
        if not host or not host[0]:
            return False
        name, with_port = host
        return any(regex.match(with_port if has_port else name) for has_port, regex in self.hosts)


class _Route(NamedTuple):
    """What a (method, raw path) pair routes to; memoised per policy."""

    path: str | None  # decoded; None: refused
    why: str  # why it is refused
    rules: tuple[_Rule, ...]  # whose method and path match, in file order
    caseless: tuple[_Rule, ...] | None  # matching without regard to case, when that differs


class _Undecided(NamedTuple):
    """A rule applies but only the unknown model can settle whether it allows."""

    rule: str
    reasons: tuple[Reason, ...]


def _short(text: str | None, n: int = 48) -> str:
    if text is None:
        return "-"
    return text if len(text) <= n else text[: n - 13] + "..." + text[-10:]


def _label(index: int, cred: VerifiedCredential) -> str:
    types = [t for t in cred.types if t != "VerifiableCredential"]
    kind = types[-1] if types else "VerifiableCredential"
    return f"credential #{index + 1} ({kind} from {_short(cred.issuer)})"


def _undisclosed(cred: VerifiedCredential, constraint: Any) -> bool:
    """An SD-JWT VC without the claim: the holder withheld it (or the issuer never said it)."""
    return cred.format == FORMAT_SD_JWT_VC and lookup_claim(cred.claims, constraint.path) is MISSING


def _issued_at(cred: VerifiedCredential) -> float | None:
    iat = cred.payload.get("iat")
    if isinstance(iat, (int, float)) and not isinstance(iat, bool):
        return float(iat)
    return cred.valid_from


def _render(value: Any) -> str | None:
    if value is None or value is MISSING:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def _deny(code: str, message: str, rule: str | None, reasons: tuple[Reason, ...] | None = None) -> PolicyDecision:
    return PolicyDecision(
        False, DENIAL_CODES[code].status, code, message, rule, reasons if reasons is not None else (Reason(code, message),)
    )


# --- the policy -----------------------------------------------------------------------------------


class Policy:
    """A loaded, compiled policy. Thread-safe; reload by building a new one.

    Build it with :meth:`from_yaml` or :meth:`from_file`; decide with :meth:`decide`. The
    only state that changes after construction is a bounded memo of how (method, raw path)
    pairs route to candidate rules -- a pure function of the policy, kept per instance.
    """

    def __init__(self, document: PolicyDocument) -> None:
        self.document = document
        #: SHA-256 of the YAML text it was loaded from (None when built from a document).
        self.sha256: str | None = None
        self._trusted: dict[str, frozenset[str] | None] = {i.did: i.types for i in document.trusted_issuers}
        self._rules = tuple(_Rule(spec, document.defaults, document.delegation) for spec in document.rules)
        self._uses_hosts = any(r.hosts for r in self._rules)
        self._routes: dict[tuple[str, str], _Route] = {}
        # Assembled delegation chains by the presented tokens: a session presents the same
        # chain on every call, so its structure and attenuation are checked once; each hop's
        # validity and status are still checked per call (_chain_failures).
        self._chains: dict[tuple[str, ...], tuple[tuple[VerifiedCredential, ...], dict[str, ChainCandidate]]] = {}
        self._limits_memo: dict[tuple[str, bool], tuple[Any, ...]] = {}  # bounded by the rule count

    # -- construction --

    @classmethod
    def from_yaml(cls, text: str, source: str = "policy.yaml") -> Policy:
        """Parse and validate policy YAML; raises :class:`PolicyError` naming line and field."""
        policy = cls(load_policy(text, source))
        policy.sha256 = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return policy

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        """Read a policy file (UTF-8, at most 1 MiB); raises :class:`PolicyError`."""
        source = os.fspath(path)
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_POLICY_BYTES + 1)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise PolicyError([PolicyProblem(source, None, None, "", f"cannot read the policy file: {reason}")]) from exc
        if len(data) > MAX_POLICY_BYTES:
            raise PolicyError([PolicyProblem(source, None, None, "", f"larger than {MAX_POLICY_BYTES} bytes")])
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            raise PolicyError(
                [PolicyProblem(source, line, column, "", f"the policy file is not UTF-8 (byte 0x{data[exc.start]:02x})")]
            ) from exc
        return cls.from_yaml(text, source)

    # -- what the file says --

    @property
    def source(self) -> str:
        return self.document.source

    @property
    def grant_header_names(self) -> tuple[str, ...]:
        """Every header name some rule may grant (lower-case, sorted): what a gateway that
        cannot strip by prefix (NGINX) must overwrite on every request."""
        return tuple(sorted({name.lower() for rule in self.document.rules for name, _ in rule.grants.headers}))

    @property
    def audience(self) -> str:
        """The gateway's own URL: presentations must name it in ``aud``."""
        return self.document.audience

    @property
    def trusted_issuers(self) -> tuple[TrustedIssuer, ...]:
        return self.document.trusted_issuers

    @property
    def defaults(self) -> Defaults:
        return self.document.defaults

    @property
    def rules(self) -> tuple[RuleSpec, ...]:
        return self.document.rules

    @property
    def needs_body(self) -> bool:
        """True if some rule depends on the OpenAI ``model`` field: a headers-only gateway
        (NGINX auth_request, Traefik ForwardAuth) cannot fully enforce this policy."""
        return any(r.needs_body for r in self.document.rules)

    # -- limits (policy/limits.py; docs/limits.md) --

    @property
    def prices(self) -> tuple[Any, ...]:
        """The ``prices:`` table (:class:`~vcgate.policy.limits.PriceSpec`, first match wins)."""
        return self.document.prices

    @property
    def has_limits(self) -> bool:
        return bool(self.document.limits) or any(r.limits for r in self.document.rules)

    @property
    def limits_need_body(self) -> bool:
        """Some token or cost limit reads the request body (its ``max_tokens`` and model)."""
        specs = (*self.document.limits, *(s for r in self.document.rules for s in r.limits))
        return any(s.needs_body for s in specs)

    def limits_for(self, decision: PolicyDecision) -> tuple[Any, ...]:
        """The limits an allowing ``decision`` puts on its call: the top-level ones (when a
        credential decided it) then its rule's own, as :class:`~vcgate.policy.limits.LimitSpec`."""
        if not decision.allow or decision.rule is None:
            return ()
        memo = self._limits_memo
        hit = memo.get((decision.rule, decision.credential is not None))
        if hit is None:
            rule = next((r for r in self.document.rules if r.name == decision.rule), None)
            own = rule.limits if rule is not None else ()
            hit = (*self.document.limits, *own) if decision.credential is not None else tuple(own)
            memo[(decision.rule, decision.credential is not None)] = hit
        return hit

    # -- deciding --

    def _chain_candidates(
        self, creds: Sequence[VerifiedCredential]
    ) -> tuple[tuple[VerifiedCredential, ...], dict[str, ChainCandidate]]:
        key = tuple(c.token for c in creds)
        found = self._chains.get(key)
        if found is None:
            found = _chain_candidates(creds)
            if len(self._chains) >= CHAIN_CACHE_SIZE:
                self._chains.clear()
            self._chains[key] = found
        return found

    def _route(self, method: str, raw_path: str) -> _Route:
        """The decoded path and the rules whose method and path match it (or why the path is
        refused), and, for a path with capitals, the rules matching it without regard to case
        when those differ."""
        path, why = _check_path(raw_path)
        if path is None:
            return _Route(None, why, (), None)
        upper = method.upper()
        # A trailing '/' is also decided as the path without it: Express, ASP.NET Core, Spring
        # (before 6) and Werkzeug without strict_slashes route both to the same handler.
        bare = path[:-1] if len(path) > 1 and path[-1] == "/" else None
        exact = tuple(
            r for r in self._rules
            if (r.methods is None or upper in r.methods) and (r.path_ok(path) or (bare is not None and r.path_ok(bare)))
        )
        # Express, ASP.NET Core, IIS and Spring (optionally) route without regard to case, so
        # '/v1/chat/Completions' may reach the handler a '/v1/chat/completions' rule guards.
        # Such a path is decided both ways and must be allowed both ways (docs/policy.md).
        folded = path.lower()
        if folded == path:
            return _Route(path, "", exact, None)
        fbare = folded[:-1] if bare is not None else None
        caseless = tuple(
            r for r in self._rules
            if (r.methods is None or upper in r.methods)
            and (r.folded_path_ok(folded) or (fbare is not None and r.folded_path_ok(fbare)))
        )
        return _Route(path, "", exact, caseless if caseless != exact else None)

    def decide(
        self,
        request: RequestFacts,
        credentials: Sequence[VerifiedCredential] | None,
        *,
        now: float,
        holder: str | None = None,
        status_results: Mapping[str, StatusOutcome | str] | None = None,
    ) -> PolicyDecision:
        """Decide one request. Never raises for a refusal: the decision says allow or deny.

        :param credentials: the verified credentials presented (``None`` or empty: none).
            Delegation chains among them (root and ``DelegationCredential`` links) are
            assembled and decided as one candidate on their narrowed claims; the decision's
            ``chain`` is the chain that allowed or came closest (docs/delegation.md).
        :param now: POSIX seconds, for ``max_age`` and expiry (a session may outlive a credential).
        :param holder: the DID proven to present the credentials (presentation signer or the
            session key's DID); needed when a rule requires holder binding.
        :param status_results: per credential, keyed by :attr:`VerifiedCredential.token`, what
            status checking found. A credential with ``credentialStatus`` entries and no
            result counts as ``unavailable``.
        """
        raw_path = request.path
        if "?" in raw_path:
            raw_path = raw_path[: raw_path.index("?")]  # the query string never decides
        key = (request.method, raw_path)
        route = self._routes.get(key)
        if route is None:
            route = self._route(request.method, raw_path)
            if len(raw_path) <= _MAX_CACHED_PATH:  # bounds the memo's memory, not just its length
                if len(self._routes) >= ROUTE_CACHE_SIZE:
                    self._routes.clear()
                self._routes[key] = route
        path, why, candidates, caseless = route
        if path is None:
            return _deny(_REQUEST_INVALID, why, None)
        host: tuple[str, str] | None = None
        if self._uses_hosts:
            host = _check_host(request.host)
            if host is None:
                return _deny(_REQUEST_INVALID, "the Host is not a valid host name or address", None)
        creds = credentials or ()
        chains: dict[str, ChainCandidate] | None = None
        if creds and any(is_link(c) for c in creds):
            creds, chains = self._chain_candidates(creds)
        decision = self._decide_among(candidates, request, path, host, creds, now, holder, status_results, chains)
        if caseless is not None and (decision.allow or decision.code == "no_matching_rule"):
            other = self._decide_among(caseless, request, path, host, creds, now, holder, status_results, chains)
            if not other.allow:
                return other
        return decision

    def _decide_among(
        self,
        candidates: tuple[_Rule, ...],
        request: RequestFacts,
        path: str,
        host: tuple[str, str] | None,
        creds: Sequence[VerifiedCredential],
        now: float,
        holder: str | None,
        status_results: Mapping[str, StatusOutcome | str] | None,
        chains: dict[str, ChainCandidate] | None,
    ) -> PolicyDecision:
        """The first of ``candidates`` (in file order) that applies decides."""
        model = request.model
        model_known = model is not None or request.body_available

        pending: list[PolicyDecision | _Undecided] | None = None
        final: PolicyDecision | _Undecided | None = None
        for rule in candidates:
            if rule.hosts and not rule.host_ok(host):
                continue
            maybe = False
            if rule.models is not None:
                if model is None:
                    if model_known:
                        continue  # the body was seen and names no model
                    maybe = True
                elif rule.models.match(model) is None:
                    continue
            outcome = self._apply(rule, request, path, model, model_known, creds, now, holder, status_results, chains)
            if not maybe:
                final = outcome
                break
            if pending is None:
                pending = []
            pending.append(outcome)
        if final is None:
            final = _deny("no_matching_rule", f"no rule matches {request.method.upper()[:16]} {_short(path, 80)}", None)
        if pending:
            return _resolve_unknown_model(pending, final)
        if type(final) is _Undecided:
            return _body_required(final.rule, (final,))
        return final  # type: ignore[return-value]

    def trusts(self, issuer: str) -> bool:
        """Whether ``issuer`` is in ``trusted_issuers`` (only their credentials are worth a
        status lookup)."""
        return issuer in self._trusted

    def admit(
        self,
        credentials: Sequence[VerifiedCredential] | None,
        *,
        now: float,
        holder: str | None = None,
        status_results: Mapping[str, StatusOutcome | str] | None = None,
    ) -> Admission:
        """Whether a presentation earns a session (the token endpoint's question).

        A credential is admitted when it meets every requirement of at least one allow rule
        that needs a credential -- trusted issuer and types, validity, holder binding, age,
        claims, status -- leaving out only what depends on a request (method, path, host,
        model): each session call is decided again by :meth:`decide`. The session's scopes
        are those of every rule some credential meets. When nothing is admitted, the denial
        is the one of the rule some credential came closest to meeting.
        """
        creds = tuple(credentials or ())
        if not creds:
            return Admission(
                _deny("credential_required", "the token request presents no credential", None), ()
            )
        chains: dict[str, ChainCandidate] | None = None
        if any(is_link(c) for c in creds):
            creds, chains = _chain_candidates(creds)
        admitted: dict[int, VerifiedCredential] = {}
        scopes: dict[str, None] = {}
        first: tuple[_Rule, VerifiedCredential, tuple[Reason, ...]] | None = None
        closest: tuple[int, PolicyDecision] | None = None
        for rule in self._rules:
            if not rule.allow or rule.public:
                continue
            met = False
            for index, cred in enumerate(creds):
                notes = self._satisfies(rule, index, cred, None, False, now, holder, status_results, chains)
                if notes is None:
                    continue
                met = True
                candidate = chains.get(cred.token) if chains is not None else None
                # A chain is kept as its links, so that every call assembles and decides it again.
                for c in candidate.hops if candidate is not None else (cred,):
                    admitted.setdefault(id(c), c)
                if first is None:
                    first = (rule, cred, () if notes is _NEEDS_MODEL else notes)
            if met:
                scopes.update(dict.fromkeys(rule.scopes))
            elif first is None:
                staged = self._closest_denial(rule, creds, None, False, now, holder, status_results, chains)
                if closest is None or staged[0] > closest[0]:
                    closest = staged
        if first is not None:
            rule, cred, notes = first
            chain = _chain_of(chains, cred)
            decision = PolicyDecision(
                True, 200, None, "session admitted", rule.name, notes, Grants(MappingProxyType({}), tuple(scopes)),
                chain.principal if chain is not None else cred.subject, cred.issuer, cred, chain,
            )
            return Admission(decision, tuple(admitted.values()))
        if closest is None:
            return Admission(_deny("no_matching_rule", "no allow rule of the policy accepts a credential", None), ())
        return Admission(closest[1], ())

    def _apply(
        self,
        rule: _Rule,
        request: RequestFacts,
        path: str,
        model: str | None,
        model_known: bool,
        creds: Sequence[VerifiedCredential],
        now: float,
        holder: str | None,
        status_results: Mapping[str, StatusOutcome | str] | None,
        chains: Mapping[str, ChainCandidate] | None = None,
    ) -> PolicyDecision | _Undecided:
        name = rule.name
        if not rule.allow:
            return _deny("denied_by_rule", f"rule '{name}' denies {request.method.upper()[:16]} {_short(path, 80)}", name)
        if rule.public:
            return self._allow(rule, None, holder, model, ())
        if not creds:
            return _deny("credential_required", f"rule '{name}' requires a credential and none was presented", name)
        undecided = False
        for index, cred in enumerate(creds):
            notes = self._satisfies(rule, index, cred, model, model_known, now, holder, status_results, chains)
            if notes is None:
                continue
            if notes is _NEEDS_MODEL:
                undecided = True
                continue
            return self._allow(rule, cred, holder, model, notes, _chain_of(chains, cred))
        if undecided:
            return _Undecided(name, (Reason("body_required", f"rule '{name}' needs the request's model to decide"),))
        return self._explain_denial(rule, creds, model, model_known, now, holder, status_results, chains)

    def _satisfies(
        self,
        rule: _Rule,
        index: int,
        cred: VerifiedCredential,
        model: str | None,
        model_known: bool,
        now: float,
        holder: str | None,
        status_results: Mapping[str, StatusOutcome | str] | None,
        chains: Mapping[str, ChainCandidate] | None = None,
    ) -> tuple[Reason, ...] | None:
        """The fast path: ``None`` if ``cred`` fails the rule, ``_NEEDS_MODEL`` if only the
        unknown model can tell, else the notes to attach to an allow (usually ``()``).
        Must agree with :meth:`_failures`, which explains a failure."""
        chain_notes: tuple[Reason, ...] = ()
        if chains is not None:
            candidate = chains.get(cred.token)
            if candidate is not None:
                failed, chain_notes = _chain_failures(rule, index, candidate, now, status_results)
                if failed:
                    return None
        issuer = cred.issuer
        trusted = self._trusted.get(issuer, MISSING)
        if trusted is MISSING:
            return None
        ctypes = cred.types
        for t in rule.types:
            if t not in ctypes:
                return None
        if rule.issuers is not None and issuer not in rule.issuers:
            return None
        if trusted is not None:
            if rule.types:
                for t in rule.types:
                    if t not in trusted:
                        return None
            elif trusted.isdisjoint(ctypes):
                return None
        if cred.valid_until is not None and now >= cred.valid_until:
            return None
        if rule.holder_binding and (holder is None or cred.subject != holder):
            return None
        if rule.max_age is not None:
            issued = _issued_at(cred)
            if issued is None or now - issued > rule.max_age:
                return None
        claims = cred.claims
        for predicate in rule.predicates:
            if not predicate(claims):
                return None
        notes: tuple[Reason, ...] = ()
        if rule.status != _OFF and cred.status:
            outcome = status_results.get(cred.token) if status_results is not None else None
            if outcome != "ok":
                if outcome is not None and outcome not in _OUTCOMES:
                    raise ValueError(f"unknown status outcome {outcome!r}; use a StatusOutcome")
                if rule.status == _FAIL_OPEN and (outcome is None or outcome == "unavailable"):
                    notes = (_fail_open_note(index, cred),)
                else:
                    return None
        if rule.model_predicates:
            if model is None:
                return _NEEDS_MODEL if not model_known else None
            for predicate in rule.model_predicates:
                if not predicate(claims, model):
                    return None
        return notes + chain_notes if chain_notes else notes

    def _failures(
        self,
        rule: _Rule,
        index: int,
        cred: VerifiedCredential,
        model: str | None,
        model_known: bool,
        now: float,
        holder: str | None,
        status_results: Mapping[str, StatusOutcome | str] | None,
        chains: Mapping[str, ChainCandidate] | None = None,
    ) -> tuple[list[tuple[int, Reason]], tuple[Reason, ...]]:
        """Every way ``cred`` fails ``rule``, each with its stage (in stage order); and any notes."""
        failures: list[tuple[int, Reason]] = []
        notes: tuple[Reason, ...] = ()
        candidate = chains.get(cred.token) if chains is not None else None
        if candidate is not None:
            failures, notes = _chain_failures(rule, index, candidate, now, status_results)
            if candidate.chain is None:
                return failures, notes  # a broken chain: nothing else about it can be trusted
        label = _label(index, cred) if candidate is None else _chain_label(index, candidate)
        holder_code = "holder_mismatch" if candidate is None else "delegation_holder_mismatch"
        issuer = cred.issuer

        def fail(stage: int, code: str, message: str) -> None:
            failures.append((stage, Reason(code, f"{label}: {message}")))

        trusted = self._trusted.get(issuer, MISSING)
        if trusted is MISSING:
            fail(_S_ISSUER, "issuer_not_trusted", f"issuer {_short(issuer, 80)} is not in trusted_issuers")
        missing = [t for t in rule.types if t not in cred.types]
        if missing:
            fail(_S_TYPE, "credential_type_missing", f"lacks the type {', '.join(missing)}")
        if rule.issuers is not None and issuer not in rule.issuers:
            fail(_S_SCOPE, "issuer_not_trusted", f"rule '{rule.name}' does not accept issuer {_short(issuer, 80)}")
        if trusted is not None and trusted is not MISSING:
            if rule.types:
                outside = [t for t in rule.types if t not in trusted]
                if outside:
                    fail(_S_SCOPE, "issuer_not_trusted", f"the issuer is not trusted to issue {', '.join(outside)}")
            elif trusted.isdisjoint(cred.types):
                fail(_S_SCOPE, "issuer_not_trusted", f"the issuer is trusted only for {', '.join(sorted(trusted))}")
        if cred.valid_until is not None and now >= cred.valid_until:
            fail(_S_EXPIRED, "expired", "the credential has expired")
        if rule.holder_binding:
            if holder is None:
                fail(_S_HOLDER, holder_code, "holder binding is required and no holder was proven")
            elif cred.subject != holder:
                what = "the credential's subject" if candidate is None else "the chain's last delegate"
                fail(_S_HOLDER, holder_code, f"the holder {_short(holder, 80)} is not {what}")
        if rule.max_age is not None:
            issued = _issued_at(cred)
            if issued is None:
                fail(_S_AGE, "credential_too_old", "the credential states no issuance time to check its age against")
            elif now - issued > rule.max_age:
                fail(_S_AGE, "credential_too_old", f"issued {int(now - issued)}s ago, over the limit of {rule.max_age}s")
        claims = cred.claims
        for constraint, predicate in zip(rule.claims, rule.predicates):
            if not predicate(claims):  # only a failing claim pays for its explanation
                if _undisclosed(cred, constraint):
                    fail(_S_CLAIMS, "claim_not_disclosed", f"claim '{constraint.name}' is not disclosed; this rule needs it")
                    continue
                why = constraint.test(claims, model, model_known)
                fail(_S_CLAIMS, "claim_mismatch", why if isinstance(why, str) else f"claim '{constraint.name}' does not match")
        if rule.status != _OFF and cred.status:
            outcome = status_results.get(cred.token) if status_results is not None else None
            if outcome is None or outcome == "unavailable":
                if rule.status == _FAIL_OPEN:
                    notes = (_fail_open_note(index, cred),)
                else:
                    fail(_S_STATUS, StatusUnavailableError.code, "its status cannot be established now (status: required)")
            elif outcome == "revoked":
                fail(_S_STATUS, RevokedError.code, "revoked by its issuer")
            elif outcome == "suspended":
                fail(_S_STATUS, SuspendedError.code, "suspended by its issuer")
            elif outcome == "unsupported":
                fail(_S_STATUS, StatusUnsupportedError.code, "its status entry is of a type this gateway cannot check")
        for constraint, predicate in zip(rule.model_claims, rule.model_predicates):
            if model is not None and predicate(claims, model):
                continue
            if _undisclosed(cred, constraint):
                fail(_S_MODEL, "claim_not_disclosed", f"claim '{constraint.name}' is not disclosed; this rule needs it")
                continue
            why = constraint.test(claims, model, model_known)
            if why is not None and why is not NEEDS_MODEL:
                fail(_S_MODEL, "claim_mismatch", str(why))
        failures.sort(key=lambda f: f[0])  # stable: within a stage, the order of the checks
        return failures, notes

    def _explain_denial(
        self,
        rule: _Rule,
        creds: Sequence[VerifiedCredential],
        model: str | None,
        model_known: bool,
        now: float,
        holder: str | None,
        status_results: Mapping[str, StatusOutcome | str] | None,
        chains: Mapping[str, ChainCandidate] | None = None,
    ) -> PolicyDecision:
        """No credential satisfies ``rule``: collect every reason; the main one comes from the
        credential that got furthest through the checks."""
        return self._closest_denial(rule, creds, model, model_known, now, holder, status_results, chains)[1]

    def _closest_denial(
        self,
        rule: _Rule,
        creds: Sequence[VerifiedCredential],
        model: str | None,
        model_known: bool,
        now: float,
        holder: str | None,
        status_results: Mapping[str, StatusOutcome | str] | None,
        chains: Mapping[str, ChainCandidate] | None = None,
    ) -> tuple[int, PolicyDecision]:
        """:meth:`_explain_denial` and how far the closest credential got (its stage)."""
        best_stage, best, primary = -1, None, None
        reasons: list[Reason] = []
        for index, cred in enumerate(creds):
            failures, notes = self._failures(rule, index, cred, model, model_known, now, holder, status_results, chains)
            if not failures:  # cannot happen while _satisfies and _failures agree; never allow here
                failures = [(0, Reason("policy_denied", f"{_label(index, cred)}: does not meet rule '{rule.name}'"))]
            reasons.extend(r for _, r in failures)
            reasons.extend(notes)
            stage, reason = failures[0]
            if stage > best_stage:
                best_stage, best, primary = stage, cred, reason
        assert primary is not None and best is not None
        chain = _chain_of(chains, best)
        return best_stage, PolicyDecision(
            False,
            DENIAL_CODES[primary.code].status,
            primary.code,
            primary.message,
            rule.name,
            tuple(reasons),
            _NO_GRANTS,
            chain.principal if chain is not None else best.subject,
            best.issuer,
            best,
            chain,
        )

    def _allow(
        self,
        rule: _Rule,
        cred: VerifiedCredential | None,
        holder: str | None,
        model: str | None,
        notes: tuple[Reason, ...],
        chain: DelegationChain | None = None,
    ) -> PolicyDecision:
        # For a chain the subject is the principal (RFC 8693 `sub`); the caller is `holder`.
        subject = chain.principal if chain is not None else cred.subject if cred is not None else None
        issuer = cred.issuer if cred is not None else None
        grants = _NO_GRANTS
        if rule.headers or rule.scopes:
            headers: dict[str, str] = {}
            for name, kind, arg in rule.headers:
                if kind == _H_CONST:
                    headers[name] = arg
                    continue
                if kind == _H_SUBJECT:
                    value = subject
                elif kind == _H_ISSUER:
                    value = issuer
                elif kind == _H_CLAIM:
                    value = _render(lookup_claim(cred.claims, arg)) if cred is not None else None
                elif kind == _H_HOLDER:
                    value = holder
                elif kind == _H_MODEL:
                    value = model
                else:
                    value = _render_template(arg, subject, issuer, holder, model, cred, chain)
                if value is None:
                    continue  # no value (no such claim, no subject): the header is left out
                if not (value.isascii() and value.isprintable()) or len(value) > _MAX_HEADER_VALUE:
                    why = (
                        f"the value granted for {name} is not safe in a header "
                        "(control or non-ASCII characters, or too long)"
                    )
                    return PolicyDecision(
                        False,
                        DENIAL_CODES["grant_invalid"].status,
                        "grant_invalid",
                        why,
                        rule.name,
                        (Reason("grant_invalid", why),),
                        _NO_GRANTS,
                        subject,
                        issuer,
                        cred,
                        chain,
                    )
                headers[name] = value
            grants = Grants(headers, rule.scopes)
        return PolicyDecision(True, 200, None, rule.allowed_message, rule.name, notes, grants, subject, issuer, cred, chain)


def _render_template(
    parts: tuple[str | tuple[str, ...], ...],
    subject: str | None,
    issuer: str | None,
    holder: str | None,
    model: str | None,
    cred: VerifiedCredential | None,
    chain: DelegationChain | None = None,
) -> str | None:
    pieces = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(part)
            continue
        var = part[0]
        if var == "claims":
            value = _render(lookup_claim(cred.claims, part[1:])) if cred is not None else None
        elif var in _CHAIN_VARS:
            value = _chain_var(var, chain, cred)
        else:
            value = {"subject": subject, "issuer": issuer, "holder": holder, "model": model}[var]
        if value is None:
            return None
        pieces.append(value)
    return "".join(pieces)


# --- delegation chains (docs/delegation.md) -------------------------------------------------------

_CHAIN_VARS = frozenset({"principal", "actors", "chain"})


def _chain_var(var: str, chain: DelegationChain | None, cred: VerifiedCredential | None) -> str | None:
    """``$principal`` / ``$actors`` / ``$chain``; a credential used directly is a chain of none."""
    if chain is not None:
        principal, actors = chain.principal, list(chain.actors)
    elif cred is not None:
        principal, actors = cred.subject, []
    else:
        return None
    if var == "principal":
        return principal
    if principal is None:
        return None
    return _render(actors if var == "actors" else [principal, *actors])


def _chain_candidates(creds: Sequence[VerifiedCredential]) -> tuple[tuple[VerifiedCredential, ...], dict[str, ChainCandidate]]:
    """Standalone credentials and one view per chain (keyed by its token, the leaf's).
    A pure function of the credentials (no clock): :class:`Policy` memoises it."""
    standalone, found = assemble(creds)
    views = list(standalone)
    chains: dict[str, ChainCandidate] = {}
    for candidate in found:
        view = candidate.chain.view() if candidate.chain is not None else candidate.hops[-1]
        chains[view.token] = candidate
        views.append(view)
    return tuple(views), chains


def _chain_of(chains: Mapping[str, ChainCandidate] | None, cred: VerifiedCredential | None) -> DelegationChain | None:
    if chains is None or cred is None:
        return None
    candidate = chains.get(cred.token)
    return candidate.chain if candidate is not None else None


def _chain_label(index: int, candidate: ChainCandidate) -> str:
    root, leaf = candidate.hops[0], candidate.hops[-1]
    types = [t for t in root.types if t not in ("VerifiableCredential", "DelegationCredential")]
    kind = types[-1] if types else "VerifiableCredential"
    links = len(candidate.hops) - 1
    return f"credential #{index + 1} (chain of {links} link{'s' if links != 1 else ''} from a {kind} of {_short(root.issuer)} to {_short(leaf.subject)})"


def _chain_failures(
    rule: _Rule,
    index: int,
    candidate: ChainCandidate,
    now: float,
    status_results: Mapping[str, StatusOutcome | str] | None,
) -> tuple[list[tuple[int, Reason]], tuple[Reason, ...]]:
    """What a chain owes a rule beyond what its view is checked for: that it holds at all,
    that the rule accepts delegation of this root and this deep, and every hop's validity and
    status. Each failure with its stage, and notes (fail-open status)."""
    failures: list[tuple[int, Reason]] = []
    notes: tuple[Reason, ...] = ()

    def fail(stage: int, code: str, message: str) -> None:  # the label only costs on a failure
        failures.append((stage, Reason(code, f"{_chain_label(index, candidate)}: {message}")))

    chain = candidate.chain
    if chain is None:
        assert candidate.error is not None
        fail(_S_SCOPE, candidate.error.code, candidate.error.message)
        return failures, notes
    if not rule.delegation_allowed:
        fail(_S_SCOPE, "delegation_not_allowed", f"rule '{rule.name}' does not accept delegated credentials")
    elif rule.delegation_types is not None and rule.delegation_types.isdisjoint(chain.root.types):
        fail(_S_SCOPE, "delegation_not_allowed",
             f"the root's type may not be delegated here (delegable: {', '.join(sorted(rule.delegation_types))})")
    if chain.depth > rule.delegation_max_depth:
        fail(_S_SCOPE, "delegation_depth_exceeded",
             f"hop {rule.delegation_max_depth + 1}: the chain has {chain.depth} links, rule '{rule.name}' allows "
             f"{rule.delegation_max_depth}")
    for hop, cred in enumerate(chain.hops):
        try:
            check_window(cred, hop, now)
        except DelegationError as exc:
            fail(_S_EXPIRED, exc.code, exc.message)
    if rule.status != _OFF:
        for hop, cred in enumerate(chain.hops):
            if not cred.status:
                continue
            outcome = status_results.get(cred.token) if status_results is not None else None
            if outcome == "ok":
                continue
            if outcome is not None and outcome not in _OUTCOMES:
                raise ValueError(f"unknown status outcome {outcome!r}; use a StatusOutcome")
            who = f"hop {hop} ({_short(cred.subject)})"
            if outcome is None or outcome == "unavailable":
                if rule.status == _FAIL_OPEN:
                    notes += (Reason(StatusUnavailableError.code, f"{_chain_label(index, candidate)}: {who}: status "
                                     "could not be checked; accepted (status: fail-open)"),)
                else:
                    fail(_S_STATUS, StatusUnavailableError.code, f"{who}: its status cannot be established now (status: required)")
            elif outcome == "revoked":
                fail(_S_STATUS, DelegationRevokedError.code, f"{who}: revoked by its issuer")
            elif outcome == "suspended":
                fail(_S_STATUS, DelegationSuspendedError.code, f"{who}: suspended by its issuer")
            else:
                fail(_S_STATUS, StatusUnsupportedError.code, f"{who}: its status entry is of a type this gateway cannot check")
    return failures, notes


def _fail_open_note(index: int, cred: VerifiedCredential) -> Reason:
    return Reason(
        StatusUnavailableError.code,
        f"{_label(index, cred)}: status could not be checked; accepted (status: fail-open)",
    )


def _body_required(rule: str, outcomes: Sequence[PolicyDecision | _Undecided] = ()) -> PolicyDecision:
    """``rule`` depends on the model and the body was not seen; ``outcomes`` are what the
    possible rules would have said (their reasons are kept for explain and the audit log)."""
    why = f"rule '{rule}' depends on the request's model and this gateway did not see the request body"
    reasons = [Reason("body_required", why)]
    for outcome in outcomes:
        reasons.extend(r for r in outcome.reasons if r.code != "body_required")
    return _deny("body_required", why, rule, tuple(reasons))


def _resolve_unknown_model(
    pending: list[PolicyDecision | _Undecided], final: PolicyDecision | _Undecided
) -> PolicyDecision:
    """The model is unknown and each ``pending`` rule applies only if the model matches its
    ``models``; the real outcome is the first pending one that applies, else ``final``.

    If every candidate outcome denies, the request is denied whatever the model: answer with
    the first. If any could allow (or is itself undecided), the body is needed.
    """
    outcomes = [*pending, final]
    first = pending[0]
    if all(type(o) is PolicyDecision and not o.allow for o in outcomes):
        assert type(first) is PolicyDecision
        note = Reason("body_required", "the request's model is unknown (no body), and every rule that could apply denies it")
        return first._replace(reasons=(*first.reasons, note))
    # Name the first rule whose match depends on the model: it is why the body is needed.
    return _body_required(first.rule or "", outcomes)
