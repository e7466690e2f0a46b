"""Pieces both adapters share: body parsing and JSON rendering. No framework imports."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

MAX_BODY = 1024 * 1024
TOO_LARGE = {"error": "too_large", "message": "the request body is larger than the gateway reads"}


def model_of(body: bytes, content_type: str | None) -> str | None:
    """The OpenAI ``model`` field of a JSON body, or None."""
    if not body or (content_type and "json" not in content_type.lower()):
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


def token_form(body: bytes, content_type: str | None) -> dict[str, Any]:
    """The token request's parameters from a form or JSON body (malformed -> empty)."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        if ctype == "application/json":
            data = json.loads(body or b"{}")
            return data if isinstance(data, dict) else {}
        parsed = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=False)
    except (ValueError, UnicodeDecodeError):
        return {}
    return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
