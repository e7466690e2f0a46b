"""Asking a real ``vcgate serve`` as NGINX's auth_request would (``/nginx/auth``)."""

from __future__ import annotations

import re

import requests

#: The original request NGINX describes: GET /v1/models at the audience http://127.0.0.1:9.
CALL = {"X-Original-Method": "GET", "X-Original-URI": "/v1/models", "Host": "127.0.0.1:9"}


def challenge_nonce(url: str) -> str:
    """A fresh nonce from the service's 401 challenge."""
    challenge = requests.get(url + "/nginx/auth", headers=CALL, timeout=10)
    return re.search(r'nonce="([^"]+)"', challenge.headers["WWW-Authenticate"]).group(1)


def ask(url: str, vp: str) -> requests.Response:
    """The service's decision on the call with ``Authorization: VP <vp>``."""
    return requests.get(url + "/nginx/auth", headers={**CALL, "Authorization": f"VP {vp}"}, timeout=10)
