"""``requests`` auth for vcgate gateways."""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import Any

import requests
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar

from .flow import AuthState, ResponseView, Send, TokenRequest

__all__ = ["RequestsAuth"]


def _view(response: requests.Response) -> ResponseView:
    def values(name: str) -> list[str]:
        # urllib3 keeps each header field; requests joins repeats with ", ", which the
        # challenge parser reads back the same way.
        raw = getattr(response.raw, "headers", None)
        if raw is not None and hasattr(raw, "getlist"):
            return list(raw.getlist(name))
        value = response.headers.get(name)
        return [value] if value is not None else []

    return ResponseView(response.status_code, values, response.json)


class RequestsAuth(AuthBase):
    """Answers vcgate challenges for ``requests``; made by :meth:`vcgate.client.Holder.requests_auth`.

    The auth sets the headers of the first attempt and registers a response hook. On a
    401 the hook drives the same sans-I/O flow as the httpx auth: it sends the token request
    and the retried request through the connection adapter that carried the original (as
    requests' own ``HTTPDigestAuth`` does), each retry a copy of the original prepared
    request with its body rewound.
    """

    def __init__(self, state: AuthState) -> None:
        self._state = state

    @property
    def mode(self) -> str:
        return self._state.mode

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        flow = self._state.flow(r.method or "GET", r.url or "")
        step = next(flow)
        assert isinstance(step, Send)
        _apply(r, step)
        body_position: int | None = None
        if hasattr(r.body, "seek") and hasattr(r.body, "tell"):
            try:
                body_position = r.body.tell()  # type: ignore[union-attr]
            except OSError:
                body_position = None
        r.register_hook("response", functools.partial(self._on_response, flow, body_position))
        return r

    def _on_response(
        self,
        flow: Generator[Send | TokenRequest, ResponseView, None],
        body_position: int | None,
        response: requests.Response,
        **kwargs: Any,
    ) -> requests.Response:
        original = response.request
        last = response
        try:
            step = flow.send(_view(response))
        except StopIteration:
            return response
        send_kwargs = {k: v for k, v in kwargs.items() if k in ("timeout", "verify", "proxies", "cert", "stream")}
        history: list[requests.Response] = []
        while True:
            last.content  # noqa: B018 - drain, so the connection can be reused
            last.close()
            history.append(last)
            if isinstance(step, Send):
                prep = original.copy()
                if body_position is not None:
                    prep.body.seek(body_position)  # type: ignore[union-attr]
                jar = prep._cookies
                if jar is not None:  # cookies the 401 set go with the retry, as in HTTPDigestAuth
                    extract_cookies_to_jar(jar, last.request, last.raw)
                    prep.prepare_cookies(jar)
                _apply(prep, step)
                nxt = last.connection.send(prep, **send_kwargs)
            else:
                prep = requests.Request(
                    "POST", step.url, headers=dict(step.headers), data=dict(step.form)
                ).prepare()
                nxt = last.connection.send(prep, **{**send_kwargs, "stream": False})
            nxt.request = prep
            nxt.history = list(history)
            last = nxt
            try:
                step = flow.send(_view(nxt))
            except StopIteration:
                return last


def _apply(r: requests.PreparedRequest, step: Send) -> None:
    for name, value in step.headers.items():
        if value is None:
            r.headers.pop(name, None)
        else:
            r.headers[name] = value
