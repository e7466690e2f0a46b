"""A fake OpenAI chat-completions upstream as bytes (JSON and server-sent events), honouring
the output cap it is given and reporting ``usage`` the way OpenAI does."""

from __future__ import annotations

import json
import random


def answer(body: bytes, *, rng: random.Random, prompt_tokens: int | None = None) -> tuple[bytes, int, int]:
    """(response bytes, prompt tokens, completion tokens) for a request ``body``.

    The prompt costs about a quarter of its bytes in tokens (never more than its bytes); the
    answer is at most ``max_tokens`` / ``max_completion_tokens`` (times ``n``) tokens.
    """
    req = json.loads(body)
    cap = req.get("max_completion_tokens", req.get("max_tokens", 10_000))
    n = req.get("n", 1)
    prompt = prompt_tokens if prompt_tokens is not None else max(1, len(body) // 4)
    completion = rng.randint(0, cap) * n
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if not req.get("stream"):
        doc = {"id": "chatcmpl-1", "object": "chat.completion", "model": req.get("model"),
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * completion},
                            "finish_reason": "stop"}], "usage": usage}
        return json.dumps(doc).encode(), prompt, completion
    include = (req.get("stream_options") or {}).get("include_usage") is True
    events = []
    for i in range(3):
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": {"content": f"part{i}"}, "finish_reason": None}]}
        if include:
            chunk["usage"] = None
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    if include:
        last = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
        events.append(b"data: " + json.dumps(last).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return b"".join(events), prompt, completion
