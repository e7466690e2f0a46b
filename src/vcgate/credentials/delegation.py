"""Delegation chains: user -> agent -> sub-agent, where every hop can only narrow.

A chain is a root credential (issued by a trusted issuer to a principal) followed by
delegation credentials ("links"), each an ordinary VCDM 2.0 ``vc+jwt`` credential of type
``DelegationCredential`` issued by the subject of the credential above it to the delegate's
DID and bound to it by a digest of that credential's compact JWS (``delegation.parent``). A
link restates the capabilities it passes on with the root's claim names; what it does not
restate it inherits. The format and the rules are in ``docs/delegation.md``.

The root may be an SD-JWT VC (its subject: the holder its ``cnf`` binds). The link's digest
then covers its issuer-signed JWT only, so the delegate may disclose fewer claims, and every
check runs on the claims the root discloses: an undisclosed claim is never inherited, and a
link restating a claim the root does not disclose is refused ``claim_not_disclosed`` (vcgate
cannot tell a withheld claim from one never granted).

Everything here is pure: :func:`check_chain` and :func:`assemble` take credentials whose
signatures were already verified (:class:`~vcgate.credentials.Verifier`);
:func:`verify_chain` adds the signature and status checks through the objects it is given
(a verifier with its resolver, a status checker), so with a local resolver it does no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..errors import (
    DelegationClaimAddedError,
    DelegationClaimChangedError,
    DelegationCycleError,
    DelegationDepthExceededError,
    DelegationDepthWidenedError,
    DelegationError,
    DelegationExpiredError,
    DelegationHolderMismatchError,
    DelegationIssuerMismatchError,
    DelegationLimitRaisedError,
    DelegationListWidenedError,
    DelegationNotYetValidError,
    DelegationParentMissingError,
    DelegationReparentedError,
    DelegationRevokedError,
    DelegationSignatureInvalidError,
    DelegationSuspendedError,
    DelegationValidityWidenedError,
    ExpiredError,
    MalformedError,
    NotYetValidError,
    RevokedError,
    SignatureInvalidError,
    StatusUnavailableError,
    SuspendedError,
    UntrustedKeyError,
    VCGateError,
)
from ..keys import ALGORITHMS, PrivateKey
from ..strictjson import is_json_number, json_equal
from .jws import parse_jws, sign_jws
from .jwt import CONTEXT_V2, DEFAULT_CONTEXTS, read_credential, to_xsd_datetime
from .models import FORMAT_SD_JWT_VC, FORMAT_VC_JOSE, VerifiedCredential
from .sdjwt import is_sd_jwt, issuer_signed, unverified_credential

if TYPE_CHECKING:
    from ..status import StatusChecker
    from .verifier import Verifier

__all__ = [
    "DELEGATION_TYPE",
    "DelegationChain",
    "ChainCandidate",
    "assemble",
    "chain_ancestors",
    "chain_links",
    "chain_tokens",
    "check_chain",
    "check_status",
    "check_window",
    "digest_sri",
    "is_link",
    "issue_delegation",
    "link_error",
    "narrow_claims",
    "verify_chain",
]

#: The type every delegation credential carries (next to ``VerifiableCredential``).
DELEGATION_TYPE = "DelegationCredential"
#: The top-level credential property that binds a link to its parent (and limits depth).
DELEGATION_PROPERTY = "delegation"
#: Longest chain vcgate ever walks, whatever a policy says (bounds the work of a presentation).
MAX_CHAIN_LENGTH = 8
_SRI_ALGORITHMS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def digest_sri(token: str, algorithm: str = "sha256") -> str:
    """The Subresource-Integrity digest (``sha256-<base64>``) of a compact JWS, as VCDM 2.0's
    ``digestSRI`` writes it: over the exact ASCII bytes of the token."""
    digest = _SRI_ALGORITHMS[algorithm](token.encode("ascii")).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode('ascii')}"


def _matches_digest(token: str, sri: str) -> bool:
    algorithm, _, _ = sri.partition("-")
    if algorithm not in _SRI_ALGORITHMS:
        return False
    return hmac.compare_digest(digest_sri(token, algorithm), sri)


# --- reading the delegation property ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Binding:
    parent_id: str | None
    parent_digest: str | None
    max_depth: int | None


def _binding(cred: Any, hop: int) -> _Binding:
    """The ``delegation`` property of a credential (root: only ``maxDepth``)."""
    payload = cred.payload
    if getattr(cred, "format", None) == FORMAT_SD_JWT_VC:
        # Only what the issuer signed in the clear counts: a `delegation` the holder could
        # withhold (a Disclosure) would let it drop the root's maxDepth.
        signed = parse_jws(issuer_signed(cred.token), algorithms=ALGORITHMS).payload
        if DELEGATION_PROPERTY in payload and DELEGATION_PROPERTY not in signed:
            raise DelegationError(f"hop {hop}: an SD-JWT VC's 'delegation' must not be selectively disclosable", hop=hop)
        payload = signed
    value = payload.get(DELEGATION_PROPERTY)
    if value is None and isinstance(payload.get("vc"), Mapping):
        value = payload["vc"].get(DELEGATION_PROPERTY)
    if value is None:
        return _Binding(None, None, None)
    if not isinstance(value, Mapping):
        raise DelegationError(f"hop {hop}: 'delegation' must be an object", hop=hop)
    max_depth = value.get("maxDepth")
    if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0):
        raise DelegationError(f"hop {hop}: 'delegation.maxDepth' must be a non-negative integer", hop=hop)
    parent = value.get("parent")
    if parent is None:
        return _Binding(None, None, max_depth)
    if not isinstance(parent, Mapping):
        raise DelegationError(f"hop {hop}: 'delegation.parent' must be an object", hop=hop)
    pid, digest = parent.get("id"), parent.get("digestSRI")
    if pid is not None and not isinstance(pid, str):
        raise DelegationError(f"hop {hop}: 'delegation.parent.id' must be a string", hop=hop)
    if not isinstance(digest, str) or digest.partition("-")[0] not in _SRI_ALGORITHMS:
        raise DelegationError(
            f"hop {hop}: 'delegation.parent.digestSRI' must be a sha256/sha384/sha512 SRI digest", hop=hop
        )
    return _Binding(pid, digest, max_depth)


def is_link(cred: Any) -> bool:
    return DELEGATION_TYPE in cred.types


# --- attenuation ----------------------------------------------------------------------------


def _not_disclosed(hop: int, where: str, what: str) -> DelegationError:
    return DelegationError(
        f"hop {hop}: restates {what}, which the SD-JWT VC root does not disclose; disclose it",
        code="claim_not_disclosed", status=403, hop=hop, claim=where,
    )


def narrow_claims(
    parent: Mapping[str, Any], child: Mapping[str, Any], *, hop: int, disclosed_only: bool = False, _path: str = ""
) -> dict[str, Any]:
    """``parent``'s claims narrowed by what ``child`` restates; raise if ``child`` widens.

    Per claim: an object narrows key by key; a list must be a subset of the parent's list; a
    number is a ceiling and may only go down; any other value (string, boolean, null) must stay
    equal; a claim the parent lacks cannot be added; an unrestated claim is inherited.
    ``disclosed_only``: ``parent`` holds only what an SD-JWT VC root disclosed, so a claim or
    list element it lacks may merely be withheld: refused ``claim_not_disclosed``.
    """
    merged = dict(parent)
    for name, value in child.items():
        where = f"{_path}{name}"
        if name not in parent:
            if disclosed_only:
                raise _not_disclosed(hop, where, f"the claim '{where}'")
            raise DelegationClaimAddedError(f"hop {hop}: adds the claim '{where}', which its parent does not grant", hop=hop, claim=where)
        before = parent[name]
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            merged[name] = narrow_claims(before, value, hop=hop, disclosed_only=disclosed_only, _path=f"{where}.")
        elif isinstance(before, list) and isinstance(value, list):
            extra = [v for v in value if not any(json_equal(v, p) for p in before)]
            if extra and disclosed_only:
                raise _not_disclosed(hop, where, f"{_show(extra)} in '{where}'")
            if extra:
                raise DelegationListWidenedError(
                    f"hop {hop}: '{where}' lists {_show(extra)}, which its parent does not grant", hop=hop, claim=where
                )
            merged[name] = value
        elif is_json_number(before) and is_json_number(value):
            if value > before:
                raise DelegationLimitRaisedError(
                    f"hop {hop}: raises '{where}' from {before} to {value}", hop=hop, claim=where
                )
            merged[name] = value
        elif not json_equal(before, value):
            raise DelegationClaimChangedError(
                f"hop {hop}: changes '{where}' from {_show(before)} to {_show(value)}", hop=hop, claim=where
            )
    return merged


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the chain ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DelegationChain:
    """A chain that holds: ``hops[0]`` is the root credential, ``hops[-1]`` the leaf.

    ``claims`` are the effective (narrowed) capabilities at the leaf; ``valid_from`` /
    ``valid_until`` the intersection of every hop's window; ``max_depth`` how many more links
    the leaf may add (``None``: no limit stated by the root or a link).
    """

    hops: tuple[VerifiedCredential, ...]
    claims: Mapping[str, Any]
    valid_from: float | None
    valid_until: float | None
    max_depth: int | None
    #: The effective claims at each hop (root first): what each party in ``parties`` holds.
    hop_claims: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def root(self) -> VerifiedCredential:
        return self.hops[0]

    @property
    def leaf(self) -> VerifiedCredential:
        return self.hops[-1]

    @property
    def depth(self) -> int:
        """The number of delegation links (1: user -> agent)."""
        return len(self.hops) - 1

    @property
    def principal(self) -> str | None:
        """The root credential's subject: on whose behalf every delegate acts."""
        return self.root.subject

    @property
    def actors(self) -> tuple[str, ...]:
        """The delegates from the root to the caller (the leaf's subject last)."""
        return tuple(str(h.subject) for h in self.hops[1:])

    @property
    def parties(self) -> tuple[str, ...]:
        """The principal followed by the actors (``$chain`` in grant templates)."""
        return (str(self.principal), *self.actors)

    @property
    def links(self) -> tuple[tuple[str, Mapping[str, Any]], ...]:
        """``(DID, effective claims at that hop)`` per party, the principal first and the
        caller last (the shape :class:`vcgate.policy.limits.Caller` takes as ``chain``)."""
        return tuple(zip(self.parties, self.hop_claims))

    @property
    def act(self) -> dict[str, Any] | None:
        """RFC 8693 ``act``: the current actor outermost, earlier actors nested inside."""
        act: dict[str, Any] | None = None
        for actor in self.actors:
            act = {"sub": actor, "act": act} if act is not None else {"sub": actor}
        return act

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(h.token for h in self.hops)

    def view(self) -> VerifiedCredential:
        """The chain as one credential for policy checks: the root's issuer, types and
        issuance, the leaf's subject (the caller), the effective claims and window. Status is
        per hop and stays with the hops."""
        return replace(
            self.root,
            subject=self.leaf.subject,
            claims=self.claims,
            valid_from=self.root.valid_from,
            valid_until=None,
            status=(),
            token=self.leaf.token,
        )


