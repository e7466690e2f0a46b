"""The agent side's sans-I/O flow: challenges, token requests and DPoP headers, no I/O.

:class:`AuthState` drives one request as a generator (:meth:`AuthState.flow`), as httpx's
``Auth.auth_flow`` does: it yields what to send (:class:`Send`, :class:`TokenRequest`) and is
sent back what came in (:class:`ResponseView`). The ``httpx`` and ``requests`` adapters
(``httpx_auth.py``, ``requests_auth.py``) only translate requests and responses; the
:class:`~vcgate.client.holder.Holder` only signs. This module imports neither of them.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from ..credentials.dcql import ASK_AGAIN_CODES
from ..errors import MalformedError, VCGateError
from ..keys import PrivateKey, b64url_decode
from ..strictjson import loads_strict

__all__ = [
    "AuthState",
    "Challenge",
    "ProtocolError",
    "ResponseView",
    "Send",
    "Signer",
    "TokenRequest",
    "origin_of",
    "parse_challenges",
]

MODES = ("session", "direct")


class ProtocolError(MalformedError):
    """The gateway's answer cannot be acted on: a malformed or untrusted challenge, or a
    token response that is not a DPoP access token. Raised from the HTTP client's ``send``."""

    default_message = "the gateway's answer does not follow the vcgate protocol"


