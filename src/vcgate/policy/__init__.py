"""Policy: the YAML policy file and the pure engine that decides each request.

>>> policy = Policy.from_file("policy.yaml")                      # doctest: +SKIP
>>> decision = policy.decide(RequestFacts("POST", "/v1/chat/completions", model="gpt-4o"),
...                          credentials, now=time.time(), holder=holder_did)  # doctest: +SKIP

See ``docs/policy.md`` for the file format and the decision rules.
"""

from .engine import Grants, Policy, PolicyDecision, Reason, RequestFacts, StatusOutcome
from .errors import (
    DENIAL_CODES,
    BodyRequiredError,
    ClaimMismatchError,
    CredentialRequiredError,
    CredentialTooOldError,
    CredentialTypeMissingError,
    DeniedByRuleError,
    GrantInvalidError,
    IssuerNotTrustedError,
    NoMatchingRuleError,
    PolicyDeniedError,
    PolicyError,
    PolicyProblem,
    RequestInvalidError,
)
from .model import STATUS_MODES, Defaults, PolicyDocument, RuleSpec, TrustedIssuer, load_policy, parse_duration

__all__ = [
    "DENIAL_CODES",
    "STATUS_MODES",
    "BodyRequiredError",
    "ClaimMismatchError",
    "CredentialRequiredError",
    "CredentialTooOldError",
    "CredentialTypeMissingError",
    "Defaults",
    "DeniedByRuleError",
    "GrantInvalidError",
    "Grants",
    "IssuerNotTrustedError",
    "NoMatchingRuleError",
    "Policy",
    "PolicyDecision",
    "PolicyDeniedError",
    "PolicyDocument",
    "PolicyError",
    "PolicyProblem",
    "Reason",
    "RequestFacts",
    "RequestInvalidError",
    "RuleSpec",
    "StatusOutcome",
    "TrustedIssuer",
    "load_policy",
    "parse_duration",
]
