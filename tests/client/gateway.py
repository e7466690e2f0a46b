"""A fake vcgate gateway for the client tests, following docs/protocol.md.

The real gateway is written elsewhere; this one is deliberately small but checks what the
client sends with vcgate's real verifiers: ``Verifier.verify_presentation`` (audience,
single-use nonce, signatures, holder binding), ``TokenIssuer`` / ``SessionVerifier``
(``at+jwt`` bound to the proof key, ``ath``, ``htm``/``htu``, ``jti`` replay).
It speaks through ``handle()``, driven by an ``httpx.MockTransport`` or by a WSGI server.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vcgate.credentials import Verifier
from vcgate.errors import (
    DPoPKeyMismatchError,
    NonceMismatchError,
    VCGateError,
)
from vcgate.keys import PrivateKey, b64url_decode
from vcgate.session import DPoPVerifier, SessionVerifier, TokenIssuer, TokenVerifier, www_authenticate

ALGS = ("EdDSA", "ES256", "ES256K")


class Clock:
    """A settable clock shared by the holder and the gateway."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def claims_of(jwt: str) -> dict[str, Any]:
    return json.loads(b64url_decode(jwt.split(".")[1]))


@dataclass
class Seen:
    """One request as the gateway saw it, and how it answered."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes
    status: int = 0
    outcome: str = ""

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def proof(self) -> dict[str, Any] | None:
        values = self.header("DPoP")
        return claims_of(values[0]) if values else None


@dataclass
class FakeGateway:
    base: str
    clock: Clock
    trusted_issuer: str
    token_lifetime: int = 300
    combine_challenges: bool = False
    log: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.audience = self.base
        self.token_endpoint = self.base + "/.well-known/vcgate/token"
        self.key = PrivateKey.generate("ES256")
        self.verifier = Verifier(clock=self.clock)
        self.issuer = TokenIssuer(key=self.key, issuer=self.base, lifetime=self.token_lifetime, clock=self.clock)
        self.proofs = DPoPVerifier(algorithms=ALGS, clock=self.clock)
        self.sessions = SessionVerifier(
            tokens=TokenVerifier(keys=[self.key.public_key], issuer=self.base, audience=self.base, clock=self.clock),
            proofs=self.proofs,
        )
        self.vp_nonces: dict[str, float] = {}
        self.tokens: list[str] = []

    # --- protocol pieces ------------------------------------------------------------------

    def _json(self, status: int, body: Any, extra: list[tuple[str, str]] = ()) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *extra]
        return status, headers, json.dumps(body).encode()

    def challenge(self, error: VCGateError | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
        nonce = secrets.token_urlsafe(16)
        self.vp_nonces[nonce] = self.clock() + 300
        vp = (
            f'VP realm="{self.audience}", nonce="{nonce}", token_endpoint="{self.token_endpoint}", '
            f'algs="{" ".join(ALGS)}"'
        )
        code = error.code if error is not None else "credential_required"
        if error is not None:
            vp += f', error="{error.code}", error_description="{error.message[:100].replace(chr(34), "")}"'
        dpop = www_authenticate(error if getattr(error, "oauth_error", None) else None, algorithms=ALGS)
        extra = [("WWW-Authenticate", f"{vp}, {dpop}")] if self.combine_challenges else [
            ("WWW-Authenticate", vp),
            ("WWW-Authenticate", dpop),
        ]
        body = {"error": code, "message": error.message if error else "a credential is required",
                "nonce": nonce, "token_endpoint": self.token_endpoint}
        return self._json(401, body, extra)

    def _consume_vp(self, vp_token: str) -> Any:
        try:
            nonce = claims_of(vp_token).get("nonce")
        except Exception as exc:
            raise NonceMismatchError("unreadable presentation") from exc
        expires = self.vp_nonces.pop(nonce, None) if isinstance(nonce, str) else None
        if expires is None or expires < self.clock():
            raise NonceMismatchError("the presentation's nonce was not issued here or is used up")
        return self.verifier.verify_presentation(vp_token, audience=self.audience, nonce=nonce)

    def _token(self, seen: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
        ctype = dict((k.lower(), v) for k, v in seen.headers).get("content-type", "")
        if ctype.startswith("application/json"):
            form = json.loads(seen.body or b"{}")
        else:
            form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
        vp_token = form.get("vp_token")
        if seen.method != "POST" or not isinstance(vp_token, str):
            seen.outcome = "malformed"
            return self._json(400, {"error": "malformed", "message": "POST vp_token"})
        try:
            # The DPoP proof first: a bad proof must not burn the presentation's nonce.
            proof = self.proofs.verify(seen.header("DPoP"), htm="POST", htu=self.token_endpoint)
            vp = self._consume_vp(vp_token)
            if vp.holder_key.thumbprint() != proof.jkt:
                raise DPoPKeyMismatchError("the proof key is not the holder's key")
        except VCGateError as exc:
            seen.outcome = exc.code
            return self.challenge(exc)
        issuers = {c.issuer for c in vp.credentials}
        if issuers != {self.trusted_issuer}:
            seen.outcome = "issuer_not_trusted"
            return self._json(403, {"error": "issuer_not_trusted", "message": "no rule trusts this issuer"})
        token = self.issuer.issue(
            subject=vp.holder, holder_jkt=proof.jkt, scopes=["chat"], audience=self.audience,
            credential_ids=[str(c.id) for c in vp.credentials],
        )
        self.tokens.append(token)
        seen.outcome = "token"
        body = {"access_token": token, "token_type": "DPoP", "expires_in": self.token_lifetime, "scope": "chat"}
        return self._json(200, body)

    def _resource(self, seen: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
        auth = seen.header("Authorization")
        if not auth:
            seen.outcome = "challenge"
            return self.challenge()
        try:
            if len(auth) == 1 and auth[0].lower().startswith("vp "):
                vp = self._consume_vp(auth[0][3:].strip())
                subject = vp.holder
                seen.outcome = "direct"
            else:
                session = self.sessions.verify(authorization=auth, dpop=seen.header("DPoP"), htm=seen.method, htu=seen.url)
                subject = session.token.subject
                seen.outcome = "session"
        except VCGateError as exc:
            seen.outcome = exc.code
            return self.challenge(exc)
        path = urlsplit(seen.url).path
        if path.endswith("/chat/completions"):
            model = json.loads(seen.body or b"{}").get("model", "m")
            body: Any = {
                "id": "chatcmpl-1", "object": "chat.completion", "created": int(self.clock()), "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"hello {subject}"}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            }
        else:
            body = {"ok": True, "subject": subject, "path": path, "mode": seen.outcome}
        return self._json(200, body)

    def handle(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        seen = Seen(method, url, headers, body)
        self.log.append(seen)
        if urlsplit(url).path == urlsplit(self.token_endpoint).path:
            status, out_headers, out_body = self._token(seen)
        else:
            status, out_headers, out_body = self._resource(seen)
        seen.status = status
        return status, out_headers, out_body

    # --- drivers ----------------------------------------------------------------------------

    def httpx_handler(self, request: Any) -> Any:
        import httpx

        status, headers, body = self.handle(request.method, str(request.url), list(request.headers.multi_items()), request.read())
        return httpx.Response(status, headers=headers, content=body)

    def wsgi_app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        headers = [(k[5:].replace("_", "-").title(), v) for k, v in environ.items() if k.startswith("HTTP_")]
        if environ.get("CONTENT_TYPE"):
            headers.append(("Content-Type", environ["CONTENT_TYPE"]))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        url = f"{self.base}{environ.get('PATH_INFO', '/')}"
        if environ.get("QUERY_STRING"):
            url += "?" + environ["QUERY_STRING"]
        status, out_headers, out_body = self.handle(environ["REQUEST_METHOD"], url, headers, body)
        start_response(f"{status} {'OK' if status == 200 else 'Refused'}", out_headers)
        return [out_body]
