"""Policy error classes (defined in :mod:`vcgate.errors`, re-exported here) and DENIAL_CODES.

``PolicyError`` is a configuration error (the policy file is invalid); it never reaches a
client. ``PolicyDeniedError`` and its subclasses are the refusals a policy decision produces;
their ``code`` is what :attr:`PolicyDecision.code <vcgate.policy.PolicyDecision.code>` carries
and their ``status`` is the HTTP status the gateway answers with. Denials that reuse an
existing code (``revoked``, ``suspended``, ``status_unavailable``, ``status_unsupported``,
``holder_mismatch``, ``expired``) use the existing classes; :data:`DENIAL_CODES` maps every code
a decision can carry to its class.
"""

from __future__ import annotations

from ..errors import (
    BodyRequiredError,
    ClaimMismatchError,
    ClaimNotDisclosedError,
    DelegationError,
    CredentialRequiredError,
    CredentialTooOldError,
    CredentialTypeMissingError,
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

__all__ = [
    "PolicyProblem",
    "PolicyError",
    "PolicyDeniedError",
    "NoMatchingRuleError",
    "DeniedByRuleError",
    "CredentialRequiredError",
    "CredentialTypeMissingError",
    "IssuerNotTrustedError",
    "ClaimMismatchError",
    "CredentialTooOldError",
    "BodyRequiredError",
    "RequestInvalidError",
    "GrantInvalidError",
    "DENIAL_CODES",
]


#: Every code a :class:`~vcgate.policy.PolicyDecision` can carry, mapped to its error class.
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
