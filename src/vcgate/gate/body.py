"""Request bodies: the OpenAI ``model`` field and the token request's form, read once, here.

Both read untrusted bytes under the same limits (:data:`MAX_BODY` bytes, :data:`MAX_DEPTH`
levels of JSON nesting, strict UTF-8, no duplicate member names) through
:func:`vcgate.strictjson.loads_strict`, so hostile JSON costs bounded work and never raises
past this module (``RecursionError`` included).

The ``model`` is read **whatever the Content-Type says**: Starlette's and FastAPI's
``request.json()``, vLLM and most OpenAI-compatible servers parse the body without looking at
it, so a gate that trusted the Content-Type could be told "no model" while the upstream serves
one. When a rule depends on the model, a non-empty body must be a JSON object whose ``model``
is a string; anything else is refused (``body_invalid``, 400), never read as "no model".
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from ..errors import BodyInvalidError, MalformedError, TokenTooLargeError, VCGateError
from ..strictjson import loads_strict

__all__ = ["MAX_BODY", "MAX_DEPTH", "TOO_LARGE", "model_of", "token_form"]

#: The most body bytes the gate reads (and buffers) for one request.
MAX_BODY = 1024 * 1024
#: JSON nesting the gate parses; an OpenAI request is a few levels deep.
MAX_DEPTH = 64
#: Marker an adapter passes instead of the body when it held more than the limit.
TOO_LARGE: Any = type("TooLarge", (), {"__repr__": lambda self: "TOO_LARGE"})()
_MAX_FORM_FIELDS = 16


def model_of(body: bytes) -> str | None:
    """The ``model`` of an OpenAI-style JSON body; None for an empty body.

    Raises :class:`~vcgate.errors.BodyInvalidError` when the body is not a JSON object with a
    string ``model`` (bad JSON or UTF-8, nested deeper than :data:`MAX_DEPTH`, duplicate
    names, another JSON value, a missing or non-string ``model``).
    """
    if not body:
        return None
    try:
        data = loads_strict(body, max_depth=MAX_DEPTH, what="the request body")
    except VCGateError as exc:  # MalformedError / TokenTooLargeError: one answer for the client
        raise BodyInvalidError(f"{exc.message}; the policy needs its 'model' to decide", reason="unreadable") from exc
    if not isinstance(data, dict):
        raise BodyInvalidError("the request body is not a JSON object; the policy needs its 'model' to decide",
                               reason="not_an_object")
    model = data.get("model")
    if not isinstance(model, str):
        why = "names no 'model'" if model is None else "has a 'model' that is not a string"
        raise BodyInvalidError(f"the request body {why}; the policy needs it to decide", reason="no_model")
    return model


def token_form(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The token request's parameters: a JSON object (``application/json``) or a form.

    Raises :class:`~vcgate.errors.MalformedError` (400) for a body that is neither.
    """
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype == "application/json" or (ctype.startswith("application/") and ctype.endswith("+json")):
        try:
            data = loads_strict(body or b"{}", max_depth=MAX_DEPTH, what="the token request")
        except TokenTooLargeError as exc:  # too deep: malformed (400) as documented, not 413
            raise MalformedError(exc.message) from exc
        if not isinstance(data, dict):
            raise MalformedError("the token request is not a JSON object")
        return data
    try:
        text = body.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=_MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedError("the token request is not a form (application/x-www-form-urlencoded) or JSON") from exc
    form: dict[str, Any] = {}
    for k, v in pairs:
        if k in form:
            raise MalformedError(f"the token request repeats the parameter '{k[:40]}'")
        form[k] = v
    return form


def too_large(what: str = "the request body", *, limit: int = MAX_BODY) -> TokenTooLargeError:
    return TokenTooLargeError(f"{what} is larger than the gateway reads ({limit} bytes)")
