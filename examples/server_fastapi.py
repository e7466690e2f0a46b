"""An OpenAI-compatible model server (FastAPI) protected by vcgate's ASGI middleware.

    VCGATE_POLICY=examples/policy.yaml uvicorn examples.server_fastapi:app --port 8000

The two lines that matter are the last two: build the Gate from the policy file, wrap the app.
The app itself never sees a request the policy refused, and reads who is calling from the
grant headers (or ``request.scope["vcgate"]``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_backend import completion, completion_stream, models_list  # noqa: E402

from vcgate import Gate  # noqa: E402
from vcgate.middleware import VCGateMiddleware  # noqa: E402

api = FastAPI(title="example model server")


@api.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@api.get("/v1/models")
async def list_models() -> dict:
    return models_list()


@api.post("/v1/chat/completions")
async def chat(request: Request):
    body = await request.json()
    subject = request.headers.get("x-vcgate-subject")
    if body.get("stream"):
        return StreamingResponse(completion_stream(body, subject), media_type="text/event-stream")
    return JSONResponse(completion(body, subject))


def build(policy_path: str | None = None, **gate_options):
    gate = Gate.from_policy_file(policy_path or os.environ.get("VCGATE_POLICY", "examples/policy.yaml"), **gate_options)
    return VCGateMiddleware(api, gate=gate)


app = build() if os.environ.get("VCGATE_POLICY") else None