# --- WWW-Authenticate (RFC 7235 section 4.1 / RFC 9110 section 11.6.1) -----------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_WS = re.compile(r"[ \t]*")
_SCHEME = re.compile(_TOKEN)
# A parameter value is a token or a quoted string; an unquoted URL (not a token, strictly)
# is tolerated so a sloppy gateway still works.
_PARAM = re.compile(rf"({_TOKEN})[ \t]*=[ \t]*({_QUOTED}|[^\s,\"]+)")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: scheme (lower case) and parameters
    (names lower case, values unquoted)."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenges(values: str | Iterable[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` field values into challenges.

    Accepts several header fields and several comma-separated challenges in one field,
    quoted strings with escapes and commas inside, and ``token68`` challenges. A repeated
    parameter name in one challenge (RFC 7235 forbids it) raises :class:`ProtocolError`:
    two ``nonce`` values cannot both be answered. Unparseable trailing text is ignored.
    """
    if isinstance(values, str):
        values = [values]
    out: list[Challenge] = []
    for text in values:
        pos, end = 0, len(text)
        while pos < end:
            while pos < end and text[pos] in " \t,":
                pos += 1
            m = _SCHEME.match(text, pos)
            if m is None:
                break  # garbage: keep what parsed so far
            scheme, pos = m.group(0).lower(), m.end()
            params: dict[str, str] = {}
            token68: str | None = None
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            t68 = _TOKEN68.match(text, pos)
            if t68 is not None:
                token68, pos = t68.group(0), t68.end()
            else:
                while pos < end:
                    p = _PARAM.match(text, pos)
                    if p is None:
                        break  # the next challenge's scheme
                    name = p.group(1).lower()
                    if name in params:
                        raise ProtocolError(f"the {scheme!r} challenge repeats the parameter {name!r}")
                    params[name] = _unquote(p.group(2))
                    pos = _WS.match(text, p.end()).end()  # type: ignore[union-attr]
                    if pos < end and text[pos] == ",":
                        pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
                        while pos < end and text[pos] in " \t,":  # empty list elements
                            pos += 1
                    elif pos < end:
                        break
            out.append(Challenge(scheme, params, token68))
    return out


# --- the flow ---------------------------------------------------------------------------------


class Signer(Protocol):
    """What the flow needs of a holder: its key's algorithm, a clock, presentations and proofs."""

    key: PrivateKey

    def clock(self) -> float: ...

    def present(self, *, audience: str, nonce: str | None) -> str: ...

    def proof(self, *, htm: str, htu: str, access_token: str | None = None, nonce: str | None = None) -> str: ...


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` with the default port dropped, lower case."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ProtocolError(f"{url[:200]!r} is not an absolute http(s) URL")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True, slots=True)
class Send:
    """Send the original request again with these headers set (``None``: removed)."""

    headers: Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """POST ``form`` (``application/x-www-form-urlencoded``) to ``url`` with ``headers``."""

    url: str
    headers: Mapping[str, str]
    form: Mapping[str, str]


class ResponseView:
    """What the flow reads of a response; each adapter fills one in."""

    __slots__ = ("status", "_headers", "_json")

    def __init__(self, status: int, headers: Callable[[str], list[str]], json: Callable[[], Any]) -> None:
        self.status = status
        self._headers = headers
        self._json = json

    def header_values(self, name: str) -> list[str]:
        return self._headers(name)

    def header(self, name: str) -> str | None:
        values = self._headers(name)
        return values[-1].strip() if values else None

    def json(self) -> Any:
        return self._json()


@dataclass(slots=True)
class _Token:
    value: str
    refresh_at: float


class AuthState:
    """Per-auth-object state: tokens per origin, guarded by one lock.

    The lock is only held for dictionary updates, never across a yield, so one object can
    serve many threads and (single-threaded) event loops at once. Threads that meet a
    challenge at the same moment each present; the last token stored wins, and each is valid.
    """

    def __init__(self, holder: Signer, *, mode: str, audience: str | None, refresh_margin: float) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if refresh_margin < 0:
            raise ValueError("refresh_margin must not be negative")
        self.holder = holder
        self.mode = mode
        self.audience = audience
        self.refresh_margin = refresh_margin
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}

    # --- state --------------------------------------------------------------------------

    def token_for(self, origin: str) -> str | None:
        with self._lock:
            tok = self._tokens.get(origin)
            if tok is None:
                return None
            if self.holder.clock() >= tok.refresh_at:
                del self._tokens[origin]
                return None
            return tok.value

    def _store_token(self, origin: str, value: str, expires_in: float | None) -> None:
        now = self.holder.clock()
        if expires_in is None:
            refresh_at = math.inf  # the gateway will say token_expired; then we present again
        else:
            refresh_at = now + expires_in - min(self.refresh_margin, expires_in / 4)
        with self._lock:
            self._tokens[origin] = _Token(value, refresh_at)

    def _drop_token(self, origin: str, value: str) -> None:
        with self._lock:
            tok = self._tokens.get(origin)
            if tok is not None and tok.value == value:  # another thread may have renewed it
                del self._tokens[origin]

    # --- header sets ---------------------------------------------------------------------

    def _dpop_headers(self, method: str, url: str, token: str) -> dict[str, str | None]:
        return {
            "Authorization": f"DPoP {token}",
            "DPoP": self.holder.proof(htm=method, htu=url, access_token=token),
        }

    def initial_headers(self, method: str, url: str) -> tuple[dict[str, str | None], str | None]:
        """Headers for a first attempt, and the token they carry (if any).

        Without a token the request goes out with no ``Authorization`` at all: the auth owns
        that header, so a placeholder (the OpenAI SDK's ``Bearer <api_key>``) never leaves.
        """
        origin = origin_of(url)
        token = self.token_for(origin) if self.mode == "session" else None
        if token is None:
            return {"Authorization": None, "DPoP": None}, None
        return self._dpop_headers(method, url, token), token

    # --- the challenge ---------------------------------------------------------------------

    def _present(self, audience: str, nonce: str, challenges: list[Challenge]) -> str:
        """Present for ``nonce``; pass on the DCQL query a ``VP`` challenge may carry (its
        ``dcql`` parameter, base64url JSON) so an SD-JWT VC discloses only what it asks for."""
        vp = next((c for c in challenges if c.scheme == "vp"), None)
        raw = vp.get("dcql") if vp is not None else None
        if raw is None:
            return self.holder.present(audience=audience, nonce=nonce)
        try:
            query = loads_strict(b64url_decode(raw), max_depth=16, what="the challenge's DCQL query")
        except VCGateError as exc:
            raise ProtocolError(f"the gateway's DCQL query is not base64url JSON: {exc.message}") from exc
        return self.holder.present(audience=audience, nonce=nonce, dcql=query)  # type: ignore[call-arg]

    @staticmethod
    def _ask_again(response: ResponseView) -> tuple[str, Any] | None:
        """(nonce, DCQL query) when a token endpoint's refusal says what to present instead
        (``claim_not_disclosed`` / ``credential_type_missing`` with ``dcql_query`` and ``nonce``)."""
        if response.status not in (400, 401, 403):
            return None
        try:
            body = response.json()
        except Exception:  # noqa: BLE001 -- any JSON decoder's error: nothing to act on
            return None
        if not isinstance(body, dict) or body.get("error") not in ASK_AGAIN_CODES:
            return None
        nonce, query = body.get("nonce"), body.get("dcql_query")
        if not isinstance(nonce, str) or not nonce or not isinstance(query, dict):
            return None
        return nonce, query

    def _vp_challenge(self, url: str, challenges: list[Challenge]) -> tuple[str, str, str | None] | None:
        """(audience, nonce, token endpoint) from a ``VP`` challenge, checked; None if none."""
        vp = next((c for c in challenges if c.scheme == "vp"), None)
        if vp is None:
            return None
        realm, nonce, endpoint = vp.get("realm"), vp.get("nonce"), vp.get("token_endpoint")
        if not realm or not nonce:
            raise ProtocolError("the gateway's VP challenge lacks 'realm' or 'nonce'")
        origin = origin_of(url)
        if self.audience is not None:
            if realm != self.audience:
                raise ProtocolError(f"the challenge's realm {realm[:200]!r} is not the configured audience {self.audience!r}")
        elif origin_of(realm) != origin:
            # A presentation is good for whoever its 'aud' names: never sign one for another
            # site than the one called, or that site could replay it there.
            raise ProtocolError(
                f"the challenge's realm {realm[:200]!r} is not the origin called ({origin}); "
                "pass audience= to trust it"
            )
        algs = vp.get("algs")
        if algs and self.holder.key.alg not in algs.split():
            raise ProtocolError(f"the gateway accepts {algs!r}; this holder's key is {self.holder.key.alg}")
        if self.mode == "direct":
            return realm, nonce, None
        if not endpoint:
            raise ProtocolError("the gateway's VP challenge lacks 'token_endpoint'")
        endpoint = urljoin(url, endpoint)
        if origin_of(endpoint) not in (origin, origin_of(realm)):
            raise ProtocolError(f"the token endpoint {endpoint[:200]!r} is on another origin than the gateway")
        return realm, nonce, endpoint

    def _token_request(self, endpoint: str, vp_token: str) -> TokenRequest:
        proof = self.holder.proof(htm="POST", htu=endpoint)
        return TokenRequest(endpoint, {"DPoP": proof, "Accept": "application/json"}, {"vp_token": vp_token})

    def _read_token(self, response: ResponseView) -> tuple[str, float | None]:
        try:
            body = response.json()
        except Exception as exc:  # any JSON decoder's error: the body is not a token response
            raise ProtocolError("the token endpoint answered 200 without a JSON body") from exc
        if not isinstance(body, dict):
            raise ProtocolError("the token response is not a JSON object")
        token, token_type, expires_in = body.get("access_token"), body.get("token_type"), body.get("expires_in")
        if not isinstance(token, str) or not token or any(ch in token for ch in " \t\r\n,"):
            raise ProtocolError("the token response has no usable 'access_token'")
        if not isinstance(token_type, str) or token_type.lower() != "dpop":
            raise ProtocolError(f"the token response's token_type is {token_type!r}, not 'DPoP'")
        if expires_in is not None and (
            isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or not 0 < expires_in < 10**9
        ):
            raise ProtocolError("the token response's 'expires_in' is not a positive number")
        return token, expires_in

    # --- the flow -----------------------------------------------------------------------------

    def flow(self, method: str, url: str) -> Generator[Send | TokenRequest, ResponseView, None]:
        """Drive one request: yields what to send, is sent each response.

        The adapter returns the last response it was given. At most one presentation per
        request, and one more when the token endpoint's refusal says what to present instead
        (``dcql_query`` and a fresh ``nonce``): never a loop. (vcgate sends no ``DPoP-Nonce``,
        so there is no nonce retry.)
        """
        origin = origin_of(url)
        headers, token = self.initial_headers(method, url)
        response = yield Send(headers)
        presented = False
        while True:
            if response.status != 401:
                return
            challenges = parse_challenges(response.header_values("WWW-Authenticate"))
            if token is not None:
                self._drop_token(origin, token)
            if presented:
                return
            answer = self._vp_challenge(url, challenges)
            if answer is None:
                return  # not a vcgate challenge: the caller gets the 401 as it is
            presented = True
            audience, vp_nonce, endpoint = answer
            vp_token = self._present(audience, vp_nonce, challenges)
            if endpoint is None:  # direct mode
                token = None
                response = yield Send({"Authorization": f"VP {vp_token}", "DPoP": None})
                continue

            got = yield self._token_request(endpoint, vp_token)
            again = self._ask_again(got) if got.status != 200 else None
            if again is not None:
                # The token endpoint named what its rule needs (a challenge without a query, e.g.
                # after token_expired, left the holder to its defaults): present once more.
                vp_token = self.holder.present(audience=audience, nonce=again[0], dcql=again[1])  # type: ignore[call-arg]
                got = yield self._token_request(endpoint, vp_token)
            if got.status != 200:
                return  # the refusal is the caller's answer
            token, expires_in = self._read_token(got)
            self._store_token(origin, token, expires_in)
            response = yield Send(self._dpop_headers(method, url, token))
