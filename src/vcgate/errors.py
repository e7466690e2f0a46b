"""The whole exception tree of vcgate.

Every error carries a stable, machine-readable ``code`` (snake_case, never renamed once
published), a human ``message`` and the HTTP ``status`` a gateway answers with. Callers
branch on ``code``; the message is for people and may change. The full table is in
``docs/errors.md``; ``ERROR_CODES`` below is the source a test checks it against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "VCGateError",
    "MalformedError",
    "TokenTooLargeError",
    "MethodNotAllowedError",
    "AlgorithmNotAllowedError",
    "HeaderNotAllowedError",
    "UnsupportedCriticalError",
    "SignatureInvalidError",
    "UntrustedKeyError",
    "ExpiredError",
    "NotYetValidError",
    "IssuerMismatchError",
    "SubjectMismatchError",
    "AudienceMismatchError",
    "NonceMismatchError",
    "HolderMismatchError",
    "TypeMismatchError",
    "ContextNotAllowedError",
    "DisclosureInvalidError",
    "DisclosureUnreferencedError",
    "DisclosureDuplicateError",
    "SdAlgUnsupportedError",
    "KeyBindingRequiredError",
    "KeyBindingInvalidError",
    "ProofInvalidError",
    "DataModelError",
    "RevokedError",
    "SuspendedError",
    "StatusUnavailableError",
    "StatusListInvalidError",
    "StatusUnsupportedError",
    "StatusListFullError",
    "DIDError",
    "InvalidDIDError",
    "DIDMethodNotSupportedError",
    "DIDNotFoundError",
    "DIDDocumentInvalidError",
    "DIDResolutionError",
    "ForbiddenAddressError",
    "ControllerURLRefusedError",
    "ControllerDocumentInvalidError",
    "ControllerIdMismatchError",
    "ControllerMismatchError",
    "ControllerDocumentNotFoundError",
    "ControllerDocumentUnavailableError",
    "ControllerAddressForbiddenError",
    "KeyError_",
    "KeyFileError",
    "PassphraseError",
    "UnsupportedKeyError",
    "ChainError",
    "ChainUnavailableError",
    "RegistryNotFoundError",
    "ChainMismatchError",
    "TransactionFailedError",
    "NotAuthorizedError",
    "TransactionPendingError",
    "TokenInvalidError",
    "TokenExpiredError",
    "DPoPInvalidError",
    "DPoPReplayedError",
    "DPoPKeyMismatchError",
    "StoreUnavailableError",
    "StoreFullError",
    "PolicyProblem",
    "PolicyError",
    "PolicyDeniedError",
    "NoMatchingRuleError",
    "DeniedByRuleError",
    "CredentialRequiredError",
    "CredentialTypeMissingError",
    "IssuerNotTrustedError",
    "ClaimMismatchError",
    "ClaimNotDisclosedError",
    "CredentialTooOldError",
    "BodyRequiredError",
    "RequestInvalidError",
    "GrantInvalidError",
    "QuotaExceededError",
    "LimitUnresolvedError",
    "AuditUnavailableError",
    "AuditTamperedError",
    "AuditCorruptError",
    "NotFoundError",
    "RecordError",
    "CredentialUnknownError",
    "CredentialExistsError",
    "CredentialNotRevocableError",
    "DelegationError",
    "DelegationInvalidError",
    "DelegationNotAllowedError",
    "DelegationParentMissingError",
    "DelegationReparentedError",
    "DelegationIssuerMismatchError",
    "DelegationSignatureInvalidError",
    "DelegationExpiredError",
    "DelegationNotYetValidError",
    "DelegationRevokedError",
    "DelegationSuspendedError",
    "DelegationDepthExceededError",
    "DelegationCycleError",
    "DelegationHolderMismatchError",
    "DelegationListWidenedError",
    "DelegationLimitRaisedError",
    "DelegationClaimChangedError",
    "DelegationClaimAddedError",
    "DelegationValidityWidenedError",
    "DelegationDepthWidenedError",
    "ERROR_CODES",
]


class VCGateError(Exception):
    """Base class. ``code`` is stable; ``status`` is the HTTP status to answer with."""

    code: str = "error"
    status: int = 400
    default_message: str = "request refused"
    #: The OAuth ``error`` of a ``WWW-Authenticate`` challenge (RFC 6750 / RFC 9449), if any.
    oauth_error: str | None = None
    #: What to do next, for people (the CLI prints it as ``hint: ...``); not part of a gateway's body.
    hint: str | None = None

    def __init__(
        self, message: str | None = None, *, code: str | None = None, status: int | None = None,
        hint: str | None = None, **details: Any
    ) -> None:
        """``code`` / ``status``: this instance's own, when it is not one of the classes below
        (a policy decision's code, for example); by default the class's. ``hint``: what to do next."""
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if hint is not None:
            self.hint = hint
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body a gateway sends with a refusal."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


# --- tokens and credentials -------------------------------------------------------------


class MalformedError(VCGateError):
    code = "malformed"
    status = 400
    default_message = "the token or document is not well formed"


class TokenTooLargeError(MalformedError):
    code = "too_large"
    status = 413
    default_message = "the input exceeds the size or nesting limit"


class MethodNotAllowedError(VCGateError):
    code = "method_not_allowed"
    status = 405
    default_message = "this endpoint does not take that HTTP method"


class NotFoundError(VCGateError):
    code = "not_found"
    status = 404
    default_message = "the auth service has no endpoint at this path"


class AlgorithmNotAllowedError(VCGateError):
    code = "algorithm_not_allowed"
    status = 401
    default_message = "the signature algorithm is not in the allow-list"


class HeaderNotAllowedError(VCGateError):
    code = "header_not_allowed"
    status = 401
    default_message = "the JOSE header carries a parameter vcgate refuses"


class UnsupportedCriticalError(VCGateError):
    code = "unsupported_critical"
    status = 401
    default_message = "the JOSE header marks an extension critical that vcgate does not understand"


class SignatureInvalidError(VCGateError):
    code = "signature_invalid"
    status = 401
    default_message = "the signature does not verify"


class UntrustedKeyError(VCGateError):
    code = "untrusted_key"
    status = 401
    default_message = "the signing key is not authorised by the signer's DID for this purpose"


class ExpiredError(VCGateError):
    code = "expired"
    status = 401
    default_message = "the credential or presentation has expired"


class NotYetValidError(VCGateError):
    code = "not_yet_valid"
    status = 401
    default_message = "the credential or presentation is not valid yet"


class IssuerMismatchError(VCGateError):
    code = "issuer_mismatch"
    status = 401
    default_message = "the JWT issuer does not match the credential's issuer"


class SubjectMismatchError(VCGateError):
    code = "subject_mismatch"
    status = 401
    default_message = "the JWT subject does not match the credential's subject"


class AudienceMismatchError(VCGateError):
    code = "audience_mismatch"
    status = 401
    default_message = "the presentation is meant for another audience"


class NonceMismatchError(VCGateError):
    code = "nonce_mismatch"
    status = 401
    default_message = "the presentation does not carry the expected nonce"


class HolderMismatchError(VCGateError):
    code = "holder_mismatch"
    status = 401
    default_message = "the presenter is not the subject of the credential"


class TypeMismatchError(VCGateError):
    code = "type_mismatch"
    status = 401
    default_message = "the token is not of the expected kind"


class ContextNotAllowedError(VCGateError):
    code = "context_not_allowed"
    status = 401
    default_message = "the credential uses a JSON-LD context that is not pinned as known"


# --- SD-JWT (RFC 9901) and SD-JWT VC ------------------------------------------------------


class DisclosureInvalidError(VCGateError):
    code = "disclosure_invalid"
    status = 401
    default_message = "an SD-JWT Disclosure is malformed or does not fit where its digest is"


class DisclosureUnreferencedError(VCGateError):
    code = "disclosure_unreferenced"
    status = 401
    default_message = "an SD-JWT Disclosure's digest is not in the signed payload (tampered or foreign)"


class DisclosureDuplicateError(VCGateError):
    code = "disclosure_duplicate"
    status = 401
    default_message = "an SD-JWT Disclosure or digest appears more than once"


class SdAlgUnsupportedError(VCGateError):
    code = "sd_alg_unsupported"
    status = 401
    default_message = "the SD-JWT's _sd_alg is not sha-256"


class KeyBindingRequiredError(VCGateError):
    code = "key_binding_required"
    status = 401
    default_message = "the SD-JWT presentation needs a Key Binding JWT signed with the credential's cnf key"


class KeyBindingInvalidError(VCGateError):
    code = "key_binding_invalid"
    status = 401
    default_message = "the Key Binding JWT is malformed or its sd_hash does not cover this presentation"
class ProofInvalidError(MalformedError):
    """A Data Integrity proof is missing, malformed, or of an unsupported cryptosuite."""

    code = "proof_invalid"
    status = 400
    default_message = "the Data Integrity proof is malformed or of an unsupported cryptosuite"


class DataModelError(MalformedError):
    """A W3C VCDM 2.0 data-model rule is broken; ``details["rule"]`` names the rule."""

    code = "data_model_invalid"
    status = 400
    default_message = "the credential or presentation breaks a VC Data Model 2.0 rule"


# --- credential status (revocation, suspension) -----------------------------------------


class RevokedError(VCGateError):
    code = "revoked"
    status = 401
    default_message = "the credential has been revoked by its issuer"


class SuspendedError(VCGateError):
    code = "suspended"
    status = 401
    default_message = "the credential is suspended by its issuer"


class StatusUnavailableError(VCGateError):
    code = "status_unavailable"
    status = 503
    default_message = "the credential's revocation status cannot be established now"


class StatusListInvalidError(VCGateError):
    code = "status_list_invalid"
    status = 401
    default_message = "the status list is invalid, too large, or not signed by the credential's issuer"


class StatusListFullError(VCGateError):
    code = "status_list_full"
    status = 409
    default_message = "every index of the status list is allocated: create a new list"


class StatusUnsupportedError(VCGateError):
    code = "status_unsupported"
    status = 401
    default_message = "the credential's status entry is of a type this gateway cannot check"


# --- DIDs -----------------------------------------------------------------------------


class DIDError(VCGateError):
    code = "did_error"
    status = 401
    default_message = "the DID could not be used"


class InvalidDIDError(DIDError):
    code = "did_invalid"
    status = 400
    default_message = "the DID is not syntactically valid"


class DIDMethodNotSupportedError(DIDError):
    code = "did_method_not_supported"
    status = 401
    default_message = "the DID method is not supported"


class DIDNotFoundError(DIDError):
    code = "did_not_found"
    status = 401
    default_message = "the DID document was not found"


class DIDDocumentInvalidError(DIDError):
    code = "did_document_invalid"
    status = 401
    default_message = "the DID document is invalid or does not belong to the DID"


class DIDResolutionError(DIDError):
    code = "did_resolution_failed"
    status = 503
    default_message = "the DID document could not be resolved"


class ForbiddenAddressError(DIDResolutionError):
    code = "did_address_forbidden"
    status = 401
    default_message = "the DID's host resolves to an address vcgate will not connect to"


# Issuers that are https URLs with a W3C Controlled Identifiers (CID 1.0) controller document.
# Each is a kind of the matching DID error, so ``except DIDError`` still catches them all.


class ControllerURLRefusedError(DIDError):
    code = "controller_url_refused"
    status = 401
    default_message = "the issuer URL is not one vcgate fetches a controller document from"


class ControllerDocumentInvalidError(DIDDocumentInvalidError):
    code = "controller_document_invalid"
    status = 401
    default_message = "the controller document is invalid"


class ControllerIdMismatchError(ControllerDocumentInvalidError):
    code = "controller_id_mismatch"
    status = 401
    default_message = "the controller document's id is not the URL it was fetched from"


class ControllerMismatchError(ControllerDocumentInvalidError):
    code = "controller_mismatch"
    status = 401
    default_message = "the verification method is controlled by another controller than the document's"


class ControllerDocumentNotFoundError(DIDNotFoundError):
    code = "controller_document_not_found"
    status = 401
    default_message = "there is no controller document at the issuer URL"


class ControllerDocumentUnavailableError(DIDResolutionError):
    code = "controller_document_unavailable"
    status = 503
    default_message = "the controller document could not be fetched"


class ControllerAddressForbiddenError(ForbiddenAddressError):
    code = "controller_address_forbidden"
    status = 401
    default_message = "the issuer URL's host resolves to an address vcgate will not connect to"


# --- keys -----------------------------------------------------------------------------


class KeyError_(VCGateError):  # trailing underscore: do not shadow the builtin KeyError
    code = "key_error"
    status = 400
    default_message = "the key could not be used"


class KeyFileError(KeyError_):
    code = "key_file_invalid"
    default_message = "the key file is not a valid vcgate key file"


class PassphraseError(KeyError_):
    code = "passphrase_invalid"
    default_message = "the passphrase is missing or wrong"


class UnsupportedKeyError(KeyError_):
    code = "key_unsupported"
    default_message = "the key type or algorithm is not supported"


# --- chain -----------------------------------------------------------------------------
# What to do next: ChainUnavailableError -- retry later; RegistryNotFoundError -- fix the
# configuration; TransactionFailedError -- the transaction reverted (``revert`` says why),
# NotAuthorizedError when the sender is neither the list's owner nor its delegate;
# TransactionPendingError -- sent but not mined within the wait (``details["tx_hash"]``).


class ChainError(VCGateError):
    code = "chain_error"
    status = 502
    default_message = "the chain could not be used"


class ChainUnavailableError(ChainError):
    code = "chain_unavailable"
    status = 503
    default_message = "the Ethereum node is not reachable or did not answer in time"


class RegistryNotFoundError(ChainError):
    code = "registry_not_found"
    status = 502
    default_message = "no revocation registry contract at this address on this chain"


class ChainMismatchError(ChainError):
    """The node is not (or no longer) provably the chain a mirror was configured for.

    ``details["reason"]`` says which proof failed: ``chain_id`` (the node reports another
    chain id), ``registry_code`` (no contract, or other code, at the registry address) or
    ``history`` (the blocks already mirrored are not on the node's chain, deeper than the
    reorg window: a replaced or reset chain).
    """

    code = "chain_mismatch"
    status = 503
    default_message = "the node is not the chain the revocation mirror follows"


class TransactionFailedError(ChainError):
    code = "transaction_failed"
    status = 502
    default_message = "the transaction reverted or could not be sent"

    #: The decoded revert (a :class:`vcgate.chain.RevertReason`) when the contract gave one.
    revert: Any = None


class NotAuthorizedError(TransactionFailedError):
    code = "registry_not_authorized"
    status = 403
    default_message = "the registry refused: the sender is not the list's owner or delegate"


class TransactionPendingError(ChainError):
    code = "transaction_pending"
    status = 504
    default_message = "the transaction was sent but not mined in time"


# --- session mode: access tokens, DPoP proofs, nonce and replay stores --------------------
# ``oauth_error`` is the challenge's ``error`` value; ``code`` is vcgate's finer-grained code;
# ``details["reason"]`` names the check that failed (a wrapped error's own code).


class TokenInvalidError(VCGateError):
    code = "token_invalid"
    status = 401
    default_message = "the access token is not valid here"
    oauth_error = "invalid_token"


class TokenExpiredError(TokenInvalidError):
    code = "token_expired"
    status = 401
    default_message = "the access token has expired"
    oauth_error = "invalid_token"


class DPoPInvalidError(VCGateError):
    code = "dpop_invalid"
    status = 401
    default_message = "the DPoP proof is missing or not valid for this request"
    oauth_error = "invalid_dpop_proof"


class DPoPReplayedError(DPoPInvalidError):
    code = "dpop_replayed"
    status = 401
    default_message = "the DPoP proof was used before"
    oauth_error = "invalid_dpop_proof"


class DPoPKeyMismatchError(VCGateError):
    # RFC 9449 section 7.1: a proof made with another key than the one the token is bound
    # to makes the *token* unusable ("invalid DPoP key binding"), hence invalid_token.
    code = "dpop_key_mismatch"
    status = 401
    default_message = "the access token is bound to another key than the DPoP proof's"
    oauth_error = "invalid_token"


class StoreUnavailableError(VCGateError):
    code = "store_unavailable"
    status = 503
    default_message = "the nonce / replay store cannot be reached now"


class StoreFullError(StoreUnavailableError):
    code = "store_full"
    status = 503
    default_message = "the replay store is full: refusing rather than forgetting proofs still in their window"


# --- policy ------------------------------------------------------------------------------
# PolicyError: the policy file is invalid (configuration; never reaches a client).
# PolicyDeniedError and its subclasses: the refusals a policy decision produces.


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One thing wrong with a policy file: where (line and column, 1-based) and which field."""

    source: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class PolicyError(VCGateError):
    """The policy file is invalid. ``problems`` lists every problem found, each with its line."""

    code = "policy_invalid"
    status = 500
    default_message = "the policy file is invalid"

    def __init__(self, problems: Sequence[PolicyProblem] | str | None = None, **details: Any) -> None:
        if isinstance(problems, str) or problems is None:
            self.problems: tuple[PolicyProblem, ...] = ()
            super().__init__(problems, **details)
            return
        self.problems = tuple(problems)
        first = self.problems[0]
        message = str(first)
        if len(self.problems) > 1:
            message += f" (and {len(self.problems) - 1} more problem{'s' if len(self.problems) > 2 else ''})"
        super().__init__(
            message,
            source=first.source,
            line=first.line,
            column=first.column,
            field=first.field,
            problems=[str(p) for p in self.problems],
        )

    @property
    def line(self) -> int | None:
        return self.problems[0].line if self.problems else None

    @property
    def field(self) -> str | None:
        return self.problems[0].field if self.problems else None


class PolicyDeniedError(VCGateError):
    """Base of the refusals a policy decision produces."""

    code = "policy_denied"
    status = 403
    default_message = "the policy does not allow this request"


class NoMatchingRuleError(PolicyDeniedError):
    code = "no_matching_rule"
    status = 403
    default_message = "no policy rule matches this request (default deny)"


class DeniedByRuleError(PolicyDeniedError):
    code = "denied_by_rule"
    status = 403
    default_message = "a policy rule explicitly denies this request"


class CredentialRequiredError(PolicyDeniedError):
    # 401, not 403: presenting a credential can change the answer, so the gateway challenges.
    code = "credential_required"
    status = 401
    default_message = "this request needs a verifiable credential"


class CredentialTypeMissingError(PolicyDeniedError):
    code = "credential_type_missing"
    status = 403
    default_message = "no presented credential has the type the policy requires"


class IssuerNotTrustedError(PolicyDeniedError):
    code = "issuer_not_trusted"
    status = 403
    default_message = "the credential's issuer is not trusted for this request"


class ClaimMismatchError(PolicyDeniedError):
    code = "claim_mismatch"
    status = 403
    default_message = "a credential claim does not meet the policy"


class ClaimNotDisclosedError(PolicyDeniedError):
    code = "claim_not_disclosed"
    status = 403
    default_message = "the presentation does not disclose a claim the matching rule needs"


class CredentialTooOldError(PolicyDeniedError):
    code = "credential_too_old"
    status = 403
    default_message = "the credential was issued longer ago than the policy allows"


class BodyRequiredError(PolicyDeniedError):
    code = "body_required"
    status = 403
    default_message = "deciding this request needs the request body, which this gateway does not see"


class RequestInvalidError(PolicyDeniedError):
    code = "request_invalid"
    status = 400
    default_message = "the request path or host is not in a form the policy can match safely"


class BodyInvalidError(PolicyDeniedError):
    # The gate reads a body only when a rule may depend on its ``model``; it then has to be
    # a JSON object naming one, whatever the Content-Type says (frameworks parse it anyway).
    code = "body_invalid"
    status = 400
    default_message = "the request body is not a JSON object with a string 'model' the policy can decide on"


class GrantInvalidError(PolicyDeniedError):
    code = "grant_invalid"
    status = 403
    default_message = "a header the policy grants would carry a value that is not safe in a header"


# --- limits (docs/limits.md) ------------------------------------------------------------


class QuotaExceededError(PolicyDeniedError):
    """A limit has no room for the call; ``details`` name the limit, ``retry_after`` says when."""

    code = "quota_exceeded"
    status = 429
    default_message = "a request, token or spending limit has no room for this call"


class LimitUnresolvedError(PolicyDeniedError):
    """A limit that applies cannot be evaluated: its number is missing from the credential (and
    the policy states no default), is not a usable number, or the model has no price."""

    code = "limit_unresolved"
    status = 403
    default_message = "a limit that applies to this call cannot be evaluated"


# --- delegation chains (docs/delegation.md) ----------------------------------------------------


class DelegationError(VCGateError):
    """A delegation chain is refused. Every subclass names the hop in its message and in
    ``details["hop"]`` (0 is the root credential, 1 the first delegation, ...)."""

    code = "delegation_invalid"
    status = 401
    default_message = "the delegation credential is not well formed"


class DelegationNotAllowedError(DelegationError):
    code = "delegation_not_allowed"
    status = 403
    default_message = "the policy does not accept delegated credentials here"


class DelegationParentMissingError(DelegationError):
    code = "delegation_parent_missing"
    status = 401
    default_message = "a delegation credential's parent was not presented"


class DelegationReparentedError(DelegationError):
    code = "delegation_reparented"
    status = 401
    default_message = "a delegation credential is presented under another parent than the one it is bound to"


class DelegationIssuerMismatchError(DelegationError):
    code = "delegation_issuer_mismatch"
    status = 401
    default_message = "a delegation credential is not issued by the subject of its parent"


class DelegationSignatureInvalidError(DelegationError):
    code = "delegation_signature_invalid"
    status = 401
    default_message = "a credential of the delegation chain does not verify"


class DelegationExpiredError(DelegationError):
    code = "delegation_expired"
    status = 401
    default_message = "a credential of the delegation chain has expired"


class DelegationNotYetValidError(DelegationError):
    code = "delegation_not_yet_valid"
    status = 401
    default_message = "a credential of the delegation chain is not valid yet"


class DelegationRevokedError(DelegationError):
    code = "delegation_revoked"
    status = 401
    default_message = "a credential of the delegation chain has been revoked"


class DelegationSuspendedError(DelegationError):
    code = "delegation_suspended"
    status = 401
    default_message = "a credential of the delegation chain is suspended"


class DelegationDepthExceededError(DelegationError):
    code = "delegation_depth_exceeded"
    status = 403
    default_message = "the delegation chain is deeper than allowed"


class DelegationCycleError(DelegationError):
    code = "delegation_cycle"
    status = 401
    default_message = "the delegation chain delegates back to a party already in it"


class DelegationHolderMismatchError(DelegationError):
    code = "delegation_holder_mismatch"
    status = 401
    default_message = "the presentation is not signed by the last delegate of the chain"


class DelegationListWidenedError(DelegationError):
    code = "delegation_list_widened"
    status = 401
    default_message = "a delegation lists a value its parent does not grant"


class DelegationLimitRaisedError(DelegationError):
    code = "delegation_limit_raised"
    status = 401
    default_message = "a delegation raises a numeric limit above its parent's"


class DelegationClaimChangedError(DelegationError):
    code = "delegation_claim_changed"
    status = 401
    default_message = "a delegation changes a claim its parent fixed"


class DelegationClaimAddedError(DelegationError):
    code = "delegation_claim_added"
    status = 401
    default_message = "a delegation adds a claim its parent does not have"


class DelegationValidityWidenedError(DelegationError):
    code = "delegation_validity_widened"
    status = 401
    default_message = "a delegation is valid outside its parent's validity period"


class DelegationDepthWidenedError(DelegationError):
    code = "delegation_depth_widened"
    status = 401
    default_message = "a delegation allows deeper sub-delegation than its parent"


# --- audit log -----------------------------------------------------------------------------


class AuditUnavailableError(VCGateError):
    """The audit log cannot take the record now (queue full, disk error, closed): fail closed."""

    code = "audit_unavailable"
    status = 503
    default_message = "the audit log is unavailable; the request cannot be recorded"


class AuditTamperedError(VCGateError):
    """:meth:`VerifyReport.check`: the log does not verify."""

    code = "audit_tampered"
    status = 500
    default_message = "the audit log does not verify"


class AuditCorruptError(AuditUnavailableError):
    """:class:`AuditLog` refuses to open a file whose tail or header it cannot trust."""

    code = "audit_corrupt"
    status = 503
    default_message = "the audit log file is corrupt; refusing to extend it"


# --- the issuer's record (vcgate credentials) ----------------------------------------------------


class RecordError(VCGateError):
    """The issuer's record (a local SQLite file) cannot be opened, read or written."""

    code = "record_unavailable"
    status = 503
    default_message = "the issuer's record cannot be read or written"
    hint = "check the file named by --record / VCGATE_ISSUER_RECORD (permissions, disk, another program)"


class CredentialUnknownError(RecordError):
    code = "credential_unknown"
    status = 404
    default_message = "the issuer's record has no credential with this id"
    hint = "'vcgate credentials list' shows the ids; check --record / VCGATE_ISSUER_RECORD names the right file"


class CredentialExistsError(RecordError):
    code = "credential_exists"
    status = 409
    default_message = "the issuer's record already has a credential with this id"
    hint = "give another --id, or leave it out for a fresh urn:uuid"


class CredentialNotRevocableError(RecordError):
    code = "credential_not_revocable"
    status = 409
    default_message = "the credential has no status entry, so it cannot be revoked"
    hint = ("issue a replacement with --status bitstring or --status onchain and let this one expire "
            "(a policy's max_age can refuse it sooner)")


def _all_codes() -> dict[str, type[VCGateError]]:
    out: dict[str, type[VCGateError]] = {}
    stack: list[type[VCGateError]] = [VCGateError]
    while stack:
        cls = stack.pop()
        out[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return out


#: Every stable error code mapped to its class (docs/errors.md lists the same codes).
ERROR_CODES: dict[str, type[VCGateError]] = _all_codes()
