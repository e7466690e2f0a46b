"""Policy: the YAML policy file and the pure engine that decides each request.

>>> policy = Policy.from_file("policy.yaml")                      # doctest: +SKIP
>>> decision = policy.decide(RequestFacts("POST", "/v1/chat/completions", model="gpt-4o"),
...                          credentials, now=time.time(), holder=holder_did)  # doctest: +SKIP

See ``docs/policy.md`` for the file format and the decision rules. Errors (``PolicyError`` for
an invalid file, the denials of :data:`DENIAL_CODES`) are in :mod:`vcgate.errors`.
"""

from .engine import DENIAL_CODES, Admission, Grants, Policy, PolicyDecision, Reason, RequestFacts, StatusOutcome
from .model import STATUS_MODES, Defaults, PolicyDocument, RuleSpec, TrustedIssuer, load_policy, parse_duration

__all__ = [
    "DENIAL_CODES",
    "Admission",
    "STATUS_MODES",
    "Defaults",
    "Grants",
    "Policy",
    "PolicyDecision",
    "PolicyDocument",
    "Reason",
    "RequestFacts",
    "RuleSpec",
    "StatusOutcome",
    "TrustedIssuer",
    "load_policy",
    "parse_duration",
]
