"""The verifier: signatures, keys from DID documents, validity windows, audience, nonce, holder.

Order of checks for a credential: size and syntax, algorithm allow-list, header policy
(``crit``, ``b64``, key-carrying headers), the claims' shape and contexts, then the key — taken
only from the issuer's DID document (or, for an issuer that is an https URL, its CID 1.0
controller document) and only if authorised for ``assertionMethod`` — then the signature,
then the validity window. Nothing from the payload is trusted before the signature
checks except what is needed to find the key (the issuer's DID).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from ..did.document import VerificationMethod, is_controller_url, split_did_url
from ..did.resolver import Resolver
from ..errors import (
    AudienceMismatchError,
    ExpiredError,
    HolderMismatchError,
    MalformedError,
    NonceMismatchError,
    NotYetValidError,
    SignatureInvalidError,
    UntrustedKeyError,
    VCGateError,
)
from ..keys import ALGORITHMS
from .jws import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, JWS, JWSParser
from .delegation import assemble, link_error
from .jwt import DEFAULT_CONTEXTS, read_credential, to_xsd_datetime
from .datamodel import check_credential
from .models import FORMAT_VC_JOSE, VerifiedCredential, VerifiedPresentation
from .presentation import read_presentation
from .sdjwt import SDJWTLimits, is_sd_jwt, verify_sd_jwt_presentation, verify_sd_jwt_vc

__all__ = ["Verifier"]

_MODEL_MEMO = 4096

# Without a kid, at most this many of the signer's keys are tried (bounds the work an
# attacker can cause with a DID document listing many keys).
_MAX_KEYS_TRIED = 4


class Verifier:
    """Verifies credentials and presentations. Thread-safe; create one and reuse it.

    :param resolver: where DID documents come from (default: did:key and did:jwk, no network).
    :param algorithms: the JOSE algorithm allow-list (a subset of EdDSA, ES256, ES256K).
    :param clock: returns POSIX seconds; tests pass a fixed clock.
    :param leeway: seconds of clock skew tolerated on every time check.
    :param contexts: JSON-LD context URLs accepted (see ``DEFAULT_CONTEXTS``).
    :param sd_jwt: caps for SD-JWT VCs (Disclosures, digests, the KB-JWT's age).
    :param allow_unpinned_contexts: accept credentials with inline or other contexts and mark
        them ``contexts_pinned=False`` instead of refusing them (conformance testing, the
        VC-API verifier); never for a verifier that authorises.
    """

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        algorithms: Collection[str] = ALGORITHMS,
        clock: Callable[[], float] = time.time,
        leeway: float = 60.0,
        max_token_bytes: int = DEFAULT_MAX_BYTES,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_credentials: int = 16,
        contexts: Collection[str] = DEFAULT_CONTEXTS,
        sd_jwt: SDJWTLimits = SDJWTLimits(),
        allow_unpinned_contexts: bool = False,
    ) -> None:
        unknown = set(algorithms) - set(ALGORITHMS)
        if unknown:
            raise ValueError(f"unsupported algorithms in allow-list: {sorted(unknown)}")
        self.resolver = resolver if resolver is not None else Resolver.local()
        self.algorithms = frozenset(algorithms)
        self.clock = clock
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self.max_depth = max_depth
        self.max_credentials = max_credentials
        self.contexts = frozenset(contexts)
        self.sd_jwt = sd_jwt
        # SHA-256 of signed VCDM 2.0 payloads already held to the data-model rules: a
        # credential repeats on every call of an agent, the JSON Schema check costs ~0.3 ms.
        self._model_checked: dict[bytes, None] = {}
        self._jws = JWSParser(algorithms=self.algorithms, max_bytes=max_token_bytes, max_depth=max_depth)
        self.allow_unpinned_contexts = allow_unpinned_contexts

    # --- shared pieces --------------------------------------------------------------------

    def _parse(self, token: Any) -> JWS:
        parser = self._jws
        # The limits are public attributes a caller may change after construction (a status
        # list method raises max_token_bytes on a shallow copy): the parser follows them.
        if (
            parser.max_bytes != self.max_token_bytes
            or parser.max_depth != self.max_depth
            or parser.algorithms != self.algorithms
        ):
            parser = self._jws = JWSParser(
                algorithms=self.algorithms, max_bytes=self.max_token_bytes, max_depth=self.max_depth
            )
        return parser.parse(token)

    def _verify_signer(self, jws: JWS, signer: str, purpose: str) -> VerificationMethod:
        """Find the key ``signer`` authorises for ``purpose`` and check the signature with it."""
        kid = jws.kid
        # Plain string checks here; the resolver validates the DID syntax on a cache miss.
        if kid is not None and kid != signer:
            if kid.startswith("#"):
                method_id = signer + kid
            elif kid.startswith("did:") or is_controller_url(kid):
                # An absolute DID URL or controller document URL: its part before the
                # fragment must be the signer itself, and the fragment must name a method.
                kid_base, _, fragment = kid.partition("#")
                if kid_base != signer:
                    raise UntrustedKeyError("the 'kid' names a key of another controller than the signer")
                if not fragment:
                    raise UntrustedKeyError("the 'kid' does not name a verification method")
                method_id = kid
            else:
                method_id = f"{signer}#{kid}"
            vm = self.resolver.resolve(signer).method_for(method_id, purpose)
            jws.verify_with(vm.public_key)
            return vm
        candidates = self.resolver.resolve(signer).methods_for(purpose, jws.alg)
        if not candidates:
            raise UntrustedKeyError(f"{signer[:80]} has no {jws.alg} key authorised for {purpose}")
        last: VCGateError = SignatureInvalidError()
        for vm in candidates[:_MAX_KEYS_TRIED]:
            try:
                jws.verify_with(vm.public_key)
                return vm
            except SignatureInvalidError as exc:
                last = exc
        raise last

    def _check_window(self, not_before: float | None, not_after: float | None, what: str) -> None:
        now = self.clock()
        if not_before is not None and now + self.leeway < not_before:
            raise NotYetValidError(f"the {what} is not valid until {to_xsd_datetime(not_before)}")
        if not_after is not None and now - self.leeway >= not_after:
            raise ExpiredError(f"the {what} expired at {to_xsd_datetime(not_after)}")

    # --- credentials ----------------------------------------------------------------------

    def verify_credential(self, token: str) -> VerifiedCredential:
        """Verify a credential JWT (VC-JOSE ``vc+jwt`` or VCDM 1.1 VC-JWT), or an SD-JWT VC
        with its Disclosures (``<JWT>~<D1>~...~``; see :mod:`vcgate.credentials.sdjwt`).

        Raises a :class:`vcgate.errors.VCGateError` subclass naming the first failed check.
        """
        if is_sd_jwt(token):
            return verify_sd_jwt_vc(self, token, limits=self.sd_jwt)[0]
        jws = self._parse(token)
        claims = read_credential(jws, contexts=self.contexts, allow_unpinned=self.allow_unpinned_contexts)
        vm = self._verify_signer(jws, claims.issuer, "assertionMethod")
        self._check_window(claims.valid_from, claims.valid_until, "credential")
        if claims.format == FORMAT_VC_JOSE:
            self._check_model(jws)
        return VerifiedCredential(
            format=claims.format,
            issuer=claims.issuer,
            subject=claims.subject,
            types=claims.types,
            claims=claims.claims,
            valid_from=claims.valid_from,
            valid_until=claims.valid_until,
            status=claims.status,
            id=claims.id,
            kid=vm.id,
            issuer_key=vm.public_key,
            payload=jws.payload,
            token=token if isinstance(token, str) else token.decode("ascii"),
            contexts_pinned=claims.contexts_pinned,
        )

    def _check_model(self, jws: JWS) -> None:
        """VCDM 2.0 rules on a signed payload (after the signature: only signed data is memoised)."""
        digest = hashlib.sha256(jws.signing_input).digest()
        if digest in self._model_checked:
            return
        check_credential(jws.payload)
        if len(self._model_checked) >= _MODEL_MEMO:
            self._model_checked.clear()
        self._model_checked[digest] = None

    # --- presentations --------------------------------------------------------------------

    def verify_presentation(
        self,
        token: str,
        *,
        audience: str | Iterable[str] | None,
        nonce: str | None,
        holder_binding: bool = True,
        max_age: float | None = None,
    ) -> VerifiedPresentation:
        """Verify a presentation JWT and every credential in it.

        ``audience``: the presentation's ``aud`` must name this (or one of these). ``nonce``:
        the presentation must echo exactly this. Passing ``None`` for either skips that check
        and is only safe where replay is prevented otherwise. ``holder_binding``: the holder
        must be the subject of each credential. ``max_age``: refuse presentations whose
        ``iat`` is older than this many seconds.

        An SD-JWT VC presentation (``<JWT>~<D1>~...~<KB-JWT>``) is verified per RFC 9901: its
        KB-JWT plays the presentation's part (``aud``, ``nonce``, ``iat``), signed by the
        credential's ``cnf`` key, which is then ``holder_key``; ``holder`` is the DID or JWK
        thumbprint URI ``cnf`` names, and the credential's ``subject`` (so holder binding holds).
        """
        if is_sd_jwt(token):
            return verify_sd_jwt_presentation(
                self, token, audience=audience, nonce=nonce, limits=self.sd_jwt, max_age=max_age
            )
        jws = self._parse(token)
        pres = read_presentation(jws, contexts=self.contexts, max_credentials=self.max_credentials)
        holder = pres.holder
        if holder is None:
            kid = jws.kid
            if kid is None or not kid.startswith("did:"):
                raise MalformedError("the presentation names no holder and its 'kid' is not a DID URL")
            holder = split_did_url(kid)[0]
        vm = self._verify_signer(jws, holder, "authentication")

        if audience is not None:
            wanted = {audience} if isinstance(audience, str) else set(audience)
            if not wanted.intersection(pres.audience):
                raise AudienceMismatchError("the presentation's 'aud' does not name this verifier")
        if nonce is not None:
            if pres.nonce is None or not hmac.compare_digest(pres.nonce.encode(), nonce.encode()):
                raise NonceMismatchError("the presentation's 'nonce' is not the one issued")
        self._check_window(pres.not_before, pres.expires_at, "presentation")
        now = self.clock()
        if pres.issued_at is not None:
            if pres.issued_at > now + self.leeway:
                raise NotYetValidError("the presentation was issued in the future")
            if max_age is not None and now - pres.issued_at > max_age + self.leeway:
                raise ExpiredError("the presentation is too old")
        elif max_age is not None:
            raise MalformedError("the presentation has no 'iat' to check its age against")

        credentials = []
        for index, token in enumerate(pres.credentials):
            try:
                credentials.append(self.verify_credential(token))
            except VCGateError as exc:
                # A failing credential of a delegation chain is refused as such, naming its hop.
                raise link_error(pres.credentials, index, exc) from exc
        if holder_binding:
            # In a delegation chain only the leaf is the holder's; its ancestors are about the
            # delegators (docs/delegation.md), and the chain's own checks bind them.
            # Only the ancestors of a chain that holds (each link signed by its parent's
            # subject) and ends at this holder: a made-up link cannot unbind a credential.
            _, chains = assemble(credentials)
            for candidate in chains:
                if candidate.error is not None and candidate.hops[-1].subject == holder:
                    raise candidate.error  # the holder's own chain does not hold: say why
            ancestors = {
                id(h) for c in chains if c.chain is not None and c.chain.leaf.subject == holder for h in c.hops[:-1]
            }
            for cred in credentials:
                if id(cred) in ancestors:
                    continue
                if cred.subject != holder:
                    raise HolderMismatchError(
                        f"the holder {holder[:80]} is not the subject of credential {str(cred.id)[:80]}"
                    )
        return VerifiedPresentation(
            format=pres.format,
            holder=holder,
            holder_key=vm.public_key,
            kid=vm.id,
            audience=pres.audience,
            nonce=pres.nonce,
            issued_at=pres.issued_at,
            expires_at=pres.expires_at,
            credentials=tuple(credentials),
            id=pres.id,
            payload=jws.payload,
        )
