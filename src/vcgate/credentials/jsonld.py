"""JSON-LD for Data Integrity: bundled, pinned contexts and RDF Dataset Canonicalization.

The JSON-LD processor is pyld (RDFC-1.0, published as URDNA2015 in pyld). Its document loader
here serves only the contexts bundled in ``vcgate/credentials/contexts`` (SHA-256 pinned at
load): canonicalising never touches the network, and an unknown context URL is a refusal,
not a download.

Inline ``@context`` objects are processed (the W3C suites require it), but they can remap a
term so that the signed data differs from what the JSON seems to say. :func:`contexts_pinned`
tells whether every context of a document is a bundled URL; the gate authorises only on
those (``DataIntegrityResult.contexts_pinned``).

"Safe mode" (Data Integrity 1.0 section 4.3): a property the contexts do not define would be
dropped silently by expansion, and an undefined ``type`` becomes a relative IRI that RDF
conversion drops; both would be unsigned data, so both are refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from typing import Any

from ..errors import ContextNotAllowedError, MalformedError, TokenTooLargeError, VCGateError

__all__ = ["BUNDLED_CONTEXTS", "ContextLoader", "canonize", "contexts_pinned", "iter_contexts"]

#: URL -> (bundled file, SHA-256 of the file). Changing a file without its pin is refused.
BUNDLED_CONTEXTS: Mapping[str, tuple[str, str]] = {
    "https://www.w3.org/2018/credentials/v1": (
        "credentials-v1.jsonld",
        "00d7dd6d3ad8b920e3e550dd3a3d9090bffcac84cdbf943da6924b3e0a5c8bb8",
    ),
    "https://www.w3.org/ns/credentials/v2": (
        "credentials-v2.jsonld",
        "8a9f494a89ecc51db093e90e84713e07e84d6d9204364a9b3c7868b21751236f",
    ),
    "https://www.w3.org/ns/credentials/examples/v2": (
        "credentials-examples-v2.jsonld",
        "57393fbc69d6efb9b9b5dc9cb6b9880b0944360abfe2eaf459c9e58cf2279d7c",
    ),
    "https://w3id.org/security/data-integrity/v1": (
        "data-integrity-v1.jsonld",
        "b5d829bd09aa7c42abc6efa0c8ed7635313b5487f37ccfce3ecd149ca9418554",
    ),
    "https://w3id.org/security/data-integrity/v2": (
        "data-integrity-v2.jsonld",
        "0f77743daf5b4e8fc067fc5ba5b21044283053aa717fc6b0219843bed3b00363",
    ),
    "https://w3id.org/security/suites/ed25519-2020/v1": (
        "ed25519-signature-2020-v1.jsonld",
        "b9e1ab971fd8bf2c7553e0c4a9438e0b9450afde1ea1ca5b2492368b9f549588",
    ),
}

#: Canonicalisation is super-linear in blank nodes; bound the input it is asked to do.
DEFAULT_MAX_NODES = 2000
#: JSON objects in a document, counted before expansion: pyld re-applies a scoped context to
#: every object it covers, so expansion alone cost 3.5 s for 300 typed status entries and 38 s
#: for 1900 objects under an inline type-scoped context (red-team finding), before the node
#: count after expansion could refuse them. Credentials hold a few dozen.
DEFAULT_MAX_OBJECTS = 512


class ContextLoader:
    """A pyld document loader over the bundled contexts (read and checked once per instance)."""

    def __init__(self, contexts: Mapping[str, tuple[str, str]] = BUNDLED_CONTEXTS) -> None:
        from cachetools import LRUCache

        self._documents: dict[str, Any] = {}
        # Processed (resolved) contexts, per loader: processing the VCDM 2.0 context is most of
        # the cost of canonicalising a small credential (~90 ms -> a few ms). pyld's own cache
        # is module-level; cachetools' LRUCache is not thread-safe, hence the lock.
        self.resolved: Any = LRUCache(maxsize=64)
        self.lock = threading.Lock()
        folder = resources.files("vcgate.credentials") / "contexts"
        for url, (name, digest) in contexts.items():
            data = (folder / name).read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                raise ContextNotAllowedError(f"bundled context {name} does not match its pinned SHA-256")
            self._documents[url] = json.loads(data)

    @property
    def urls(self) -> frozenset[str]:
        return frozenset(self._documents)

    def __call__(self, url: str, options: Any = None) -> dict[str, Any]:
        document = self._documents.get(url)
        if document is None:
            raise ContextNotAllowedError(f"JSON-LD context {str(url)[:100]!r} is not bundled (no network)")
        return {"contextUrl": None, "documentUrl": url, "document": document}


def iter_contexts(value: Any, depth: int = 0) -> Iterator[Any]:
    """Every ``@context`` value of a JSON document, embedded ones included."""
    if depth > 64:
        raise TokenTooLargeError("the document nests too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "@context":
                yield from (item if isinstance(item, list) else [item])
            else:
                yield from iter_contexts(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from iter_contexts(item, depth + 1)


def contexts_pinned(document: Any, pinned: frozenset[str]) -> bool:
    """True when every ``@context`` in ``document`` is a URL in ``pinned`` (no inline context)."""
    return all(isinstance(ctx, str) and ctx in pinned for ctx in iter_contexts(document))


# pyld resolves relative IRIs against a base (its default is a real-looking example.org URL);
# resolving against this reserved name instead shows which IRIs were relative.
_RELATIVE_BASE = "https://relative-iri.vcgate.invalid/"


def _absolute(iri: Any) -> bool:
    return isinstance(iri, str) and ":" in iri and not iri.startswith(_RELATIVE_BASE)


def _check_expanded(node: Any, count: list[int], max_nodes: int) -> None:
    """Safe mode on the expanded form: every type and id is an absolute IRI; bounded size."""
    if isinstance(node, list):
        for item in node:
            _check_expanded(item, count, max_nodes)
        return
    if not isinstance(node, dict):
        return
    count[0] += 1
    if count[0] > max_nodes:
        raise TokenTooLargeError(f"the document has more than {max_nodes} JSON-LD nodes")
    for key, value in node.items():
        if key == "@type" and "@value" not in node:
            for t in value if isinstance(value, list) else [value]:
                if not _absolute(t):
                    raise MalformedError(f"the type {str(t)[:80]!r} is not defined by the document's contexts")
        elif key == "@id" and not _absolute(value):
            raise MalformedError(f"the identifier {str(value)[:80]!r} is not an absolute IRI")
        elif key != "@value":
            _check_expanded(value, count, max_nodes)


def _count_objects(document: Any, limit: int) -> None:
    count, stack = 0, [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += 1
            if count > limit:
                raise TokenTooLargeError(f"the document has more than {limit} JSON objects")
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))


def canonize(document: Mapping[str, Any], loader: Callable[..., Any], *, max_nodes: int = DEFAULT_MAX_NODES,
             max_objects: int = DEFAULT_MAX_OBJECTS) -> str:
    """RDFC-1.0 canonical N-Quads of a JSON-LD document, in safe mode (see the module doc)."""
    _count_objects(document, max_objects)
    # pyld is imported here: only Data Integrity needs it.
    from pyld import jsonld
    from pyld.context_resolver import ContextResolver

    dropped: list[str] = []
    processor = jsonld.JsonLdProcessor(on_property_dropped=lambda prop: dropped.append(str(prop)))
    # The loader's own resolved-context cache: pyld's default is shared module-level state.
    cache = getattr(loader, "resolved", None)
    lock = getattr(loader, "lock", None) or threading.Lock()
    if cache is None:
        from cachetools import LRUCache

        cache = LRUCache(maxsize=32)
    options = {"documentLoader": loader, "contextResolver": ContextResolver(cache, loader), "base": _RELATIVE_BASE}
    try:
        with lock:
            expanded = processor.expand(dict(document), options)
    except ContextNotAllowedError:
        raise
    except jsonld.JsonLdError as exc:
        cause = exc
        while cause is not None:  # the loader's refusal, wrapped by pyld
            if isinstance(cause, ContextNotAllowedError):
                raise cause from exc
            cause = cause.__cause__ or getattr(cause, "cause", None)
        raise MalformedError(f"invalid JSON-LD: {str(exc)[:200]}") from exc
    except (RecursionError, ValueError, TypeError, KeyError) as exc:
        raise MalformedError("invalid JSON-LD") from exc
    if dropped:
        raise MalformedError(f"the property {dropped[0][:80]!r} is not defined by the document's contexts")
    _check_expanded(expanded, [0], max_nodes)
    try:
        dataset = processor.to_rdf(expanded, {**options, "produceGeneralizedRdf": False})
        return _bounded_rdfc()().main(dataset, {"format": "application/n-quads"})
    except VCGateError:
        raise
    except (jsonld.JsonLdError, RecursionError, ValueError, TypeError, KeyError) as exc:
        raise MalformedError("the document cannot be canonicalised") from exc


#: Largest group of indistinguishable blank nodes one blank node may be related to: RDFC-1.0
#: tries every permutation of such a group (8! = 40320).
MAX_RELATED_GROUP = 8


@functools.cache  # one class, built on first use: pyld is imported lazily
def _bounded_rdfc() -> type:
    from pyld.canon import URDNA2015

    class BoundedRDFC(URDNA2015):  # type: ignore[misc]
        """RDFC-1.0 with a work bound, which pyld lacks (red-team finding: a 7-node blank-node
        clique, ~1 KB, took 37 s of CPU; 8 nodes, minutes). As rdf-canonize's default
        ``maxWorkFactor: 1``: Hash N-Degree Quads runs at most as many times per blank node as
        there are blank nodes left to distinguish; plus a cap on the permuted groups."""

        def __init__(self) -> None:
            super().__init__()
            self._calls: dict[str, int] = {}
            self._limit: int | None = None

        def hash_n_degree_quads(self, id_: str, issuer: Any) -> Any:
            if self._limit is None:  # step 6 starts: hash_to_blank_nodes holds the undistinguished
                self._limit = sum(len(ids) for ids in self.hash_to_blank_nodes.values())
            calls = self._calls.get(id_, 0) + 1
            if calls > self._limit + 1:
                raise TokenTooLargeError("the document's blank nodes are too costly to canonicalise")
            self._calls[id_] = calls
            return super().hash_n_degree_quads(id_, issuer)

        def create_hash_to_related(self, id_: str, issuer: Any) -> Any:
            related = super().create_hash_to_related(id_, issuer)
            if any(len(ids) > MAX_RELATED_GROUP for ids in related.values()):
                raise TokenTooLargeError("the document's blank nodes are too costly to canonicalise")
            return related

    return BoundedRDFC