def check_chain(
    hops: Sequence[VerifiedCredential],
    *,
    now: float | None = None,
    leeway: float = 0.0,
    max_depth: int | None = None,
) -> DelegationChain:
    """Check that ``hops`` (root first, signatures already verified) form a chain that only
    narrows. With ``now``, every hop must also be within its validity window. ``max_depth``
    is the caller's (the policy's) limit on the number of links. Raises a
    :class:`~vcgate.errors.DelegationError` naming the first hop that fails."""
    if not hops:
        raise DelegationError("an empty delegation chain")
    if len(hops) > MAX_CHAIN_LENGTH + 1:
        raise DelegationDepthExceededError(f"a chain of {len(hops) - 1} links is longer than vcgate walks ({MAX_CHAIN_LENGTH})", hop=MAX_CHAIN_LENGTH + 1)
    root = hops[0]
    if is_link(root):
        raise DelegationParentMissingError("hop 1: the parent of the first delegation credential was not presented", hop=1)
    allowance = _binding(root, 0).max_depth
    claims: dict[str, Any] = dict(root.claims)
    valid_from, valid_until = root.valid_from, root.valid_until
    seen = {root.subject}
    hop_claims: list[Mapping[str, Any]] = [claims]
    for hop in range(1, len(hops)):
        parent, link = hops[hop - 1], hops[hop]
        label = f"hop {hop} ({_short(link.issuer)} -> {_short(link.subject)})"
        if not is_link(link):
            raise DelegationError(f"{label}: lacks the type {DELEGATION_TYPE}", hop=hop)
        if link.format != FORMAT_VC_JOSE:
            raise DelegationError(f"{label}: a delegation credential is a VCDM 2.0 vc+jwt", hop=hop)
        binding = _binding(link, hop)
        if binding.parent_digest is None:
            raise DelegationError(f"{label}: has no 'delegation.parent' binding", hop=hop)
        if link.issuer != parent.subject:
            raise DelegationIssuerMismatchError(
                f"{label}: issued by {_short(link.issuer)}, not by its parent's subject {_short(parent.subject)}", hop=hop
            )
        if not _matches_digest(issuer_signed(parent.token), binding.parent_digest) or (
            binding.parent_id is not None and binding.parent_id != parent.id
        ):
            raise DelegationReparentedError(f"{label}: is bound to another parent credential than the one presented", hop=hop)
        if link.subject is None or link.subject in seen:
            raise DelegationCycleError(f"{label}: delegates back to {_short(link.subject)}, already in the chain", hop=hop)
        seen.add(link.subject)
        if link.valid_until is None:
            raise DelegationValidityWidenedError(f"{label}: states no validUntil (a delegation must end)", hop=hop)
        if valid_until is not None and link.valid_until > valid_until:
            raise DelegationValidityWidenedError(f"{label}: valid until {int(link.valid_until)}, after its parent ({int(valid_until)})", hop=hop)
        if valid_from is not None and (link.valid_from is None or link.valid_from < valid_from):
            raise DelegationValidityWidenedError(f"{label}: valid from before its parent ({int(valid_from)})", hop=hop)
        valid_from = link.valid_from
        valid_until = link.valid_until
        if allowance is not None and allowance < 1:
            raise DelegationDepthExceededError(f"{label}: its parent may not delegate further (maxDepth reached)", hop=hop)
        left = None if allowance is None else allowance - 1
        if binding.max_depth is not None:
            if left is not None and binding.max_depth > left:
                raise DelegationDepthWidenedError(f"{label}: allows {binding.max_depth} further links, its parent {left}", hop=hop)
            left = binding.max_depth
        allowance = left
        claims = narrow_claims(claims, link.claims, hop=hop, disclosed_only=root.format == FORMAT_SD_JWT_VC)
        hop_claims.append(claims)
    depth = len(hops) - 1
    if max_depth is not None and depth > max_depth:
        raise DelegationDepthExceededError(f"hop {max_depth + 1}: the chain has {depth} links, the policy allows {max_depth}", hop=max_depth + 1)
    if now is not None:
        for hop, cred in enumerate(hops):
            check_window(cred, hop, now, leeway)
    return DelegationChain(tuple(hops), claims, valid_from, valid_until, allowance, tuple(hop_claims))


