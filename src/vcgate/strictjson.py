"""Strict JSON for untrusted input: one parser for tokens, DID documents and status lists.

Refuses what lets two parsers read the same bytes differently (duplicate member names,
NaN/Infinity, non-UTF-8) and what costs unbounded work (nesting deeper than a limit).
"""

from __future__ import annotations

import json
from typing import Any

from .errors import MalformedError, TokenTooLargeError

__all__ = ["loads_strict", "DEFAULT_MAX_DEPTH", "json_equal", "is_json_number"]

DEFAULT_MAX_DEPTH = 32


def _pairs_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedError("duplicate member name in JSON")
    return obj


def _bad_constant(name: str) -> Any:
    raise MalformedError(f"{name} is not valid JSON")


def _depth(value: Any, limit: int) -> None:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise TokenTooLargeError(f"JSON nested deeper than {limit} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))


# One decoder, configured once: json.loads() with hooks would build a new one per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_no_duplicates, parse_constant=_bad_constant)


def loads_strict(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, what: str = "JSON") -> Any:
    """Parse UTF-8 JSON refusing duplicate names, NaN/Infinity and deep nesting."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError(f"{what} is not valid UTF-8") from exc
    try:
        value = _DECODER.decode(text)
    except RecursionError as exc:
        raise TokenTooLargeError(f"{what} is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError is a ValueError; MalformedError is not
        raise MalformedError(f"{what} is not valid JSON") from exc
    # Depth can only exceed the limit if there are more brackets than the limit: counting
    # them is a C-speed scan, so typical documents skip the walk entirely.
    if text.count("{") + text.count("[") > max_depth:
        _depth(value, max_depth)
    return value


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, "1" is not 1, 1 is 1.0 (claim constraints, attenuation)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def is_json_number(v: Any) -> bool:
    """A JSON number: an int or a float, never a boolean."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)
