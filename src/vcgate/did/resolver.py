"""The resolver: a registry of DID methods with a bounded TTL cache of parsed documents.

Each method is an object with a ``name`` ("key", "web", ...) and ``resolve(did) -> dict``
returning the raw document (doing whatever I/O it needs, with its own timeout and size cap).
The resolver validates the document (its ``id`` must be the DID), parses it once and caches
the parsed :class:`DIDDocument`, so a warm verification never touches the network.

Issuers that are https URLs rather than DIDs go the same way: the method registered as
``https`` (:class:`~vcgate.did.controller.ControllerDocumentMethod`) fetches their CID 1.0
controller document, which is parsed under that specification's rules and cached like a
did:web document.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from ..errors import (
    ControllerDocumentInvalidError,
    DIDDocumentInvalidError,
    DIDMethodNotSupportedError,
    DIDResolutionError,
    InvalidDIDError,
    MalformedError,
    VCGateError,
)
from .document import DID, DIDDocument, VerificationMethod, is_controller_url, split_method_id

__all__ = ["DIDMethod", "Resolver"]


class DIDMethod(Protocol):
    """What a DID method plug-in provides."""

    name: str

    def resolve(self, did: DID) -> dict[str, Any]:
        """Return the raw DID document, or raise a ``DIDError``."""
        ...


def _web_method(options: Mapping[str, Any]) -> DIDMethod:
    from .web import WebMethod

    return WebMethod(**options)


def _controller_method(options: Mapping[str, Any]) -> DIDMethod:
    from .controller import ControllerDocumentMethod

    return ControllerDocumentMethod(**options)


class LazyMethod:
    """A DID method built (and its module imported) on its first DID, not when registered.

    Keeps optional, heavy methods (did:web pulls in ``requests``/``urllib3``) off the import
    path of a process that may never resolve one.
    """

    cacheable_forever = False

    def __init__(self, name: str, factory: Callable[[], DIDMethod]) -> None:
        self.name = name
        self._factory = factory
        self._method: DIDMethod | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._method is not None

    def resolve(self, did: DID) -> dict[str, Any]:
        method = self._method
        if method is None:
            with self._lock:
                if self._method is None:
                    self._method = self._factory()
                method = self._method
        return method.resolve(did)


class Resolver:
    """Routes each DID to its method and caches parsed documents.

    ``ttl`` bounds how long a fetched document (did:web, ...) is trusted; methods whose
    document is a pure function of the DID (``cacheable_forever = True``: did:key, did:jwk)
    stay cached until evicted. ``max_entries`` bounds memory whatever the traffic.
    """

    def __init__(
        self,
        methods: Iterable[DIDMethod] = (),
        *,
        ttl: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._methods: dict[str, DIDMethod] = {}
        for m in methods:
            self.register(m)
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, DIDDocument]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def default(cls, *, web_options: Mapping[str, Any] | None = None, **kwargs: Any) -> Resolver:
        """did:key, did:jwk, did:web and https issuer URLs (with vcgate's SSRF-safe fetcher).

        did:web and issuer URLs are registered lazily: their modules and the HTTP stack
        (``requests``) are imported on the first such identifier, so a gate that never meets
        one never loads them. ``web_options`` go to :class:`~vcgate.did.web.WebMethod` and
        :class:`~vcgate.did.controller.ControllerDocumentMethod`.
        """
        from .jwk import JWKMethod
        from .key import KeyMethod

        options = dict(web_options or {})
        return cls(
            [
                KeyMethod(),
                JWKMethod(),
                LazyMethod("web", lambda: _web_method(options)),
                LazyMethod("https", lambda: _controller_method(options)),
            ],
            **kwargs,
        )

    @classmethod
    def local(cls, **kwargs: Any) -> Resolver:
        """did:key and did:jwk only: no network at all."""
        from .jwk import JWKMethod
        from .key import KeyMethod

        return cls([KeyMethod(), JWKMethod()], **kwargs)

    def register(self, method: DIDMethod) -> None:
        """Add or replace the handler for ``method.name``."""
        self._methods[method.name] = method

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self._methods)

    def resolve(self, did: str) -> DIDDocument:
        """The parsed, validated document of ``did`` -- a DID, or an https issuer URL whose
        controller document is fetched -- from the cache when fresh."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(did)
            if hit is not None:
                if hit[0] > now:
                    self._cache.move_to_end(did)
                    return hit[1]
                del self._cache[did]
        controller = isinstance(did, str) and is_controller_url(did)
        if controller:
            value: str = did
            method = self._methods.get("https")
            if method is None:
                raise DIDMethodNotSupportedError(
                    "issuers that are URLs (controller documents) are not resolved here: enable network "
                    "resolution (vcgate verify --resolver default, VCGATE_DID_WEB=1)"
                )
            kind = "controller document"
        else:
            parsed = DID(did)
            value = parsed
            method = self._methods.get(parsed.method)
            if method is None:
                raise DIDMethodNotSupportedError(f"DID method {parsed.method!r} is not supported")
            kind = f"{parsed.method} DID"
        try:
            raw = method.resolve(value)  # type: ignore[arg-type]
        except VCGateError:
            raise
        except Exception as exc:  # a plug-in's bug must not escape as a 500
            raise DIDResolutionError(f"resolving {kind} failed: {type(exc).__name__}") from exc
        try:
            doc = DIDDocument.from_json(raw, expected_id=value, controller_document=controller)
        except DIDDocumentInvalidError:
            raise
        except (MalformedError, InvalidDIDError) as exc:  # a bad document is not the caller's bad DID
            invalid = ControllerDocumentInvalidError if controller else DIDDocumentInvalidError
            raise invalid(f"invalid {'controller' if controller else 'DID'} document for {value[:80]}: {exc.message}") from exc
        expires = float("inf") if getattr(method, "cacheable_forever", False) else now + self._ttl
        with self._lock:
            self._cache[value] = (expires, doc)
            self._cache.move_to_end(value)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return doc

    def invalidate(self, did: str | None = None) -> None:
        """Drop one cached document, or all of them."""
        with self._lock:
            if did is None:
                self._cache.clear()
            else:
                self._cache.pop(did, None)

    def verification_method(self, did_url: str, purpose: str) -> VerificationMethod:
        """Dereference ``did#fragment`` (or ``https://controller#fragment``) and check the
        controller authorises it for ``purpose``."""
        did, fragment = split_method_id(did_url)
        doc = self.resolve(did)
        if fragment is None:
            raise MalformedError("a verification method reference needs a #fragment")
        return doc.method_for(f"{did}#{fragment}", purpose)