def check_window(cred: VerifiedCredential, hop: int, now: float, leeway: float = 0.0) -> None:
    if cred.valid_until is not None and now - leeway >= cred.valid_until:
        raise DelegationExpiredError(f"hop {hop} ({_short(cred.subject)}): expired at {to_xsd_datetime(cred.valid_until)}", hop=hop)
    if cred.valid_from is not None and now + leeway < cred.valid_from:
        raise DelegationNotYetValidError(f"hop {hop} ({_short(cred.subject)}): not valid until {to_xsd_datetime(cred.valid_from)}", hop=hop)


def _short(text: str | None, n: int = 40) -> str:
    if text is None:
        return "-"
    return text if len(text) <= n else text[: n - 13] + "..." + text[-10:]


# --- finding chains among presented credentials -------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainCandidate:
    """What :func:`assemble` found ending at one leaf: a chain that holds, or why not."""

    hops: tuple[VerifiedCredential, ...]
    chain: DelegationChain | None
    error: DelegationError | None


def _walk(leaf: Any, creds: Sequence[Any], by_digest: Mapping[str, Any], by_id: Mapping[str, Any]) -> list[Any]:
    """Hops from the root to ``leaf`` by following parent digests (root first).

    When the bound parent is not among ``creds``, the credential presented in its place (same
    id, else the nearest one presented before the link whose subject issued it) is taken as
    the parent, so that :func:`check_chain` names the re-parenting instead of a missing parent.
    """
    hops = [leaf]
    current = leaf
    for _ in range(MAX_CHAIN_LENGTH + 1):
        if not is_link(current):
            break
        try:
            binding = _binding(current, 0)
        except DelegationError:
            break
        parent = by_digest.get(binding.parent_digest or "")
        if parent is None and binding.parent_id is not None:
            parent = by_id.get(binding.parent_id)
        if parent is None:
            position = next(i for i, c in enumerate(creds) if c is current)
            parent = next(
                (c for c in reversed(creds[:position]) if c.subject == current.issuer and all(c is not h for h in hops)),
                None,
            )
        if parent is None or any(parent is h for h in hops):
            break
        hops.append(parent)
        current = parent
    hops.reverse()
    return hops


