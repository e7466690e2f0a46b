"""Issuers that are https URLs: their keys from a W3C Controlled Identifiers (CID 1.0) controller document.

VCDM 2.0 lets an ``issuer`` be any URL. When it is an https URL rather than a DID, the keys
that may sign for it are in the *controller document* served at that URL (CID 1.0 section 2,
"Retrieve Verification Method" in section 3.3)::

    {
      "@context": "https://www.w3.org/ns/cid/v1",
      "id": "https://issuer.example/issuers/1",
      "verificationMethod": [{
        "id": "https://issuer.example/issuers/1#key-1",
        "type": "Multikey",
        "controller": "https://issuer.example/issuers/1",
        "publicKeyMultibase": "z6Mk..."
      }],
      "assertionMethod": ["https://issuer.example/issuers/1#key-1"]
    }

:class:`ControllerDocumentMethod` fetches it exactly as did:web documents are fetched -- it *is*
the did:web method with another URL mapping and its own error codes: the SSRF-safe
:class:`vcgate.fetch.SafeFetcher` (https only, address checks before connecting, pinning,
verified TLS, no redirects, time budget, size cap), port 443 unless configured, strict JSON.
The :class:`~vcgate.did.resolver.Resolver` routes https identifiers here and caches the
parsed document for its TTL, like a did:web document, so a warm verification never fetches.

What is refused, each with its code (docs/errors.md):

* a URL that is not https, not a DNS name, carries userinfo or a fragment, or is not written in
  its canonical form (lower-case host, no ``:443``): ``controller_url_refused``. There is no
  plain-http exception, not even for development: serve a test document over https with a
  throwaway CA (``--ca-bundle``) and re-admit loopback with ``--allow-network 127.0.0.0/8``;
* a document whose ``id`` is not that URL: ``controller_id_mismatch``;
* a verification method controlled by another controller: ``controller_mismatch`` when a
  signature names it (a method of the document that is not ``Multikey``/``JsonWebKey``, or
  carries private JWK members, is unusable: ``untrusted_key``);
* a document over the size cap, deeper than the nesting cap, not a JSON object:
  ``controller_document_invalid``; 404/410 or an unknown host: ``controller_document_not_found``;
  an address vcgate does not connect to: ``controller_address_forbidden``; TLS, timeouts,
  redirects and other statuses: ``controller_document_unavailable`` (503).

Trust is the policy's, exactly as for DIDs: a controller document only says which keys speak
for the URL; the policy's ``trusted_issuers`` must name the URL for its credentials to count.
"""

from __future__ import annotations

from typing import Any

from ..errors import (
    ControllerAddressForbiddenError,
    ControllerDocumentInvalidError,
    ControllerDocumentNotFoundError,
    ControllerDocumentUnavailableError,
    ControllerURLRefusedError,
)
from ..fetch import URLRefusedError, parse_https_url
from .web import FetchErrorKinds, WebLocation, WebMethod

__all__ = ["CONTROLLER_ERRORS", "ControllerDocumentMethod", "controller_location"]

CONTROLLER_ERRORS = FetchErrorKinds(
    "issuer URL",
    ControllerAddressForbiddenError,
    ControllerDocumentNotFoundError,
    ControllerDocumentInvalidError,
    ControllerDocumentUnavailableError,
)


def controller_location(url: str) -> WebLocation:
    """Where the controller document of ``url`` is fetched from: the URL itself.

    Raises ``ControllerURLRefusedError`` unless ``url`` is an https URL vcgate may fetch, in
    canonical form, so that the policy's entry and the credential's issuer are the same string.
    """
    try:
        target = parse_https_url(url)
    except URLRefusedError as exc:
        raise ControllerURLRefusedError(f"issuer URL {url[:80]!r}: {exc.message}") from exc
    canonical = target.url
    if target.path == "/" and not url.endswith("/"):
        canonical = canonical[:-1]  # https://issuer.example names the document at /
    if url != canonical:
        raise ControllerURLRefusedError(
            f"issuer URL {url[:80]!r} is not in canonical form; write it as {canonical[:80]!r} "
            "(lower-case host, no default port)"
        )
    return target


class ControllerDocumentMethod(WebMethod):
    """Fetches the controller document of an https issuer URL (module docstring).

    The keyword-only configuration is :class:`~vcgate.did.web.WebMethod`'s (``timeout``,
    ``max_bytes``, ``max_depth``, ``session``, ``resolve_host``, ``allow_networks``,
    ``verify``, ``allow_ports``). Registered under the name ``https``.
    """

    name = "https"
    _label, _document = "issuer URL host", "controller document"
    _accept = "application/cid, application/did+json;q=0.9, application/json;q=0.8"
    _user_agent = "vcgate-controller-document/0.1"
    _errors = CONTROLLER_ERRORS

    def resolve(self, did: str) -> dict[str, Any]:  # type: ignore[override]
        """Fetch and return the raw JSON controller document served at the issuer URL ``did``."""
        return self._fetch(controller_location(did), f"the issuer URL {did[:80]!r}")
