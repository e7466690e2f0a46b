"""The same OpenAI-compatible model server with Flask, protected by vcgate's WSGI middleware.

    VCGATE_POLICY=examples/policy.yaml flask --app examples.server_flask run
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flask import Flask, Response, jsonify, request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_backend import completion, completion_stream, models_list  # noqa: E402

from vcgate import Gate  # noqa: E402
from vcgate.middleware import VCGateWSGI  # noqa: E402

app = Flask("example-model-server")


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.get("/v1/models")
def list_models():
    return jsonify(models_list())


@app.post("/v1/chat/completions")
def chat():
    body = request.get_json(force=True)
    subject = request.headers.get("X-Vcgate-Subject")
    if body.get("stream"):
        return Response(completion_stream(body, subject), mimetype="text/event-stream")
    return jsonify(completion(body, subject))


def build(policy_path: str | None = None, **gate_options) -> Flask:
    gate = Gate.from_policy_file(policy_path or os.environ.get("VCGATE_POLICY", "examples/policy.yaml"), **gate_options)
    app.wsgi_app = VCGateWSGI(app.wsgi_app, gate=gate)
    return app


if os.environ.get("VCGATE_POLICY"):
    build()