def _digests(creds: Sequence[Any]) -> dict[str, Any]:
    """Each credential by its digest, in every algorithm some presented link binds with."""
    algorithms = set()
    for c in creds:
        if is_link(c):
            value = c.payload.get(DELEGATION_PROPERTY)
            parent = value.get("parent") if isinstance(value, Mapping) else None
            digest = parent.get("digestSRI") if isinstance(parent, Mapping) else None
            if isinstance(digest, str) and digest.partition("-")[0] in _SRI_ALGORITHMS:
                algorithms.add(digest.partition("-")[0])
    return {digest_sri(issuer_signed(c.token), a): c for c in creds for a in algorithms}


def assemble(
    creds: Sequence[VerifiedCredential], *, max_depth: int | None = None
) -> tuple[list[VerifiedCredential], list[ChainCandidate]]:
    """Split presented credentials into standalone credentials and chains (one per leaf).

    A credential that is the parent of a presented link counts only inside its chain, never
    alone, so a delegate cannot use its delegator's credential with the delegator's claims.
    Pure: only digests and the structural checks of :func:`check_chain` (no clock).
    """
    if not any(is_link(c) for c in creds):
        return list(creds), []
    by_digest = _digests(creds)
    by_id = {c.id: c for c in creds if c.id is not None}
    parents: set[int] = set()
    paths: dict[int, list[VerifiedCredential]] = {}
    for c in creds:
        if is_link(c):
            path = _walk(c, creds, by_digest, by_id)
            paths[id(c)] = path
            parents.update(id(p) for p in path[:-1])
    standalone = [c for c in creds if not is_link(c) and id(c) not in parents]
    chains = []
    for c in creds:
        if not is_link(c) or id(c) in parents:
            continue
        path = paths[id(c)]
        try:
            chains.append(ChainCandidate(tuple(path), check_chain(path, max_depth=max_depth), None))
        except DelegationError as exc:
            chains.append(ChainCandidate(tuple(path), None, exc))
    return standalone, chains


