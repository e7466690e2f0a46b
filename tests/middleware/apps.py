"""The example apps the middleware tests wrap: they echo what they received."""

from __future__ import annotations

import json

from flask import Flask, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vcgate.middleware import VCGateMiddleware, VCGateWSGI


async def _echo(req: Request) -> JSONResponse:
    body = await req.body()
    decision = req.scope.get("vcgate")
    return JSONResponse({
        "headers": {k: v for k, v in req.headers.items() if k.startswith("x-vcgate-")},
        "body": body.decode(),
        "rule": decision.rule if decision else None,
        "subject": decision.subject if decision else None,
    })


def starlette_app(gate, **kw):
    routes = [Route(p, _echo, methods=["GET", "POST"]) for p in ("/healthz", "/v1/models", "/v1/chat/completions")]
    return VCGateMiddleware(Starlette(routes=routes), gate=gate, **kw)


def flask_app(gate, **kw):
    app = Flask("vcgate-test")

    @app.route("/healthz", methods=["GET"])
    @app.route("/v1/models", methods=["GET"])
    @app.route("/v1/chat/completions", methods=["POST"])
    def echo():
        decision = request.environ.get("vcgate.decision")
        return app.response_class(json.dumps({
            "headers": {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("x-vcgate-")},
            "body": request.get_data().decode(),
            "rule": decision.rule if decision else None,
            "subject": decision.subject if decision else None,
        }), mimetype="application/json")

    app.wsgi_app = VCGateWSGI(app.wsgi_app, gate=gate, **kw)
    return app
