"""The agent: a holder, its key and its credentials.

:class:`Holder` owns a key and the credentials issued to it. Its :meth:`Holder.httpx_auth`
and :meth:`Holder.requests_auth` return auth objects that answer a gateway's challenge
(``docs/protocol.md``). Both drive the same sans-I/O generator, :meth:`AuthState.flow` in
:mod:`vcgate.client.flow`; the adapters only translate requests and responses.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..credentials import FORMAT_VC_JOSE, FORMAT_VC_JWT11, create_presentation
from ..credentials.dcql import parse_dcql, select
from ..credentials.sdjwt import holder_view, is_sd_jwt, present_sd_jwt
from ..credentials.delegation import chain_ancestors, chain_links, chain_tokens, issue_delegation
from ..did import did_key_from_public_key, public_key_from_did_key
from ..keys import PrivateKey, passphrase_from_env, read_key_file
from ..session import create_proof
from .flow import AuthState, Challenge, ProtocolError, parse_challenges

if TYPE_CHECKING:
    from .httpx_auth import HttpxAuthMixin
    from .requests_auth import RequestsAuth

__all__ = ["Challenge", "Holder", "ProtocolError", "parse_challenges"]

Clock = Callable[[], float]

#: ``Holder.from_key_file`` reads the key file's passphrase from here when none is given.

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
#: An SD-JWT as issued: the issuer-signed JWT, then Disclosures, each followed by "~".
_SD_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+~(?:[A-Za-z0-9_-]+~)*")


def _is_credential(text: str) -> bool:
    return bool(_COMPACT_JWS.fullmatch(text) or _SD_JWT.fullmatch(text))


# --- the holder -----------------------------------------------------------------------------


def _default_kid(did: str) -> str:
    if did.startswith("did:key:"):
        return f"{did}#{did[len('did:key:'):]}"
    if did.startswith("did:jwk:"):
        return f"{did}#0"
    raise ValueError(f"give kid= (the verification method of {did[:60]} that holds this key)")


class Holder:
    """An agent: a private key, its DID and the credentials issued to that DID.

    :param key: the holder's key; it signs presentations and DPoP proofs.
    :param did: the holder's DID (default: the ``did:key`` of ``key``).
    :param kid: the verification method that names ``key`` (default for ``did:key`` and
        ``did:jwk``: their only one; required for other methods).
    :param credentials: compact credential JWTs issued to ``did``, and SD-JWT VCs bound to
        ``key`` (``<JWT>~<Disclosure>~...~``, as ``vcgate issue --format sd-jwt`` prints them).
        A delegation chain (a root credential and its delegation credentials, root first, as
        :meth:`delegate` returns it; any order is put right once here) ends in a delegation to ``did``.
    :param clock: POSIX seconds; tests pass a fixed clock.
    :param presentation_format: ``"vc-jose"`` (VCDM 2.0 ``vp+jwt``) or ``"vc-jwt11"``.
    :param presentation_lifetime: seconds a presentation stays valid (its ``exp``).
    :param disclose: claim paths of an SD-JWT VC to disclose when the verifier asks for none
        (no DCQL query): ``[["org"]]``; ``None`` discloses every claim.
    """

    def __init__(
        self,
        key: PrivateKey,
        *,
        did: str | None = None,
        kid: str | None = None,
        credentials: Sequence[str],
        clock: Clock = time.time,
        presentation_format: str = FORMAT_VC_JOSE,
        presentation_lifetime: float = 300.0,
        disclose: Sequence[Sequence[str | int | None]] | None = None,
    ) -> None:
        if not isinstance(key, PrivateKey):
            raise TypeError("key must be a vcgate.keys.PrivateKey")
        if isinstance(credentials, str):
            raise TypeError("credentials is a sequence of JWTs, not one string")
        creds = tuple(credentials)
        for c in creds:
            if not isinstance(c, str) or not _is_credential(c):
                raise ValueError("each credential must be a compact JWT or an SD-JWT VC")
        if presentation_format not in (FORMAT_VC_JOSE, FORMAT_VC_JWT11):
            raise ValueError(f"presentation_format must be {FORMAT_VC_JOSE!r} or {FORMAT_VC_JWT11!r}")
        if did is None:
            did = str(did_key_from_public_key(key.public_key))
        elif did.startswith("did:key:") and public_key_from_did_key(did) != key.public_key:
            raise ValueError(f"{did[:60]} is not the DID of this key")
        self.key = key
        self.did = did
        self.kid = kid if kid is not None else _default_kid(did)
        self.credentials = chain_tokens(creds)
        self.clock = clock
        self.presentation_format = presentation_format
        self.presentation_lifetime = presentation_lifetime
        self.disclose = None if disclose is None else tuple(tuple(p) for p in disclose)

    def __repr__(self) -> str:
        return f"Holder(did={self.did!r}, credentials={len(self.credentials)})"

    @classmethod
    def from_key_file(
        cls,
        path: str | os.PathLike[str],
        *,
        credentials: Sequence[str | os.PathLike[str]],
        passphrase: str | None = None,
        **options: Any,
    ) -> Holder:
        """A holder whose key is in a vcgate key file (``vcgate keys generate``).

        ``credentials``: paths of files holding one credential JWT each (as ``vcgate issue``
        writes them), or the JWTs themselves. ``passphrase`` defaults to the environment
        variable ``VCGATE_PASSPHRASE``. Other options go to :class:`Holder`.
        """
        if passphrase is None:
            passphrase = passphrase_from_env()
        key = read_key_file(path, passphrase=passphrase)
        if isinstance(credentials, (str, os.PathLike)):
            raise TypeError("credentials is a sequence of paths or JWTs, not one value")
        jwts: list[str] = []
        for item in credentials:
            text = os.fspath(item)
            if isinstance(item, str) and _is_credential(item.strip()) and not os.path.exists(item):
                jwts.append(item.strip())
                continue
            try:
                with open(text, encoding="utf-8") as fh:
                    content = fh.read(1 << 20).strip()
            except OSError as exc:
                raise ValueError(f"credential {text[:200]!r} is neither a JWT nor a readable file") from exc
            if not _is_credential(content):
                raise ValueError(f"{text[:200]} does not hold a compact credential JWT or an SD-JWT VC")
            jwts.append(content)
        return cls(key, credentials=jwts, **options)

    # --- signing ------------------------------------------------------------------------

    def present(self, *, audience: str, nonce: str | None, dcql: Any = None) -> str:
        """A presentation for ``audience`` carrying ``nonce``.

        With SD-JWT VCs: the one that answers the ``dcql`` query (OpenID4VP DCQL, a parsed JSON
        object), disclosing exactly the claims it asks for, with a KB-JWT; without a query, the
        first SD-JWT VC disclosing :attr:`disclose`. Otherwise a VP JWT of the JWT credentials; a delegation chain among them is presented
        whole, root first (docs/delegation.md); an SD-JWT VC root travels in it without a KB-JWT,
        disclosing what the query (else :attr:`disclose`) asks plus every claim its links restate.
        """
        # An SD-JWT VC that roots a delegation chain held here is the delegator's: it travels
        # inside the VP JWT with its links (no KB-JWT: its cnf key is not this holder's).
        ancestors = chain_ancestors(self.credentials)
        sd_jwts = [c for c in self.credentials if is_sd_jwt(c) and c not in ancestors]
        jwts = [c for c in self.credentials if not is_sd_jwt(c) or c in ancestors]
        query = parse_dcql(dcql) if dcql is not None else None
        chosen: tuple[str, Any] | None = None
        if query is not None and sd_jwts:
            matches = select(query, [(c, *holder_view(c)) for c in sd_jwts])
            if matches:
                chosen = next(iter(matches.values()))
        if chosen is None and sd_jwts and not jwts:
            # Nothing answers the query: present the default; the gateway names what is missing.
            chosen = (sd_jwts[0], self.disclose)
        if chosen is not None:
            return present_sd_jwt(chosen[0], disclose=chosen[1], holder_key=self.key, audience=audience,
                                  nonce=nonce, issued_at=self.clock())
        return create_presentation(
            self.key,
            holder=self.did,
            kid=self.kid,
            credentials=[self._root_disclosures(c, query) if is_sd_jwt(c) else c for c in jwts],
            audience=audience,
            nonce=nonce,
            issued_at=self.clock(),
            lifetime=self.presentation_lifetime,
            format=self.presentation_format,
        )

    def _root_disclosures(self, root: str, query: Any) -> str:
        """An SD-JWT VC chain root with the Disclosures asked for (the query's paths, else
        :attr:`disclose`) plus every claim its links restate (the gate narrows on disclosed
        claims only); everything when neither the query nor ``disclose`` limits it."""
        paths: list[tuple[Any, ...]] | None = None
        if query is not None:
            matches = select(query, [(root, *holder_view(root))])
            paths = list(next(iter(matches.values()))[1]) if matches else None
        if paths is None and self.disclose is not None:
            paths = list(self.disclose)
        if paths is not None:
            for link in chain_links(self.credentials, root):
                paths.extend((name,) for name in link.claims)
        return present_sd_jwt(root, disclose=paths, holder_key=None)

    def delegate(
        self,
        *,
        subject: str,
        claims: Mapping[str, Any] | None = None,
        valid_for: float = 3600.0,
        max_depth: int | None = None,
        status: Mapping[str, Any] | None = None,
    ) -> tuple[str, ...]:
        """Delegate part of what this holder holds to ``subject`` (a sub-agent's DID).

        ``claims`` restate the capabilities passed on, narrower or equal (the rest is
        inherited); ``valid_for`` seconds from now, clamped to this holder's own credential;
        ``max_depth`` limits further delegation; ``status`` a ``credentialStatus`` entry of
        the holder's own status list, to be able to revoke it. Returns the sub-agent's chain
        (root first, the new delegation last): give it to ``Holder(sub_key, credentials=...)``.
        Raises a ``delegation_*`` :class:`~vcgate.errors.VCGateError` for a delegation that
        would widen anything, before signing it.
        """
        ancestors = chain_ancestors(self.credentials)
        own = [t for t in self.credentials if t not in ancestors]
        if len(own) != 1:
            raise ValueError(
                f"this holder holds {len(own)} credentials (or chains); delegate from a Holder of exactly one"
            )
        hops = [*(t for t in self.credentials if t in ancestors), *own]
        now = self.clock()
        link = issue_delegation(
            self.key,
            kid=self.kid,
            chain=hops,
            subject=subject,
            claims=claims,
            valid_from=float(int(now)),
            valid_until=float(int(now + valid_for)),
            max_depth=max_depth,
            status=status,
        )
        return (*hops, link)

    def proof(self, *, htm: str, htu: str, access_token: str | None = None, nonce: str | None = None) -> str:
        """A DPoP proof for one request (``htu`` loses its query and fragment)."""
        return create_proof(self.key, htm=htm, htu=htu, access_token=access_token, nonce=nonce, clock=self.clock)

    # --- auth objects ---------------------------------------------------------------------

    def httpx_auth(
        self, *, mode: str = "session", audience: str | None = None, refresh_margin: float = 30.0
    ) -> HttpxAuthMixin:
        """An ``httpx.Auth`` for ``httpx.Client`` and ``httpx.AsyncClient`` (and so the OpenAI SDK).

        ``mode``: ``"session"`` (a DPoP-bound token, the fast path) or ``"direct"``
        (``Authorization: VP`` answering each challenge). ``audience``: the gateway's
        configured audience when it differs from the origin the client calls (see
        ``docs/client.md``). ``refresh_margin``: seconds before expiry a token is replaced.
        """
        from .httpx_auth import auth_class

        return auth_class("httpx")(AuthState(self, mode=mode, audience=audience, refresh_margin=refresh_margin))

    def httpx2_auth(
        self, *, mode: str = "session", audience: str | None = None, refresh_margin: float = 30.0
    ) -> HttpxAuthMixin:
        """The same as :meth:`httpx_auth`, for clients of ``httpx2`` (the OpenAI SDK's default since 3.x)."""
        from .httpx_auth import auth_class

        return auth_class("httpx2")(AuthState(self, mode=mode, audience=audience, refresh_margin=refresh_margin))

    def requests_auth(self, *, mode: str = "session", audience: str | None = None, refresh_margin: float = 30.0) -> RequestsAuth:
        """A ``requests.auth.AuthBase`` doing what :meth:`httpx_auth` does, for ``requests``."""
        from .requests_auth import RequestsAuth

        return RequestsAuth(AuthState(self, mode=mode, audience=audience, refresh_margin=refresh_margin))