# --- mapping verification errors to the hop that caused them -----------------------------------


def _peek(token: str) -> tuple[bool, _Binding | None]:
    """(is a delegation link, its binding) without verifying anything; (False, None) if unreadable."""
    try:
        jws = parse_jws(token, algorithms=ALGORITHMS)
        claims = read_credential(jws, contexts=DEFAULT_CONTEXTS)
        payload = jws.payload
    except VCGateError:
        return False, None
    link = DELEGATION_TYPE in claims.types
    try:
        return link, _binding(_Peek(payload), 0) if link else None
    except DelegationError:
        return link, None


@dataclass(frozen=True, slots=True)
class _Peek:
    payload: Mapping[str, Any]


def link_error(tokens: Sequence[str], index: int, exc: VCGateError) -> VCGateError:
    """``exc`` raised verifying ``tokens[index]``, as a delegation error naming the hop if that
    credential is part of a presented chain (a link, or the parent of one); else ``exc``.

    Only called on a failure, so presentations without chains pay nothing for it.
    """
    if not isinstance(exc, (SignatureInvalidError, UntrustedKeyError, ExpiredError, NotYetValidError)):
        return exc
    peeks = [_peek(t) if isinstance(t, str) else (False, None) for t in tokens]
    referenced = {b.parent_digest for _, b in peeks if b is not None and b.parent_digest}
    token = tokens[index]
    link, binding = peeks[index]
    in_chain = link or any(isinstance(token, str) and _matches_digest(issuer_signed(token), d) for d in referenced)
    if not in_chain:
        return exc
    # The hop number: how many parents lie above this credential among the presented ones.
    hop = 0
    seen = {index}
    while binding is not None and binding.parent_digest:
        parent = next(
            (i for i, t in enumerate(tokens)
             if i not in seen and isinstance(t, str) and _matches_digest(issuer_signed(t), binding.parent_digest)),
            None,
        )
        hop += 1
        if parent is None or hop > MAX_CHAIN_LENGTH:
            break
        seen.add(parent)
        binding = peeks[parent][1]
    cls: type[DelegationError]
    if isinstance(exc, (SignatureInvalidError, UntrustedKeyError)):
        cls = DelegationSignatureInvalidError
    elif isinstance(exc, ExpiredError):
        cls = DelegationExpiredError
    else:
        cls = DelegationNotYetValidError
    return cls(f"hop {hop}: {exc.message}", hop=hop, cause=exc.code)


