"""A tiny fake language model shared by the example servers: deterministic, no weights.

It answers in the OpenAI chat-completions shape (whole or streamed as server-sent events), so
the OpenAI SDK and any OpenAI-compatible client can talk to the examples.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

MODELS = ("llama-3-70b", "llama-3-8b", "gpt-4o")


def models_list() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "example"} for m in MODELS]}


def _reply_text(body: dict[str, Any], subject: str | None) -> str:
    last = ""
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            last = message["content"]
    who = f" for {subject}" if subject else ""
    return f"[{body.get('model')}{who}] you said: {last[:200]}"


def completion(body: dict[str, Any], subject: str | None) -> dict[str, Any]:
    text = _reply_text(body, subject)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())},
    }


def completion_stream(body: dict[str, Any], subject: str | None) -> Iterator[str]:
    """Server-sent events, one chunk per word, then ``data: [DONE]``."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())
    for i, word in enumerate(_reply_text(body, subject).split(" ")):
        chunk = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.get("model"),
            "choices": [{"index": 0, "delta": {"content": ("" if i == 0 else " ") + word}, "finish_reason": None}],
        }
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"
