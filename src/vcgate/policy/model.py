"""The policy file: its YAML schema, validation that names the line and the field, and the
compiled, immutable objects the engine evaluates.

Loading is strict on purpose. A policy decides who may call a model, so a typo must fail
loudly rather than silently widen or narrow access:

* YAML 1.2 core-schema scalars: only ``true``/``false`` are booleans (``off``, ``no`` and
  ``yes`` stay strings), no sexagesimal numbers, no timestamps, no octal surprises;
* no aliases (no "billion laughs", and every value is written where it applies), no tags
  other than the core ones, no merge keys, no duplicate keys;
* every mapping has a closed set of keys; unknown ones are errors with a suggestion.

Every problem found is reported, each as ``source:line:column: field: message``.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..did.document import DID
from ..errors import PolicyError, PolicyProblem, VCGateError
from ..strictjson import is_json_number, json_equal

__all__ = [
    "MAX_POLICY_BYTES",
    "STATUS_MODES",
    "ClaimConstraint",
    "Defaults",
    "DelegationRule",
    "DelegationSettings",
    "GrantSpec",
    "Match",
    "PolicyDocument",
    "Requirements",
    "RuleSpec",
    "Template",
    "TrustedIssuer",
    "compile_host_glob",
    "compile_path_glob",
    "compile_text_glob",
    "load_policy",
    "lookup_claim",
    "parse_duration",
]

#: Largest policy file accepted (a policy is a few KiB; this catches a wrong path fast).
MAX_POLICY_BYTES = 1024 * 1024
#: Stop collecting problems after this many: the first ones are what the author needs.
MAX_PROBLEMS = 50
STATUS_MODES = ("required", "fail-open", "off")
_MAX_DURATION = 100 * 366 * 86400
_MAX_NAME = 100

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"


# --- YAML: core schema, marks kept, aliases refused -------------------------------------------


class _AliasFound(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """A SafeLoader with YAML 1.2 core-schema scalar resolution that refuses aliases.

    The class owns its resolver table (set in the body, so ``add_implicit_resolver`` below
    never touches ``yaml.SafeLoader``'s shared one).
    """

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            raise _AliasFound(self.peek_event().start_mark)
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


for _tag, _pattern in (
    (_BOOL, r"(?:true|True|TRUE|false|False|FALSE)\Z"),
    (_NULL, r"(?:~|null|Null|NULL|)\Z"),
    (_INT, r"(?:[-+]?[0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)\Z"),
    (
        _FLOAT,
        r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z",
    ),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), None)


def _compose(text: str, source: str) -> Node | None:
    try:
        # The reader rejects control characters, a BOM in the middle etc. in its constructor.
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise PolicyError([_problem_at_offset(source, text, exc.position, _reader_message(exc))]) from exc
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    except _AliasFound as exc:
        raise PolicyError(
            [_problem_at(source, exc.mark, "", "YAML aliases (*name) are not supported: write each value out")]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        if exc.context_mark is not None and mark is not None and exc.context_mark.line != mark.line:
            what += f" (the construct opened at line {exc.context_mark.line + 1})"
        raise PolicyError([_problem_at(source, mark, "", f"YAML syntax error: {what}")]) from exc
    except yaml.reader.ReaderError as exc:
        raise PolicyError([_problem_at_offset(source, text, exc.position, _reader_message(exc))]) from exc
    except yaml.YAMLError as exc:
        raise PolicyError([PolicyProblem(source, None, None, "", f"YAML error: {exc}")]) from exc
    except RecursionError as exc:
        raise PolicyError([PolicyProblem(source, None, None, "", "the YAML is nested too deeply")]) from exc
    finally:
        loader.dispose()


def _reader_message(exc: yaml.reader.ReaderError) -> str:
    if exc.encoding == "unicode" and isinstance(exc.character, int):
        return (
            f"character U+{exc.character:04X} is not allowed in a policy file "
            "(no control characters but tab and line breaks)"
        )
    return "the policy file is not valid UTF-8 text"


def _problem_at_offset(source: str, text: str, offset: int, message: str) -> PolicyProblem:
    """A problem at a character offset of ``text`` (the YAML reader reports offsets, not lines)."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return PolicyProblem(source, line, column, "", message)


def _problem_at(source: str, mark: yaml.Mark | None, field: str, message: str) -> PolicyProblem:
    if mark is None:
        return PolicyProblem(source, None, None, field, message)
    return PolicyProblem(source, mark.line + 1, mark.column + 1, field, message)


# --- small value parsers ----------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"1h30m"`` -> seconds. Units: s, m, h, d, w.

    A bare number is refused: ``max_age: 30`` could mean seconds or days.
    """
    value = text.strip().lower()
    if not value or _DURATION_PART.sub("", value):
        raise ValueError(f"{text!r} is not a duration; use a number and a unit (s, m, h, d, w), e.g. 30d, 12h, 90m")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    if seconds <= 0:
        raise ValueError("the duration must be positive")
    if seconds > _MAX_DURATION:
        raise ValueError("the duration must be at most 100 years")
    return seconds


# Path globs are matched against the percent-decoded path, so they are written decoded.
# '?' and '[...]' are refused: '?' reads as a query string, and classes are rarely what a
# route needs; '*' (one segment) and '**' (any depth) are the whole language.
_PATH_GLOB_BAD = re.compile(r"[\x00-\x20\x7f?#\[\]{}\\%]")


@dataclass(frozen=True, slots=True)
class _PathGlob:
    text: str
    literal: str | None  # the glob has no wildcard: compare strings
    prefix: str  # every matching path starts with this
    regex: str | None


def compile_path_glob(glob: str) -> _PathGlob:
    """Check a path glob and translate it. ``*`` matches within one segment (at least one
    character when it is the whole segment), ``**`` matches any number of segments, and a
    trailing ``/**`` also matches the bare prefix (``/v1/**`` matches ``/v1``). Raises
    ``ValueError`` naming what is wrong."""
    if not glob.startswith("/"):
        raise ValueError("a path glob must start with '/'")
    bad = _PATH_GLOB_BAD.search(glob)
    if bad:
        char = bad.group()
        hint = {
            "?": "; paths are matched without the query string",
            "%": "; write the path decoded (it is matched after percent-decoding)",
        }.get(char, "; use '*' (one segment) or '**' (any depth)" if char in "[]{}" else "")
        raise ValueError(f"character {char!r} is not allowed in a path glob{hint}")
    segments = glob[1:].split("/")
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        if seg in (".", ".."):
            raise ValueError("dot segments ('.' and '..') are not allowed in a path glob")
        if seg == "" and i != last:
            raise ValueError("empty path segment ('//') in a path glob")
        if "**" in seg and seg != "**":
            raise ValueError("'**' must be a whole path segment, as in /v1/**")
    if "*" not in glob:
        return _PathGlob(glob, glob, glob, None)
    parts: list[str] = []
    for i, seg in enumerate(segments):
        if seg == "**":
            parts.append("(?:/.*)?" if i == last else "(?:/[^/]+)*")
        elif seg == "*":
            parts.append("/[^/]+")
        else:
            parts.append("/" + "[^/]*".join(re.escape(p) for p in seg.split("*")))
    star = glob.index("*")
    prefix = glob[:star]
    if glob[star : star + 2] == "**" and prefix.endswith("/"):
        prefix = prefix[:-1]
    return _PathGlob(glob, None, prefix, "".join(parts))


_HOST_GLOB = re.compile(r"[a-z0-9.*?-]+(?::(?:[0-9]{1,5}|\*))?")


def compile_host_glob(glob: str) -> re.Pattern[str]:
    """A host glob (``*.example.com``, ``api.example.com:8443``), matched case-insensitively."""
    text = glob.lower()
    if not _HOST_GLOB.fullmatch(text):
        raise ValueError("a host glob is a host name with '*' or '?' and an optional ':port'")
    return re.compile(fnmatch.translate(text))


_CLASS = re.compile(r"\[!?\]?[^\]]*\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def compile_text_glob(glob: str) -> re.Pattern[str]:
    """A case-sensitive fnmatch glob (``*``, ``?``, ``[seq]``) for model names and claims."""
    if not glob:
        raise ValueError("an empty glob matches nothing")
    if _CONTROL.search(glob):
        raise ValueError("control characters are not allowed in a glob")
    rest = _CLASS.sub("", glob)
    if "[" in rest or "]" in rest:
        raise ValueError("unbalanced '[' or ']' in a glob")
    return re.compile(fnmatch.translate(glob))


# --- claims -----------------------------------------------------------------------------------

#: "No such claim" / "not given" (distinct from a JSON null).
MISSING: Any = object()


def lookup_claim(claims: Any, path: tuple[str, ...]) -> Any:
    """Follow a dotted claim path; list elements by decimal index. ``MISSING`` if absent."""
    value = claims
    for seg in path:
        if type(value) is dict or isinstance(value, Mapping):
            value = value.get(seg, MISSING)
            if value is MISSING:
                return MISSING
        elif isinstance(value, list) and seg.isdigit() and int(seg) < len(value):
            value = value[int(seg)]
        else:
            return MISSING
    return value


same = json_equal  # JSON equality: true is not 1, "1" is not 1, 1 is 1.0
is_number = is_json_number


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


#: The value of ``contains: "$model"``: the request's model, not a literal.
MODEL = "$model"
#: What :meth:`ClaimConstraint.test` returns when it needs the model and the model is unknown.
NEEDS_MODEL = object()


@dataclass(frozen=True, slots=True)
class ClaimConstraint:
    """Constraints on one claim; every kind given must hold (they are ANDed)."""

    name: str
    path: tuple[str, ...]
    equals: Any = MISSING
    one_of: tuple[Any, ...] | None = None
    glob: re.Pattern[str] | None = None
    glob_text: str | None = None
    min: float | None = None
    max: float | None = None
    contains: Any = MISSING
    line: int | None = None

    @property
    def uses_model(self) -> bool:
        return self.contains is MODEL

    def test(self, claims: Mapping[str, Any], model: str | None, model_known: bool) -> str | object | None:
        """``None`` if the claim meets the constraint, else why not (a message), or
        :data:`NEEDS_MODEL` when only the request's unknown model can settle it."""
        value = lookup_claim(claims, self.path)
        if value is MISSING:
            return f"claim '{self.name}' is missing"
        if self.equals is not MISSING and not same(value, self.equals):
            return f"claim '{self.name}' is {_show(value)}, not {_show(self.equals)}"
        if self.one_of is not None and not any(same(value, v) for v in self.one_of):
            return f"claim '{self.name}' is {_show(value)}, not one of {_show(list(self.one_of))}"
        if self.glob is not None and not (isinstance(value, str) and self.glob.match(value)):
            return f"claim '{self.name}' is {_show(value)}, which does not match {self.glob_text!r}"
        if self.min is not None or self.max is not None:
            if not is_number(value):
                return f"claim '{self.name}' is {_show(value)}, not a number"
            if self.min is not None and value < self.min:
                return f"claim '{self.name}' is {value}, below the minimum {self.min}"
            if self.max is not None and value > self.max:
                return f"claim '{self.name}' is {value}, above the maximum {self.max}"
        if self.contains is not MISSING:
            if not isinstance(value, list):
                return f"claim '{self.name}' is {_show(value)}, not a list"
            wanted = self.contains
            if wanted is MODEL:
                if model is None:
                    return NEEDS_MODEL if not model_known else "the request names no model"
                wanted = model
            if not any(same(v, wanted) for v in value):
                return f"claim '{self.name}' does not contain {_show(wanted)}"
        return None


# --- grants -----------------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)|\$")
_SIMPLE_VARS = ("subject", "issuer", "holder", "rule", "model", "principal", "actors", "chain")
_CREDENTIAL_VARS = ("subject", "issuer", "holder", "claims", "principal", "actors", "chain")


@dataclass(frozen=True, slots=True)
class Template:
    """A grant header value: literal text and ``$variables`` (``$subject``, ``$issuer``,
    ``$holder``, ``$rule``, ``$model``, ``$claims.<path>``, and for delegation chains
    ``$principal``, ``$actors``, ``$chain``; ``${...}`` to delimit; ``$$`` for a literal
    ``$``). ``parts`` holds literal strings and variable tuples."""

    text: str
    parts: tuple[str | tuple[str, ...], ...]

    @property
    def variables(self) -> tuple[tuple[str, ...], ...]:
        return tuple(p for p in self.parts if isinstance(p, tuple))

    @classmethod
    def parse(cls, text: str) -> Template:
        parts: list[str | tuple[str, ...]] = []
        pos = 0
        for m in _VAR.finditer(text):
            if m.start() > pos:
                parts.append(text[pos : m.start()])
            pos = m.end()
            token = m.group()
            if token == "$$":
                parts.append("$")
                continue
            name = m.group(1) if m.group(1) is not None else m.group(2)
            if name is None:
                raise ValueError("a lone '$': write '$$' for a literal dollar sign")
            head, _, rest = name.partition(".")
            if head == "claims":
                path = tuple(rest.split(".")) if rest else ()
                if not path or any(not seg for seg in path):
                    raise ValueError(f"'${name}' names no claim; write $claims.<name>")
                parts.append(("claims", *path))
            elif head in _SIMPLE_VARS and not rest:
                parts.append((head,))
            else:
                known = ", ".join(f"${v}" for v in (*_SIMPLE_VARS, "claims.<name>"))
                raise ValueError(f"unknown variable '${name}' (known: {known})")
        if pos < len(text):
            parts.append(text[pos:])
        # Adjacent literals merged so rendering joins as few pieces as possible.
        merged: list[str | tuple[str, ...]] = []
        for p in parts:
            if isinstance(p, str) and merged and isinstance(merged[-1], str):
                merged[-1] = merged[-1] + p
            else:
                merged.append(p)
        return cls(text, tuple(merged))


_GRANT_HEADER = re.compile(r"x-vcgate-[a-z0-9-]*[a-z0-9]", re.I)
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


@dataclass(frozen=True, slots=True)
class GrantSpec:
    """What an allowing rule grants: headers to inject upstream and scopes."""

    headers: tuple[tuple[str, Template], ...] = ()
    scopes: tuple[str, ...] = ()


# --- the document -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    """An issuer whose credentials count, optionally only for some credential types.

    ``did`` is the issuer's identifier: a DID (policy key ``did``) or an https URL whose keys
    are in its controller document (policy key ``url``).
    """

    did: str
    types: frozenset[str] | None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Defaults:
    status: str = "required"
    max_credential_age: int | None = None
    holder_binding: bool = True


#: The most links a policy may allow (vcgate never walks a longer chain).
MAX_DELEGATION_DEPTH = 8


@dataclass(frozen=True, slots=True)
class DelegationSettings:
    """The top-level ``delegation:`` block (docs/delegation.md). Off unless the policy says so."""

    allowed: bool = False
    max_depth: int = 1
    types: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class DelegationRule:
    """A rule's ``require.delegation``: each given key overrides the top level's."""

    allowed: bool | None = None
    max_depth: int | None = None
    types: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """Which requests a rule applies to. ``None`` for a dimension means any."""

    methods: frozenset[str] | None = None
    paths: tuple[_PathGlob, ...] | None = None
    hosts: tuple[str, ...] | None = None
    host_regexes: tuple[re.Pattern[str], ...] = ()
    models: tuple[str, ...] | None = None
    model_regexes: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a credential must satisfy. ``None`` means "use the policy default"."""

    types: frozenset[str] = frozenset()
    issuers: frozenset[str] | None = None
    claims: tuple[ClaimConstraint, ...] = ()
    holder_binding: bool | None = None
    status: str | None = None
    max_age: int | None = None
    delegation: DelegationRule | None = None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    name: str
    allow: bool
    public: bool
    match: Match
    require: Requirements
    grants: GrantSpec
    line: int | None = None
    #: This rule's own ``limits:`` (policy/limits.py), applied after the top-level ones.
    limits: tuple[Any, ...] = ()

    @property
    def matches_model(self) -> bool:
        return self.match.models is not None

    @property
    def needs_body(self) -> bool:
        """The rule's match or requirements depend on the OpenAI ``model`` body field."""
        return self.matches_model or any(c.uses_model for c in self.require.claims)


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    source: str
    version: int
    audience: str
    trusted_issuers: tuple[TrustedIssuer, ...]
    defaults: Defaults
    rules: tuple[RuleSpec, ...]
    #: Top-level ``limits:`` and ``prices:`` (policy/limits.py: LimitSpec, PriceSpec).
    limits: tuple[Any, ...] = ()
    prices: tuple[Any, ...] = ()
    delegation: DelegationSettings = DelegationSettings()


# --- validation -------------------------------------------------------------------------------


class _TooMany(Exception):
    pass


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return {
        _STR: "a string",
        _INT: "an integer",
        _FLOAT: "a number",
        _BOOL: "a boolean",
        _NULL: "nothing (null)",
    }.get(node.tag, f"a value tagged {node.tag}")


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Checker:
    """Walks the node tree, collecting problems with their marks."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[PolicyProblem] = []

    def problem(self, node: Node | None, field: str, message: str) -> None:
        self.problems.append(_problem_at(self.source, node.start_mark if node is not None else None, field, message))
        if len(self.problems) >= MAX_PROBLEMS:
            raise _TooMany

    # -- shapes --

    def mapping(
        self, node: Node, field: str, keys: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, tuple[Node, Node]] | None:
        if not isinstance(node, MappingNode):
            self.problem(node, field, f"expected a mapping, found {_kind(node)}")
            return None
        out: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if not (isinstance(key, ScalarNode) and key.tag == _STR):
                self.problem(key, field, f"keys must be strings, found {_kind(key)}")
                continue
            name = key.value
            sub = f"{field}.{name}" if field else name
            if name in out:
                self.problem(key, sub, f"duplicate key '{name}' (first at line {_line(out[name][0])})")
                continue
            if name not in keys:
                close = difflib.get_close_matches(name, keys, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else f"; expected one of: {', '.join(keys)}"
                self.problem(key, sub, f"unknown key '{name}'{hint}")
                continue
            out[name] = (key, value)
        for name in required:
            if name not in out:
                self.problem(node, field, f"missing required key '{name}'")
        return out

    def sequence(self, node: Node, field: str, *, nonempty: bool = True) -> list[Node] | None:
        if not isinstance(node, SequenceNode):
            self.problem(node, field, f"expected a list, found {_kind(node)}")
            return None
        if nonempty and not node.value:
            self.problem(node, field, "must not be empty")
            return None
        return list(node.value)

    def scalar(self, node: Node, field: str) -> tuple[bool, Any]:
        """A scalar of any core type, constructed by the YAML 1.2 core rules."""
        if not isinstance(node, ScalarNode):
            self.problem(node, field, f"expected a single value, found {_kind(node)}")
            return False, None
        tag, text = node.tag, node.value
        try:
            if tag == _STR:
                return True, text
            if tag == _BOOL:
                return True, text.lower() == "true"
            if tag == _NULL:
                return True, None
            if tag == _INT:
                if text.startswith("0x"):
                    return True, int(text[2:], 16)
                if text.startswith("0o"):
                    return True, int(text[2:], 8)
                return True, int(text, 10)
            if tag == _FLOAT:
                lowered = text.lower()
                if lowered.endswith(".inf"):
                    return True, -math.inf if lowered.startswith("-") else math.inf
                if lowered == ".nan":
                    return True, math.nan
                return True, float(text)
        except ValueError:
            self.problem(node, field, f"{text[:40]!r} is not a valid {tag.rsplit(':', 1)[-1]}")
            return False, None
        self.problem(node, field, f"YAML tags such as {tag!r} are not supported")
        return False, None

    def string(self, node: Node, field: str, *, max_len: int = 4096) -> str | None:
        if not (isinstance(node, ScalarNode) and node.tag == _STR):
            self.problem(node, field, f"expected a string, found {_kind(node)}")
            return None
        if not node.value:
            self.problem(node, field, "must not be empty")
            return None
        if len(node.value) > max_len:
            self.problem(node, field, f"longer than {max_len} characters")
            return None
        if _CONTROL.search(node.value):
            self.problem(node, field, "control characters are not allowed")
            return None
        return str(node.value)

    def unique_name(
        self, node: Node, field: str, names: dict[str, int], pattern: re.Pattern[str], rule: str, *, what: str,
        max_len: int = _MAX_NAME,
    ) -> str | None:
        """A name matching ``pattern`` (``rule`` says how, when not) that ``names`` has not
        seen (``what``: "rule", "limit"); recorded in ``names`` with its line."""
        name = self.string(node, field, max_len=max_len)
        if name is not None and not pattern.fullmatch(name):
            self.problem(node, field, rule)
            return None
        if name is not None:
            if name in names:
                self.problem(node, field, f"duplicate {what} name '{name}' (first at line {names[name]})")
                return None
            names[name] = _line(node)
        return name

    def boolean(self, node: Node, field: str) -> bool | None:
        if not (isinstance(node, ScalarNode) and node.tag == _BOOL):
            shown = f" {node.value!r}" if isinstance(node, ScalarNode) else ""
            self.problem(node, field, f"expected true or false, found {_kind(node)}{shown}")
            return None
        return node.value.lower() == "true"

    def strings(self, node: Node, field: str) -> list[tuple[Node, str]] | None:
        items = self.sequence(node, field)
        if items is None:
            return None
        out = []
        for i, item in enumerate(items):
            value = self.string(item, f"{field}[{i}]")
            if value is not None:
                out.append((item, value))
        return out

    def duration(self, node: Node, field: str) -> int | None:
        if isinstance(node, ScalarNode) and node.tag in (_INT, _FLOAT):
            self.problem(node, field, f"{node.value!r} has no unit; write e.g. 30d, 12h, 90m or 45s")
            return None
        text = self.string(node, field)
        if text is None:
            return None
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.problem(node, field, str(exc))
            return None

    def status_mode(self, node: Node, field: str) -> str | None:
        text = self.string(node, field)
        if text is None:
            return None
        if text not in STATUS_MODES:
            close = difflib.get_close_matches(text, STATUS_MODES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            self.problem(node, field, f"unknown status mode {text!r}: use required, fail-open or off{hint}")
            return None
        return text


_TOP_KEYS = ("version", "audience", "trusted_issuers", "defaults", "delegation", "rules", "limits", "prices")
_ISSUER_KEYS = ("did", "url", "types", "name")
_DEFAULT_KEYS = ("status", "max_credential_age", "holder_binding")
_RULE_KEYS = ("name", "description", "match", "allow", "public", "require", "grants", "limits")
_MATCH_KEYS = ("methods", "paths", "hosts", "models")
_REQUIRE_KEYS = ("types", "issuers", "claims", "holder_binding", "status", "max_age", "delegation")
_DELEGATION_KEYS = ("allowed", "max_depth", "types")
_CONSTRAINT_KEYS = ("equals", "one_of", "glob", "min", "max", "contains")
_GRANT_KEYS = ("headers", "scopes")
_METHOD = re.compile(r"[A-Za-z]{1,20}")
_RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_CLAIM_SEGMENT = re.compile(r"[^\s.$]+")
_TYPE_NAME = re.compile(r"[^\s]+")


def load_policy(text: str, source: str = "policy.yaml") -> PolicyDocument:
    """Parse and validate a policy file; raise :class:`PolicyError` listing every problem."""
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError([PolicyProblem(source, None, None, "", f"larger than {MAX_POLICY_BYTES} bytes")])
    root = _compose(text, source)
    if root is None:
        raise PolicyError([PolicyProblem(source, 1, 1, "", "the policy file is empty")])
    checker = _Checker(source)
    try:
        document = _document(checker, root)
    except _TooMany:
        document = None
    if checker.problems or document is None:
        raise PolicyError(checker.problems)
    return document


def _document(c: _Checker, root: Node) -> PolicyDocument | None:
    top = c.mapping(root, "", _TOP_KEYS, required=("version", "audience", "trusted_issuers", "rules"))
    if top is None:
        return None
    version: int | None = None
    if "version" in top:
        node = top["version"][1]
        if not (isinstance(node, ScalarNode) and node.tag == _INT):
            c.problem(node, "version", f"expected the integer 1, found {_kind(node)}")
        elif node.value != "1":
            c.problem(node, "version", f"unsupported policy version {node.value}; this vcgate reads version 1")
        else:
            version = 1
    audience = _audience(c, top["audience"][1]) if "audience" in top else None
    issuers = _issuers(c, top["trusted_issuers"][1]) if "trusted_issuers" in top else None
    defaults = _defaults(c, top["defaults"][1]) if "defaults" in top else Defaults()
    trusted = {i.did for i in issuers} if issuers is not None else None
    limits, prices = _top_limits(c, top)
    rules = _rules(c, top["rules"][1], trusted) if "rules" in top else None
    delegation = DelegationSettings()
    if "delegation" in top:
        spec = _delegation(c, top["delegation"][1], "delegation")
        if spec is None:
            return None
        # Writing the block turns delegation on unless it says `allowed: false`.
        delegation = DelegationSettings(
            allowed=spec.allowed is not False,
            max_depth=spec.max_depth if spec.max_depth is not None else 1,
            types=spec.types,
        )
    if version is None or audience is None or issuers is None or defaults is None or rules is None:
        return None
    if limits is None or prices is None:
        return None
    _check_priced(c, limits, rules, prices)
    return PolicyDocument(
        c.source, version, audience, tuple(issuers), defaults, tuple(rules), limits, prices, delegation=delegation
    )


# --- limits (the schema itself is in policy/limits.py) -------------------------------------


def _top_limits(c: _Checker, top: dict[str, tuple[Node, Node]]) -> tuple[tuple[Any, ...] | None, tuple[Any, ...] | None]:
    from .limits import parse_limits, parse_prices

    c.limit_names = {}  # type: ignore[attr-defined]  # limit names are unique across the file
    prices = parse_prices(c, top["prices"][1]) if "prices" in top else ()
    limits = parse_limits(c, top["limits"][1], "limits", c.limit_names) if "limits" in top else ()  # type: ignore[attr-defined]
    return limits, prices


def _rule_limits(c: _Checker, spec: dict[str, tuple[Node, Node]], field: str, public: bool | None) -> tuple[Any, ...] | None:
    if "limits" not in spec:
        return ()
    from .limits import parse_limits

    return parse_limits(c, spec["limits"][1], f"{field}.limits", c.limit_names, public=bool(public))  # type: ignore[attr-defined]


def _check_priced(c: _Checker, limits: tuple[Any, ...], rules: list[RuleSpec], prices: tuple[Any, ...]) -> None:
    from .limits import check_priced

    check_priced(c, [*limits, *(spec for rule in rules for spec in rule.limits)], prices)


def _delegation(c: _Checker, node: Node, field: str) -> DelegationRule | None:
    """``delegation:`` (top level) or ``require.delegation:`` -- the same three keys."""
    spec = c.mapping(node, field, _DELEGATION_KEYS)
    if spec is None:
        return None
    ok = True
    allowed = c.boolean(spec["allowed"][1], f"{field}.allowed") if "allowed" in spec else None
    if "allowed" in spec and allowed is None:
        ok = False
    max_depth = None
    if "max_depth" in spec:
        dnode = spec["max_depth"][1]
        good, value = c.scalar(dnode, f"{field}.max_depth")
        if not good:
            ok = False
        elif type(value) is not int or not 1 <= value <= MAX_DELEGATION_DEPTH:
            c.problem(dnode, f"{field}.max_depth", f"expected an integer from 1 to {MAX_DELEGATION_DEPTH}, found {value!r}")
            ok = False
        else:
            max_depth = value
    types = None
    if "types" in spec:
        values = c.strings(spec["types"][1], f"{field}.types")
        if values is None:
            ok = False
        else:
            types = frozenset(v for _, v in values)
    return DelegationRule(allowed, max_depth, types) if ok else None


def _audience(c: _Checker, node: Node) -> str | None:
    text = c.string(node, "audience")
    if text is None:
        return None
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("https", "http") and bool(parts.hostname) and not parts.fragment
    except ValueError:
        ok = False
    if not ok:
        c.problem(node, "audience", f"{text[:80]!r} is not the gateway's URL (https://host[:port][/path])")
        return None
    return text


def _issuers(c: _Checker, node: Node) -> list[TrustedIssuer] | None:
    items = c.sequence(node, "trusted_issuers")
    if items is None:
        return None
    out: list[TrustedIssuer] = []
    seen: dict[str, int] = {}
    ok = True
    for i, item in enumerate(items):
        field = f"trusted_issuers[{i}]"
        if isinstance(item, ScalarNode) and item.tag == _STR:
            c.problem(item, field, "expected a mapping like {did: did:key:...}; write the DID under 'did'")
            ok = False
            continue
        spec = c.mapping(item, field, _ISSUER_KEYS)
        if spec is not None and ("did" in spec) == ("url" in spec):
            c.problem(item, field, "give the issuer as exactly one of 'did' (a DID) or 'url' (an https issuer URL)")
            spec = None
        if spec is None:
            ok = False
            continue
        key = "did" if "did" in spec else "url"
        did_node = spec[key][1]
        did = c.string(did_node, f"{field}.{key}")
        if did is not None:
            try:
                if key == "did":
                    did = str(DID(did))
                else:
                    from ..did.controller import controller_location  # only for policies naming URLs

                    controller_location(did)
            except VCGateError as exc:
                why = f"{did[:80]!r} is not a DID (did:<method>:<id>)" if key == "did" else exc.message
                c.problem(did_node, f"{field}.{key}", why)
                did = None
        if did is not None and did in seen:
            c.problem(did_node, f"{field}.{key}", f"issuer {did[:80]} is listed twice (first at line {seen[did]})")
            did = None
        if "name" in spec:
            c.string(spec["name"][1], f"{field}.name")
        types: frozenset[str] | None = None
        if "types" in spec:
            values = c.strings(spec["types"][1], f"{field}.types")
            types = frozenset(v for _, v in values) if values is not None else None
            if values is None:
                ok = False
        if did is None:
            ok = False
            continue
        seen[did] = _line(did_node)
        out.append(TrustedIssuer(did, types, _line(item)))
    return out if ok else None


def _defaults(c: _Checker, node: Node) -> Defaults | None:
    spec = c.mapping(node, "defaults", _DEFAULT_KEYS)
    if spec is None:
        return None
    status = c.status_mode(spec["status"][1], "defaults.status") if "status" in spec else "required"
    age = (
        c.duration(spec["max_credential_age"][1], "defaults.max_credential_age")
        if "max_credential_age" in spec
        else None
    )
    binding = c.boolean(spec["holder_binding"][1], "defaults.holder_binding") if "holder_binding" in spec else True
    if status is None or binding is None or ("max_credential_age" in spec and age is None):
        return None
    return Defaults(status, age, binding)


def _rules(c: _Checker, node: Node, trusted: set[str] | None) -> list[RuleSpec] | None:
    items = c.sequence(node, "rules")
    if items is None:
        return None
    out: list[RuleSpec] = []
    names: dict[str, int] = {}
    ok = True
    for i, item in enumerate(items):
        rule = _rule(c, item, f"rules[{i}]", trusted, names)
        if rule is None:
            ok = False
        else:
            out.append(rule)
    return out if ok else None


def _peek_name(node: Node) -> str | None:
    """The rule's name as written, to label every problem in the rule (even an earlier key's)."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == "name" and isinstance(value, ScalarNode) and value.tag == _STR:
                text = str(value.value)
                if text and len(text) <= 60 and not _CONTROL.search(text):
                    return text
    return None


def _rule(c: _Checker, node: Node, field: str, trusted: set[str] | None, names: dict[str, int]) -> RuleSpec | None:
    peeked = _peek_name(node)
    if peeked is not None:
        field = f"{field} ({peeked})"
    spec = c.mapping(node, field, _RULE_KEYS, required=("name", "match"))
    if spec is None:
        return None
    ok = True
    name = None
    if "name" in spec:
        name = c.unique_name(spec["name"][1], f"{field}.name", names, _RULE_NAME,
                             "rule names are letters, digits and _ . : - (starting with a letter or digit)", what="rule")
    if "description" in spec:
        c.string(spec["description"][1], f"{field}.description")
    allow = c.boolean(spec["allow"][1], f"{field}.allow") if "allow" in spec else True
    public = c.boolean(spec["public"][1], f"{field}.public") if "public" in spec else False
    match = _match(c, spec["match"][1], f"{field}.match") if "match" in spec else None
    require = _require(c, spec["require"][1], f"{field}.require", trusted) if "require" in spec else Requirements()
    grants = _grants(c, spec["grants"][1], f"{field}.grants") if "grants" in spec else GrantSpec()
    limits = _rule_limits(c, spec, field, public)
    if allow is False:
        for key in ("require", "grants", "public", "limits"):
            if key in spec:
                c.problem(spec[key][0], f"{field}.{key}", f"a deny rule (allow: false) takes no '{key}'")
                ok = False
    if public and "require" in spec:
        c.problem(spec["require"][0], f"{field}.require", "a public rule (public: true) takes no 'require'")
        ok = False
    if public and grants is not None:
        for header, template in grants.headers:
            for var in template.variables:
                if var[0] in _CREDENTIAL_VARS:
                    c.problem(
                        spec["grants"][0],
                        f"{field}.grants.headers.{header}",
                        f"a public rule has no credential, so '${'.'.join(var)}' has no value",
                    )
                    ok = False
    if (not ok or name is None or allow is None or public is None or match is None or require is None
            or grants is None or limits is None):
        return None
    return RuleSpec(name, allow, public, match, require, grants, _line(node), limits)


def _match(c: _Checker, node: Node, field: str) -> Match | None:
    spec = c.mapping(node, field, _MATCH_KEYS)
    if spec is None:
        return None
    ok = True
    methods = paths = hosts = models = None
    host_res: list[re.Pattern[str]] = []
    model_res: list[re.Pattern[str]] = []
    if "methods" in spec:
        values = c.strings(spec["methods"][1], f"{field}.methods")
        if values is None:
            ok = False
        else:
            methods = set()
            for i, (vnode, value) in enumerate(values):
                if value != "*" and not _METHOD.fullmatch(value):
                    c.problem(vnode, f"{field}.methods[{i}]", f"{value[:40]!r} is not an HTTP method")
                    ok = False
                methods.add(value.upper())
            if "*" in methods:
                methods = None  # "any method", same as leaving the key out
    if "paths" in spec:
        values = c.strings(spec["paths"][1], f"{field}.paths")
        if values is None:
            ok = False
        else:
            paths = []
            for i, (vnode, value) in enumerate(values):
                try:
                    paths.append(compile_path_glob(value))
                except ValueError as exc:
                    c.problem(vnode, f"{field}.paths[{i}]", f"bad path glob {value[:80]!r}: {exc}")
                    ok = False
    if "hosts" in spec:
        values = c.strings(spec["hosts"][1], f"{field}.hosts")
        if values is None:
            ok = False
        else:
            hosts = []
            for i, (vnode, value) in enumerate(values):
                try:
                    host_res.append(compile_host_glob(value))
                    hosts.append(value.lower())
                except ValueError as exc:
                    c.problem(vnode, f"{field}.hosts[{i}]", f"bad host glob {value[:80]!r}: {exc}")
                    ok = False
    if "models" in spec:
        values = c.strings(spec["models"][1], f"{field}.models")
        if values is None:
            ok = False
        else:
            models = []
            for i, (vnode, value) in enumerate(values):
                try:
                    model_res.append(compile_text_glob(value))
                    models.append(value)
                except ValueError as exc:
                    c.problem(vnode, f"{field}.models[{i}]", f"bad model glob {value[:80]!r}: {exc}")
                    ok = False
    if not ok:
        return None
    return Match(
        frozenset(methods) if methods is not None else None,
        tuple(paths) if paths is not None else None,
        tuple(hosts) if hosts is not None else None,
        tuple(host_res),
        tuple(models) if models is not None else None,
        tuple(model_res),
    )


def _require(c: _Checker, node: Node, field: str, trusted: set[str] | None) -> Requirements | None:
    spec = c.mapping(node, field, _REQUIRE_KEYS)
    if spec is None:
        return None
    ok = True
    types: frozenset[str] = frozenset()
    issuers: frozenset[str] | None = None
    claims: list[ClaimConstraint] = []
    if "types" in spec:
        values = c.strings(spec["types"][1], f"{field}.types")
        if values is None:
            ok = False
        else:
            for i, (vnode, value) in enumerate(values):
                if not _TYPE_NAME.fullmatch(value):
                    c.problem(vnode, f"{field}.types[{i}]", "a credential type has no whitespace")
                    ok = False
            types = frozenset(v for _, v in values)
    if "issuers" in spec:
        values = c.strings(spec["issuers"][1], f"{field}.issuers")
        if values is None:
            ok = False
        else:
            for i, (vnode, value) in enumerate(values):
                if trusted is not None and value not in trusted:
                    try:
                        DID(value)
                        message = f"{value[:80]} is not in trusted_issuers (a rule can only narrow that list)"
                    except VCGateError:
                        message = f"{value[:80]!r} is not a DID"
                    c.problem(vnode, f"{field}.issuers[{i}]", message)
                    ok = False
            issuers = frozenset(v for _, v in values)
    if "claims" in spec:
        cnode = spec["claims"][1]
        if not isinstance(cnode, MappingNode):
            c.problem(cnode, f"{field}.claims", f"expected a mapping of claim names to constraints, found {_kind(cnode)}")
            ok = False
        else:
            seen: dict[str, int] = {}
            for key, value in cnode.value:
                if not (isinstance(key, ScalarNode) and key.tag == _STR and key.value):
                    c.problem(key, f"{field}.claims", f"claim names are strings, found {_kind(key)}")
                    ok = False
                    continue
                cfield = f"{field}.claims.{key.value}"
                if key.value in seen:
                    c.problem(key, cfield, f"duplicate claim '{key.value}' (first at line {seen[key.value]})")
                    ok = False
                    continue
                seen[key.value] = _line(key)
                constraint = _constraint(c, key.value, key, value, cfield)
                if constraint is None:
                    ok = False
                else:
                    claims.append(constraint)
    binding = c.boolean(spec["holder_binding"][1], f"{field}.holder_binding") if "holder_binding" in spec else None
    status = c.status_mode(spec["status"][1], f"{field}.status") if "status" in spec else None
    max_age = c.duration(spec["max_age"][1], f"{field}.max_age") if "max_age" in spec else None
    delegation = _delegation(c, spec["delegation"][1], f"{field}.delegation") if "delegation" in spec else None
    for key, value in (("holder_binding", binding), ("status", status), ("max_age", max_age), ("delegation", delegation)):
        if key in spec and value is None:
            ok = False
    if not ok:
        return None
    return Requirements(types, issuers, tuple(claims), binding, status, max_age, delegation)


def _literal(c: _Checker, node: Node, field: str) -> tuple[bool, Any]:
    """A constraint operand: a JSON scalar; a string starting with '$' must be escaped '$$'."""
    ok, value = c.scalar(node, field)
    if not ok:
        return False, None
    if isinstance(value, float) and not math.isfinite(value):
        c.problem(node, field, "must be a finite number")
        return False, None
    if isinstance(value, str) and value.startswith("$"):
        if value.startswith("$$"):
            return True, value[1:]
        c.problem(node, field, f"{value[:40]!r}: variables are only allowed as contains: \"$model\"; write '$$' for a literal '$'")
        return False, None
    return True, value


def _constraint(c: _Checker, name: str, key: Node, node: Node, field: str) -> ClaimConstraint | None:
    path = tuple(name.split("."))
    if not all(_CLAIM_SEGMENT.fullmatch(seg) for seg in path):
        c.problem(key, field, "a claim name is dot-separated segments without spaces or '$' (e.g. limits.rpm)")
        return None
    if not isinstance(node, MappingNode):
        c.problem(node, field, f"expected a constraint like {{equals: ...}}, found {_kind(node)}")
        return None
    spec = c.mapping(node, field, _CONSTRAINT_KEYS)
    if spec is None:
        return None
    if not spec:
        if not node.value:
            c.problem(node, field, f"empty constraint: give one of {', '.join(_CONSTRAINT_KEYS)}")
        return None
    ok = True
    kwargs: dict[str, Any] = {}
    if "equals" in spec:
        good, value = _literal(c, spec["equals"][1], f"{field}.equals")
        ok &= good
        kwargs["equals"] = value
    if "one_of" in spec:
        items = c.sequence(spec["one_of"][1], f"{field}.one_of")
        if items is None:
            ok = False
        else:
            values = []
            for i, item in enumerate(items):
                good, value = _literal(c, item, f"{field}.one_of[{i}]")
                ok &= good
                values.append(value)
            kwargs["one_of"] = tuple(values)
    if "glob" in spec:
        gnode = spec["glob"][1]
        text = c.string(gnode, f"{field}.glob")
        if text is None:
            ok = False
        else:
            try:
                kwargs["glob"] = compile_text_glob(text)
                kwargs["glob_text"] = text
            except ValueError as exc:
                c.problem(gnode, f"{field}.glob", f"bad glob {text[:80]!r}: {exc}")
                ok = False
    for bound in ("min", "max"):
        if bound in spec:
            bnode = spec[bound][1]
            good, value = c.scalar(bnode, f"{field}.{bound}")
            if good and not (is_number(value) and math.isfinite(value)):
                c.problem(bnode, f"{field}.{bound}", f"expected a finite number, found {_kind(bnode)}")
                good = False
            ok &= good
            kwargs[bound] = value
    if ok and kwargs.get("min") is not None and kwargs.get("max") is not None and kwargs["min"] > kwargs["max"]:
        c.problem(spec["min"][1], f"{field}.min", f"min {kwargs['min']} is greater than max {kwargs['max']}")
        ok = False
    if "contains" in spec:
        cnode = spec["contains"][1]
        if isinstance(cnode, ScalarNode) and cnode.tag == _STR and cnode.value == MODEL:
            kwargs["contains"] = MODEL
        else:
            good, value = _literal(c, cnode, f"{field}.contains")
            ok &= good
            kwargs["contains"] = value
    if not ok:
        return None
    return ClaimConstraint(name, path, line=_line(key), **kwargs)


def _grants(c: _Checker, node: Node, field: str) -> GrantSpec | None:
    spec = c.mapping(node, field, _GRANT_KEYS)
    if spec is None:
        return None
    ok = True
    headers: list[tuple[str, Template]] = []
    scopes: list[str] = []
    if "headers" in spec:
        hnode = spec["headers"][1]
        if not isinstance(hnode, MappingNode):
            c.problem(hnode, f"{field}.headers", f"expected a mapping of header names to values, found {_kind(hnode)}")
            ok = False
        else:
            seen: dict[str, int] = {}
            for key, value in hnode.value:
                hfield = f"{field}.headers.{key.value if isinstance(key, ScalarNode) else '?'}"
                if not (isinstance(key, ScalarNode) and key.tag == _STR and _GRANT_HEADER.fullmatch(key.value)):
                    c.problem(
                        key,
                        hfield,
                        "granted header names must start with X-Vcgate- (the gateway strips client-sent "
                        "x-vcgate-* headers, so only these cannot be spoofed)",
                    )
                    ok = False
                    continue
                lowered = key.value.lower()
                if lowered in seen:
                    c.problem(key, hfield, f"duplicate header (first at line {seen[lowered]}); names are case-insensitive")
                    ok = False
                    continue
                seen[lowered] = _line(key)
                text = c.string(value, hfield, max_len=1024)
                if text is None:
                    ok = False
                    continue
                try:
                    headers.append((key.value, Template.parse(text)))
                except ValueError as exc:
                    c.problem(value, hfield, str(exc))
                    ok = False
    if "scopes" in spec:
        values = c.strings(spec["scopes"][1], f"{field}.scopes")
        if values is None:
            ok = False
        else:
            for i, (vnode, value) in enumerate(values):
                if not _SCOPE.fullmatch(value):
                    c.problem(vnode, f"{field}.scopes[{i}]", "a scope is printable ASCII without spaces, '\"' or '\\'")
                    ok = False
                elif value not in scopes:
                    scopes.append(value)
    if not ok:
        return None
    return GrantSpec(tuple(headers), tuple(scopes))