# --- verifying a chain from tokens ------------------------------------------------------------


def verify_chain(
    tokens: Sequence[str],
    *,
    verifier: Verifier,
    status: StatusChecker | None = None,
    max_depth: int | None = None,
    holder: str | None = None,
) -> DelegationChain:
    """Verify a chain given as compact JWTs (any order; exactly one leaf): every signature and
    validity window through ``verifier``, then :func:`check_chain`, then the status of every
    credential that has a ``credentialStatus`` entry through ``status``. ``holder``: the DID
    proven to present the chain (a presentation's signer), which must be the leaf's subject.
    Raises a :class:`~vcgate.errors.VCGateError` (a ``delegation_*`` one naming the hop where
    it can)."""
    creds = []
    for i, token in enumerate(tokens):
        try:
            creds.append(verifier.verify_credential(token))
        except VCGateError as exc:
            raise link_error(tokens, i, exc) from exc
    standalone, chains = assemble(creds)
    if len(chains) != 1 or standalone:
        raise DelegationError(
            f"expected one delegation chain, found {len(chains)} chain(s) and {len(standalone)} other credential(s)"
        )
    candidate = chains[0]
    if candidate.error is not None:
        raise candidate.error
    chain = check_chain(candidate.hops, now=verifier.clock(), leeway=verifier.leeway, max_depth=max_depth)
    if holder is not None and holder != chain.leaf.subject:
        raise DelegationHolderMismatchError(
            f"hop {chain.depth}: the presentation is signed by {_short(holder)}, not by the delegate "
            f"{_short(chain.leaf.subject)}",
            hop=chain.depth,
        )
    for hop, cred in enumerate(chain.hops):
        if cred.status:
            check_status(cred, hop, status)
    return chain


def check_status(cred: VerifiedCredential, hop: int, status: StatusChecker | None) -> None:
    """Status of one hop through the status checker; revoked / suspended name the hop."""
    if status is None:
        raise StatusUnavailableError(f"hop {hop}: has a credentialStatus and no status checker is configured")
    try:
        status.check(cred)
    except RevokedError as exc:
        raise DelegationRevokedError(f"hop {hop} ({_short(cred.subject)}): {exc.message}", hop=hop) from exc
    except SuspendedError as exc:
        raise DelegationSuspendedError(f"hop {hop} ({_short(cred.subject)}): {exc.message}", hop=hop) from exc


# --- issuing ------------------------------------------------------------------------------------


def _unverified(token: str) -> VerifiedCredential:
    """A credential read without checking its signature (for checks before signing a link)."""
    if is_sd_jwt(token):
        return unverified_credential(token)
    jws = parse_jws(token, algorithms=ALGORITHMS)
    c = read_credential(jws, contexts=DEFAULT_CONTEXTS)
    return VerifiedCredential(
        format=c.format, issuer=c.issuer, subject=c.subject, types=c.types, claims=c.claims,
        valid_from=c.valid_from, valid_until=c.valid_until, status=c.status, id=c.id,
        kid=jws.kid or "", issuer_key=None, payload=jws.payload, token=token,  # type: ignore[arg-type]
    )


def issue_delegation(
    key: PrivateKey,
    *,
    kid: str,
    chain: Sequence[str],
    subject: str,
    claims: Mapping[str, Any] | None = None,
    valid_from: float,
    valid_until: float,
    max_depth: int | None = None,
    status: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    credential_id: str | None = None,
) -> str:
    """Sign a delegation of the last credential of ``chain`` (root first) to ``subject``.

    The issuer is that credential's subject, whose key ``key`` must be (``kid`` names it).
    ``claims`` restate what is passed on (narrower or equal; the rest is inherited).
    ``valid_until`` is clamped to the chain's own end. The new link is checked against the
    chain before it is returned, so a widening delegation is refused here, not at the gateway.
    """
    if not chain:
        raise MalformedError("a delegation needs the parent credential (the chain, root first)")
    hops = [_unverified(t) for t in chain]
    parent = hops[-1]
    if parent.subject is None:
        raise MalformedError("the parent credential names no subject to delegate from")
    if kid.partition("#")[0] != parent.subject:
        raise DelegationIssuerMismatchError(
            f"the key {kid[:80]} is not a key of the parent credential's subject {parent.subject[:80]}", hop=len(hops)
        )
    current = check_chain(hops) if len(hops) > 1 else None
    end = current.valid_until if current is not None else parent.valid_until
    if end is not None:
        valid_until = min(valid_until, end)
    binding: dict[str, Any] = {"parent": {"digestSRI": digest_sri(issuer_signed(parent.token))}}
    if parent.id is not None:
        binding["parent"] = {"id": parent.id, **binding["parent"]}
    if max_depth is not None:
        binding["maxDepth"] = max_depth
    claims = dict(claims or {})
    if "id" in claims:
        raise MalformedError("claims must not set 'id': the subject is given separately")
    body: dict[str, Any] = {
        "@context": [CONTEXT_V2],
        "id": credential_id or f"urn:uuid:{uuid.uuid4()}",
        "type": ["VerifiableCredential", DELEGATION_TYPE],
        "issuer": parent.subject,
        "validFrom": to_xsd_datetime(valid_from),
        "validUntil": to_xsd_datetime(valid_until),
        "credentialSubject": {"id": subject, **claims},
        DELEGATION_PROPERTY: binding,
    }
    if status is not None:
        body["credentialStatus"] = status
    token = sign_jws(key, body, typ="vc+jwt", kid=kid)
    check_chain([*hops, _unverified(token)])  # refuse to hand out a link the gateway would refuse
    return token


def chain_tokens(values: Iterable[str]) -> tuple[str, ...]:
    """Put the tokens of each chain among ``values`` root first, right before its links (as a
    presentation carries them); other tokens keep their place. Nothing is verified."""
    tokens = list(values)
    _, chains = assemble(_readable(tokens))
    leaves = {c.hops[-1].token: c for c in chains}
    in_chains = {h.token for c in chains for h in c.hops}
    placed: set[str] = set()
    out: list[str] = []
    for token in tokens:
        if token in leaves:
            group = [h.token for h in leaves[token].hops]
        elif token in in_chains:
            continue  # placed with its chain's leaf
        else:
            out.append(token)
            continue
        for t in group:
            if t not in placed:
                placed.add(t)
                out.append(t)
    return tuple(out)


def chain_ancestors(tokens: Iterable[str]) -> frozenset[str]:
    """The tokens that are the parent of another presented token (read without verifying)."""
    _, chains = assemble(_readable(tokens))
    return frozenset(h.token for c in chains for h in c.hops[:-1])


def chain_links(tokens: Iterable[str], root: str) -> tuple[VerifiedCredential, ...]:
    """The links (read without verifying) of the chains among ``tokens`` that ``root`` roots."""
    _, chains = assemble(_readable(tokens))
    return tuple(h for c in chains if c.hops[0].token == root for h in c.hops[1:])


def _readable(tokens: Iterable[str]) -> list[VerifiedCredential]:
    """The tokens read as credentials (JWT or SD-JWT VC) without verifying; unreadable ones left out."""
    out = []
    for token in tokens:
        try:
            out.append(_unverified(token))
        except VCGateError:
            continue
    return out

