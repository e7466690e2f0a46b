"""Session mode: access tokens, DPoP proofs, and every refusal with its stable code."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import NOW, b64json, forge
from vcgate.credentials.jws import parse_jws
from vcgate.errors import ERROR_CODES, VCGateError
from vcgate.keys import PrivateKey, b64url_decode, b64url_encode
from vcgate.session import (
    AccessToken,
    DPoPVerifier,
    SessionVerifier,
    TokenIssuer,
    TokenVerifier,
    access_token_hash,
    create_proof,
    normalize_htu,
    www_authenticate,
)
from vcgate.errors import (
    DPoPInvalidError,
    DPoPKeyMismatchError,
    DPoPReplayedError,
    StoreFullError,
    StoreUnavailableError,
    TokenExpiredError,
    TokenInvalidError,
)
from vcgate.stores import MemoryReplayStore

GW = "https://gw.example"
URL = "https://gw.example/v1/chat/completions"
ALGS = ("EdDSA", "ES256", "ES256K")


class Clock:
    """A settable clock (wall time for tokens and proofs, monotonic for the stores)."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    clock: Clock
    gw: PrivateKey
    client: PrivateKey
    other: PrivateKey
    issuer: TokenIssuer
    tokens: TokenVerifier
    proofs: DPoPVerifier
    session: SessionVerifier
    extra: dict[str, Any] = field(default_factory=dict)

    def token(self, key: PrivateKey | None = None, **kw: Any) -> str:
        kw.setdefault("subject", "did:key:zAgent")
        kw.setdefault("holder_jkt", (key or self.client).public_key.thumbprint())
        kw.setdefault("scopes", ["chat", "models"])
        kw.setdefault("audience", GW)
        kw.setdefault("credential_ids", ["urn:uuid:vc-1"])
        return self.issuer.issue(**kw)

    def proof(self, token: str | None, key: PrivateKey | None = None, **kw: Any) -> str:
        kw.setdefault("htm", "POST")
        kw.setdefault("htu", URL)
        kw.setdefault("clock", self.clock)
        return create_proof(key or self.client, access_token=token, **kw)

    def call(self, token: str, proof: Any, *, htm: str = "POST", htu: str = URL, scheme: str = "DPoP"):
        return self.session.verify(authorization=f"{scheme} {token}", dpop=proof, htm=htm, htu=htu)


def make_env(gw_alg: str = "EdDSA", client_alg: str = "EdDSA") -> Env:
    clock = Clock()
    gw, client, other = PrivateKey.generate(gw_alg), PrivateKey.generate(client_alg), PrivateKey.generate(client_alg)
    issuer = TokenIssuer(key=gw, issuer=GW, lifetime=300, clock=clock)
    tokens = TokenVerifier(keys=[gw.public_key], issuer=GW, audience=GW, clock=clock, leeway=5)
    proofs = DPoPVerifier(
        algorithms=ALGS,
        replay_store=MemoryReplayStore(clock=clock),
        clock=clock,
        max_age=60,
        leeway=5,
    )
    return Env(clock, gw, client, other, issuer, tokens, proofs, SessionVerifier(tokens=tokens, proofs=proofs))


@pytest.fixture
def env() -> Env:
    return make_env()


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("gw_alg", ["EdDSA", "ES256"])
@pytest.mark.parametrize("client_alg", ALGS)
def test_round_trip(gw_alg, client_alg):
    env = make_env(gw_alg, client_alg)
    token = env.token()
    s = env.call(token, env.proof(token))
    assert isinstance(s.token, AccessToken)
    assert s.token.subject == "did:key:zAgent"
    assert s.token.issuer == GW and s.token.audience == (GW,)
    assert s.token.client_id == "did:key:zAgent"
    assert s.token.scopes == ("chat", "models") and s.token.has_scope("chat") and not s.token.has_scope("admin")
    assert s.token.credential_ids == ("urn:uuid:vc-1",)
    assert s.token.expires_at - s.token.issued_at == 300
    assert s.token.jkt == env.client.public_key.thumbprint() == s.proof.jkt
    assert s.token.ath == access_token_hash(token)
    assert s.proof.htm == "POST" and s.proof.htu == URL and s.proof.iat == int(NOW)
    assert s.proof.public_key == env.client.public_key
    # A second call with a fresh proof: the token comes from the cache, the proof is new.
    assert env.call(token, env.proof(token)).token is s.token


def test_token_header_and_claims(env):
    token = env.token(extra={"tier": "gold"})
    jws = parse_jws(token, algorithms=ALGS)
    assert jws.typ == "at+jwt" and jws.kid == env.gw.public_key.thumbprint()
    c = jws.payload
    assert set(c) == {"iss", "sub", "aud", "iat", "exp", "jti", "client_id", "cnf", "scope", "credential_ids", "tier"}
    assert c["scope"] == "chat models" and c["cnf"] == {"jkt": env.client.public_key.thumbprint()}
    assert env.tokens.verify(token).claims["tier"] == "gold"


def test_proof_format(env):
    token = env.token()
    proof = create_proof(env.client, htm="GET", htu=URL + "?stream=1#frag", access_token=token, nonce="n1", clock=env.clock)
    jws = parse_jws(proof, algorithms=ALGS, allow_headers=("jwk",))
    assert dict(jws.header) == {"alg": "EdDSA", "typ": "dpop+jwt", "jwk": env.client.public_key.jwk()}
    c = jws.payload
    assert c["htu"] == URL and c["htm"] == "GET" and c["nonce"] == "n1" and c["iat"] == int(NOW)
    assert c["ath"] == b64url_encode(hashlib.sha256(token.encode()).digest())
    assert len(c["jti"]) >= 22
    assert create_proof(env.client, htm="GET", htu=URL, clock=env.clock) != create_proof(
        env.client, htm="GET", htu=URL, clock=env.clock
    )


def test_proof_without_token_for_a_token_endpoint(env):
    proof = env.proof(None, htu=GW + "/token")
    p = env.proofs.verify(proof, htm="POST", htu=GW + "/token")
    assert p.jkt == env.client.public_key.thumbprint()


def test_key_rotation():
    clock = Clock()
    old, new = PrivateKey.generate("EdDSA"), PrivateKey.generate("ES256")
    old_tok = TokenIssuer(key=old, issuer=GW, clock=clock).issue(
        subject="s", holder_jkt="a" * 43, scopes=[], audience=GW
    )
    new_tok = TokenIssuer(key=new, issuer=GW, clock=clock).issue(
        subject="s", holder_jkt="a" * 43, scopes=[], audience=[GW, "https://other"]
    )
    both = TokenVerifier(keys=[new.public_key, old.public_key], issuer=GW, audience=GW, clock=clock)
    assert both.verify(old_tok).kid == old.public_key.thumbprint()
    assert both.verify(new_tok).audience == (GW, "https://other")
    only_new = TokenVerifier(keys={"k2": new.public_key}, issuer=GW, audience=GW, clock=clock, algorithms=["EdDSA", "ES256"])
    with pytest.raises(TokenInvalidError) as exc:
        only_new.verify(old_tok)
    assert exc.value.details["reason"] == "unknown_key"


def test_cached_token_still_expires(env):
    token = env.token()
    env.tokens.verify(token)
    env.clock.now += 300 + 5
    with pytest.raises(TokenExpiredError):
        env.tokens.verify(token)


def test_bounded_token_cache():
    clock = Clock()
    gw = PrivateKey.generate("EdDSA")
    issuer = TokenIssuer(key=gw, issuer=GW, clock=clock)
    tv = TokenVerifier(keys=[gw.public_key], issuer=GW, audience=GW, clock=clock, cache_size=3)
    for _ in range(10):
        tv.verify(issuer.issue(subject="s", holder_jkt="a" * 43, scopes=[], audience=GW))
    assert len(tv._cache._data) == 3


def test_query_and_normalisation_accepted(env):
    token = env.token()
    # The request's query is ignored; the proof's htu compares after normalisation.
    env.call(token, env.proof(token, htu="HTTPS://GW.Example:443/v1/chat/completions"), htu=URL + "?a=1")
    forged = forge(
        {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": env.client.public_key.jwk()},
        {"jti": "j-query", "htm": "POST", "htu": URL + "?x=y#f", "iat": NOW, "ath": access_token_hash(token)},
        env.client,
    )
    env.call(token, forged)
    # Boundaries of the iat window are inside it.
    env.call(token, env.proof(token, clock=lambda: NOW - 65))
    env.call(token, env.proof(token, clock=lambda: NOW + 5))


# --- refusals ------------------------------------------------------------------------------


def _replayed(env: Env) -> dict:
    token = env.token()
    proof = env.proof(token)
    env.call(token, proof)
    return {"token": token, "proof": proof}


def _proof_claims(env: Env, token: str | None, key: PrivateKey | None = None, header: dict | None = None, **claims) -> str:
    key = key or env.client
    body = {"jti": "jti-1", "htm": "POST", "htu": URL, "iat": NOW}
    if token is not None:
        body["ath"] = access_token_hash(token)
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    hdr = {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public_key.jwk()}
    hdr.update(header or {})
    hdr = {k: v for k, v in hdr.items() if v is not None}
    return forge(hdr, body, key)


def _token_claims(env: Env, key: PrivateKey | None = None, header: dict | None = None, **claims) -> str:
    key = key or env.gw
    body = {
        "iss": GW,
        "sub": "did:key:zAgent",
        "aud": GW,
        "iat": NOW,
        "exp": NOW + 300,
        "jti": "t-1",
        "cnf": {"jkt": env.client.public_key.thumbprint()},
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    hdr = {"typ": "at+jwt", "alg": key.alg, "kid": env.gw.public_key.thumbprint()}
    hdr.update(header or {})
    hdr = {k: v for k, v in hdr.items() if v is not None}
    return forge(hdr, body, key)


def _with_token(make_token: Callable[[Env], str]) -> Callable[[Env], dict]:
    def build(env: Env) -> dict:
        token = make_token(env)
        return {"token": token, "proof": env.proof(token)}

    return build


def _with_proof(make_proof: Callable[[Env, str], Any], **request: Any) -> Callable[[Env], dict]:
    def build(env: Env) -> dict:
        token = env.token()
        return {"token": token, "proof": make_proof(env, token), **request}

    return build


def _hs256_token(env: Env) -> str:
    # The classic confusion: HMAC keyed with the (public) verification key.
    header = {"typ": "at+jwt", "alg": "HS256", "kid": env.gw.public_key.thumbprint()}
    si = f"{b64json(header)}.{b64json({'iss': GW, 'aud': GW})}"
    sig = hmac.new(env.gw.public_key.raw(), si.encode(), hashlib.sha256).digest()
    return f"{si}.{b64url_encode(sig)}"


def _hs256_proof(env: Env, token: str) -> str:
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}
    si = f"{b64json(header)}.{b64json({'jti': 'x', 'htm': 'POST', 'htu': URL, 'iat': NOW})}"
    sig = hmac.new(b"secret", si.encode(), hashlib.sha256).digest()
    return f"{si}.{b64url_encode(sig)}"


def _p384_jwk() -> dict:
    nums = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    return {"kty": "EC", "crv": "P-384", "x": b64url_encode(nums.x.to_bytes(48, "big")), "y": b64url_encode(nums.y.to_bytes(48, "big"))}


def _tampered(env: Env) -> str:
    h, p, s = env.token().split(".")
    claims = json.loads(b64url_decode(p))
    claims["scope"] = "chat models admin"
    return f"{h}.{b64json(claims)}.{s}"


def _other_issuer(env: Env) -> str:
    return TokenIssuer(key=env.gw, issuer="https://evil.example", clock=env.clock).issue(
        subject="s", holder_jkt=env.client.public_key.thumbprint(), scopes=[], audience=GW
    )


def _unknown_kid(env: Env) -> str:
    return TokenIssuer(key=PrivateKey.generate("EdDSA"), issuer=GW, clock=env.clock).issue(
        subject="s", holder_jkt=env.client.public_key.thumbprint(), scopes=[], audience=GW
    )


def _expired(env: Env) -> dict:
    token = env.token()
    env.clock.now += 305
    return {"token": token, "proof": env.proof(token)}


def _other_key(env: Env) -> dict:
    # A stolen token, used with the thief's own (valid) proof.
    token = env.token()
    return {"token": token, "proof": env.proof(token, key=env.other)}


def _two_headers(env: Env) -> dict:
    token = env.token()
    return {"token": token, "proof": [env.proof(token), env.proof(token)]}


def _comma_joined(env: Env) -> dict:
    token = env.token()
    return {"token": token, "proof": env.proof(token) + ", " + env.proof(token)}


def _wrong_signer(env: Env, token: str) -> str:
    # Header carries the client's key, signed by another one.
    return _proof_claims(env, token, key=env.other, header={"jwk": env.client.public_key.jwk(), "alg": env.other.alg})


def _alg_key_mismatch(env: Env, token: str) -> str:
    p256 = PrivateKey.generate("ES256")
    return _proof_claims(env, token, key=p256, header={"alg": "ES256", "jwk": env.client.public_key.jwk()})


REFUSALS = [
    pytest.param(_replayed, "dpop_replayed", "replayed", id="replayed-jti"),
    pytest.param(_with_proof(lambda e, t: e.proof(t, htm="GET")), "dpop_invalid", "htm_mismatch", id="wrong-htm"),
    pytest.param(_with_proof(lambda e, t: e.proof(t, htm="post")), "dpop_invalid", "htm_mismatch", id="htm-is-case-sensitive"),
    pytest.param(_with_proof(lambda e, t: e.proof(t, htu=GW + "/v1/models")), "dpop_invalid", "htu_mismatch", id="wrong-htu-path"),
    pytest.param(_with_proof(lambda e, t: e.proof(t, htu=GW + "/V1/chat/completions")), "dpop_invalid", "htu_mismatch", id="htu-path-is-case-sensitive"),
    pytest.param(_with_proof(lambda e, t: e.proof(t, htu="https://other.example/v1/chat/completions")), "dpop_invalid", "htu_mismatch", id="wrong-htu-host"),
    pytest.param(_with_proof(lambda e, t: e.proof(t, htu="http://gw.example/v1/chat/completions")), "dpop_invalid", "htu_mismatch", id="wrong-htu-scheme"),
    pytest.param(_with_proof(lambda e, t: e.proof(t, htu="https://gw.example:8443/v1/chat/completions")), "dpop_invalid", "htu_mismatch", id="wrong-htu-port"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, htu="/v1/chat/completions")), "dpop_invalid", "htu_mismatch", id="relative-htu"),
    pytest.param(_with_proof(lambda e, t: e.proof(t, clock=lambda: NOW - 66)), "dpop_invalid", "iat_stale", id="stale-iat"),
    pytest.param(_with_proof(lambda e, t: e.proof(t, clock=lambda: NOW + 6)), "dpop_invalid", "iat_future", id="future-iat"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, iat="1780272000")), "dpop_invalid", "missing_claim", id="string-iat"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, jti=None)), "dpop_invalid", "missing_claim", id="no-jti"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, jti="x" * 257)), "dpop_invalid", "missing_claim", id="huge-jti"),
    pytest.param(_with_proof(lambda e, t: e.proof(e.token())), "dpop_invalid", "ath_mismatch", id="ath-of-another-token"),
    pytest.param(_with_proof(lambda e, t: e.proof(None)), "dpop_invalid", "ath_missing", id="missing-ath-with-token"),
    pytest.param(_other_key, "dpop_key_mismatch", "jkt_mismatch", id="token-used-with-another-key"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, header={"typ": "at+jwt"})), "dpop_invalid", "type_mismatch", id="proof-typ-at+jwt"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, header={"typ": "JWT"})), "dpop_invalid", "type_mismatch", id="proof-typ-JWT"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, header={"typ": None})), "dpop_invalid", "type_mismatch", id="proof-no-typ"),
    pytest.param(_with_proof(lambda e, t: forge({"typ": "dpop+jwt", "alg": "none", "jwk": e.client.public_key.jwk()}, {"jti": "x", "htm": "POST", "htu": URL, "iat": NOW}, signature=b"\0")), "dpop_invalid", "algorithm_not_allowed", id="proof-alg-none"),
    pytest.param(_with_proof(_hs256_proof), "dpop_invalid", "algorithm_not_allowed", id="proof-alg-HS256"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, header={"jwk": {**e.client.public_key.jwk(), "d": b64url_encode(e.client.private_bytes_raw())}})), "dpop_invalid", "private_key", id="private-jwk-in-header"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, header={"alg": "ES256", "jwk": _p384_jwk()})), "dpop_invalid", "algorithm_not_allowed", id="jwk-curve-P-384-with-ES256"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, header={"jwk": {"kty": "OKP", "crv": "X25519", "x": b64url_encode(b"\1" * 32)}})), "dpop_invalid", "key_unsupported", id="jwk-curve-X25519"),
    pytest.param(_with_proof(_alg_key_mismatch), "dpop_invalid", "algorithm_not_allowed", id="alg-does-not-fit-jwk"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, header={"jwk": None})), "dpop_invalid", "missing_jwk", id="no-jwk"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, header={"x5c": ["MIIB"]})), "dpop_invalid", "header_not_allowed", id="x5c-in-proof"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, header={"crit": ["exp"]})), "dpop_invalid", "unsupported_critical", id="crit-in-proof"),
    pytest.param(_with_proof(_wrong_signer), "dpop_invalid", "signature_invalid", id="proof-signed-by-another-key"),
    pytest.param(_with_proof(lambda e, t: _proof_claims(e, t, pad="x" * 9000)), "dpop_invalid", "too_large", id="huge-proof"),
    pytest.param(_with_proof(lambda e, t: "not.a.jwt"), "dpop_invalid", "malformed", id="garbage-proof"),
    pytest.param(_with_proof(lambda e, t: None), "dpop_invalid", "missing", id="no-proof"),
    pytest.param(_two_headers, "dpop_invalid", "multiple_headers", id="two-dpop-headers"),
    pytest.param(_comma_joined, "dpop_invalid", "multiple_headers", id="comma-joined-dpop"),
    pytest.param(_expired, "token_expired", "expired", id="expired-token"),
    pytest.param(_with_token(_other_issuer), "token_invalid", "issuer_mismatch", id="token-from-another-issuer"),
    pytest.param(_with_token(lambda e: e.token(audience="https://other.example")), "token_invalid", "audience_mismatch", id="token-for-another-audience"),
    pytest.param(_with_token(_unknown_kid), "token_invalid", "unknown_key", id="token-unknown-kid"),
    pytest.param(_with_token(lambda e: _token_claims(e, header={"kid": None})), "token_invalid", "unknown_key", id="token-without-kid"),
    pytest.param(_with_token(lambda e: _token_claims(e, key=PrivateKey.generate("EdDSA"))), "token_invalid", "signature_invalid", id="token-our-kid-other-key"),
    pytest.param(_with_token(_tampered), "token_invalid", "signature_invalid", id="tampered-token"),
    pytest.param(_with_token(lambda e: _token_claims(e, header={"typ": "dpop+jwt"})), "token_invalid", "type_mismatch", id="token-typ-dpop+jwt"),
    pytest.param(_with_token(lambda e: _token_claims(e, header={"typ": "vc+jwt"})), "token_invalid", "type_mismatch", id="token-typ-vc+jwt"),
    pytest.param(_with_token(lambda e: _token_claims(e, header={"typ": "vp+jwt"})), "token_invalid", "type_mismatch", id="token-typ-vp+jwt"),
    pytest.param(_with_token(lambda e: _token_claims(e, header={"typ": None})), "token_invalid", "type_mismatch", id="token-no-typ"),
    pytest.param(_with_token(lambda e: e.proof(None)), "token_invalid", "header_not_allowed", id="proof-as-token"),
    pytest.param(_with_token(lambda e: forge({"typ": "at+jwt", "alg": "none", "kid": e.gw.public_key.thumbprint()}, {"iss": GW}, signature=b"\0")), "token_invalid", "algorithm_not_allowed", id="token-alg-none"),
    pytest.param(_with_token(_hs256_token), "token_invalid", "algorithm_not_allowed", id="token-alg-HS256"),
    pytest.param(_with_token(lambda e: _token_claims(e, header={"jwk": e.gw.public_key.jwk()})), "token_invalid", "header_not_allowed", id="token-jwk-header"),
    pytest.param(_with_token(lambda e: _token_claims(e, cnf=None)), "token_invalid", "unbound", id="unbound-token"),
    pytest.param(_with_token(lambda e: _token_claims(e, cnf={"jkt": "short"})), "token_invalid", "unbound", id="bad-cnf-jkt"),
    pytest.param(_with_token(lambda e: _token_claims(e, exp=None)), "token_invalid", "malformed", id="token-without-exp"),
    pytest.param(_with_token(lambda e: _token_claims(e, iat=NOW + 60)), "token_invalid", "not_yet_valid", id="token-iat-future"),
    pytest.param(_with_token(lambda e: _token_claims(e, scope=["chat"])), "token_invalid", "malformed", id="token-scope-not-string"),
    pytest.param(lambda e: {"token": (t := e.token()), "proof": e.proof(t), "scheme": "Bearer"}, "token_invalid", "bearer_scheme", id="bearer-scheme"),
    pytest.param(lambda e: {"token": (t := e.token()), "proof": e.proof(t), "scheme": "VP"}, "token_invalid", "scheme", id="other-scheme"),
]


@pytest.mark.parametrize("build, code, reason", REFUSALS)
def test_refusals(env, build, code, reason):
    case = build(env)
    with pytest.raises(VCGateError) as exc:
        env.call(case["token"], case["proof"], scheme=case.get("scheme", "DPoP"), **{k: v for k, v in case.items() if k in ("htm", "htu")})
    err = exc.value
    assert (err.code, err.details.get("reason")) == (code, reason), err.message
    assert err.status == 401
    assert getattr(err, "oauth_error") in ("invalid_token", "invalid_dpop_proof")
    challenge = www_authenticate(err, algorithms=ALGS)
    assert challenge.startswith(f'DPoP error="{err.oauth_error}", error_description="')


@pytest.mark.parametrize("build, code, reason", REFUSALS)
def test_refusals_with_warm_caches(env, build, code, reason):
    """The same refusals once every cache on the path is warm.

    The token cache holds a good token (and the case's own token whenever it verifies), the
    proof-key cache holds the client's header bytes in both encodings used here: a cache hit
    must never stand in for a check the request still has to pass.
    """
    warm = env.token()
    env.call(warm, env.proof(warm))
    env.call(warm, _proof_claims(env, warm, jti="warm-1"))
    case = build(env)
    try:  # warms the token cache with the case's own token if it is valid
        env.call(case["token"], env.proof(case["token"]))
    except VCGateError:
        pass
    with pytest.raises(VCGateError) as exc:
        env.call(case["token"], case["proof"], scheme=case.get("scheme", "DPoP"), **{k: v for k, v in case.items() if k in ("htm", "htu")})
    assert (exc.value.code, exc.value.details.get("reason")) == (code, reason), exc.value.message


def test_failed_token_is_never_cached(env):
    for bad in (_tampered(env), _token_claims(env, key=PrivateKey.generate("EdDSA")), _unknown_kid(env)):
        for _ in range(2):
            with pytest.raises(TokenInvalidError):
                env.tokens.verify(bad)
    assert env.tokens._cache._data == {}


def test_cached_token_rechecks_not_yet_valid(env):
    # A hit skips the signature, not the clock: a clock set back refuses the cached token too.
    token = env.token()
    assert env.tokens.verify(token) is env.tokens.verify(token)
    env.clock.now = NOW - 10
    with pytest.raises(TokenInvalidError) as exc:
        env.tokens.verify(token)
    assert exc.value.details["reason"] == "not_yet_valid"


def test_cached_token_is_keyed_by_the_whole_string(env):
    # Same header and claims as a cached token, signature by another key: a new string, fully checked.
    token = env.token()
    env.tokens.verify(token)
    h, p, _ = token.split(".")
    forged = f"{h}.{p}.{b64url_encode(PrivateKey.generate('EdDSA').sign(f'{h}.{p}'.encode()))}"
    with pytest.raises(TokenInvalidError) as exc:
        env.tokens.verify(forged)
    assert exc.value.details["reason"] == "signature_invalid"


@pytest.mark.parametrize("client_alg", ALGS)
def test_proof_key_cache_never_skips_the_signature(client_alg):
    # The key cache maps header bytes to the key they carry; a proof reusing a known
    # client's exact header bytes still needs that client's signature.
    env = make_env(client_alg=client_alg)
    token = env.token()
    good = env.proof(token)
    env.call(token, good)
    h = good.split(".")[0]
    assert env.proofs._keys.get(h) is not None
    claims = {"jti": "forged-1", "htm": "POST", "htu": URL, "iat": NOW, "ath": access_token_hash(token)}
    si = f"{h}.{b64json(claims)}"
    forged = f"{si}.{b64url_encode(env.other.sign(si.encode()))}"
    with pytest.raises(DPoPInvalidError) as exc:
        env.call(token, forged)
    assert exc.value.details["reason"] == "signature_invalid"
    # ... and the same header with the client's own signature still passes.
    env.call(token, f"{si}.{b64url_encode(env.client.sign(si.encode()))}")


def test_refused_proof_header_is_never_cached(env):
    token = env.token()
    bad_typ = _proof_claims(env, token, header={"typ": "JWT"})
    no_jwk = _proof_claims(env, token, header={"jwk": None}, jti="jti-2")
    for proof, reason in ((bad_typ, "type_mismatch"), (no_jwk, "missing_jwk")):
        for _ in range(2):
            with pytest.raises(DPoPInvalidError) as exc:
                env.call(token, proof)
            assert exc.value.details["reason"] == reason
    assert env.proofs._keys._data == {}


def test_missing_authorization(env):
    with pytest.raises(TokenInvalidError) as exc:
        env.session.verify(authorization=None, dpop=None, htm="GET", htu=URL)
    assert exc.value.details["reason"] == "missing"
    # RFC 6750 section 3.1: no error code when the request carried no credentials.
    assert www_authenticate(exc.value, algorithms=["ES256", "EdDSA"], realm="gw") == 'DPoP realm="gw", algs="ES256 EdDSA"'
    with pytest.raises(TokenInvalidError) as exc:
        env.session.verify(authorization=["DPoP a", "DPoP b"], dpop=None, htm="GET", htu=URL)
    assert exc.value.details["reason"] == "multiple_headers"


def test_forged_proof_does_not_burn_the_victims_jti(env):
    token = env.token()
    good = _proof_claims(env, token, jti="victim-jti")
    forged = _proof_claims(env, token, key=env.other, header={"jwk": env.client.public_key.jwk()}, jti="victim-jti")
    with pytest.raises(DPoPInvalidError):
        env.call(token, forged)
    env.call(token, good)
    with pytest.raises(DPoPReplayedError):
        env.call(token, good)


def test_replay_is_keyed_by_key_and_jti(env):
    # Two clients choosing the same jti do not collide.
    t1, t2 = env.token(), env.token(key=env.other)
    env.call(t1, _proof_claims(env, t1, jti="same"))
    env.call(t2, _proof_claims(env, t2, key=env.other, jti="same"))


def test_jti_is_remembered_as_long_as_the_proof_is_acceptable(env):
    # Worst case: the client's clock runs `leeway` ahead, so the proof is first seen 5 s
    # "before" its iat and stays acceptable until iat + max_age + leeway.
    env.clock.now = NOW - 5
    token = env.token()
    proof = env.proof(token, clock=lambda: NOW)
    env.call(token, proof)
    for t in (NOW - 5, NOW + 30, NOW + 64.9, NOW + 65):
        env.clock.now = t
        with pytest.raises(DPoPReplayedError):
            env.call(token, proof)
    env.clock.now = NOW + 65.001
    with pytest.raises(DPoPInvalidError) as exc:
        env.call(token, proof)
    assert exc.value.details["reason"] == "iat_stale"


def test_invalid_request_uri_is_a_caller_bug(env):
    with pytest.raises(ValueError):
        env.proofs.verify(env.proof(None), htm="POST", htu="/relative")


# --- no server nonces ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nonce", "accepted"),
    [
        pytest.param("n" * 256, True, id="any-client-nonce-accepted"),
        pytest.param("n" * 257, False, id="too-long"),
        pytest.param("", False, id="empty"),
    ],
)
def test_a_proof_nonce_is_only_shape_checked(env, nonce, accepted):
    # vcgate issues no DPoP-Nonce, so a proof's nonce claim is never looked up in a store.
    token = env.token()
    if accepted:
        assert env.call(token, env.proof(token, nonce=nonce)).proof.nonce == nonce
    else:
        with pytest.raises(DPoPInvalidError) as exc:
            env.call(token, env.proof(token, nonce=nonce))
        assert exc.value.details["reason"] == "malformed"


# --- stores failing ------------------------------------------------------------------------


class _DownStore:
    def add_if_absent(self, key, ttl):
        raise StoreUnavailableError("down")


def test_replay_store_failure_fails_closed(env):
    env.proofs._replay = _DownStore()
    token = env.token()
    with pytest.raises(StoreUnavailableError) as exc:
        env.call(token, env.proof(token))
    assert exc.value.status == 503


def test_full_replay_store_fails_closed():
    clock = Clock()
    gw, client = PrivateKey.generate("EdDSA"), PrivateKey.generate("EdDSA")
    pv = DPoPVerifier(algorithms=["EdDSA"], replay_store=MemoryReplayStore(max_entries=2, clock=clock), clock=clock)
    for _ in range(2):
        pv.verify(create_proof(client, htm="GET", htu=URL, clock=clock), htm="GET", htu=URL)
    with pytest.raises(StoreFullError) as exc:
        pv.verify(create_proof(client, htm="GET", htu=URL, clock=clock), htm="GET", htu=URL)
    assert (exc.value.code, exc.value.status) == ("store_full", 503)
    del gw


# --- pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, normal",
    [
        pytest.param("https://gw.example/v1", "https://gw.example/v1", id="plain"),
        pytest.param("HTTPS://GW.Example/v1", "https://gw.example/v1", id="scheme-host-case"),
        pytest.param("https://gw.example:443/v1", "https://gw.example/v1", id="default-https-port"),
        pytest.param("http://gw.example:80/v1", "http://gw.example/v1", id="default-http-port"),
        pytest.param("https://gw.example:80/v1", "https://gw.example:80/v1", id="non-default-port"),
        pytest.param("https://gw.example:/v1", "https://gw.example/v1", id="empty-port"),
        pytest.param("https://gw.example", "https://gw.example/", id="empty-path"),
        pytest.param("https://gw.example/v1?q=1#f", "https://gw.example/v1", id="query-fragment"),
        pytest.param("https://gw.example/a/./b/../c", "https://gw.example/a/c", id="dot-segments"),
        pytest.param("https://gw.example/a/..", "https://gw.example/", id="dot-dot-end"),
        pytest.param("https://gw.example/%7euser/%2f%e2", "https://gw.example/~user/%2F%E2", id="percent-encoding"),
        pytest.param("https://[::1]:443/x", "https://[::1]/x", id="ipv6"),
        pytest.param("https://gw.example/V1", "https://gw.example/V1", id="path-case-kept"),
    ],
)
def test_normalize_htu(url, normal):
    assert normalize_htu(url) == normal


@pytest.mark.parametrize(
    "url",
    ["ftp://gw.example/", "https://user@gw.example/", "https:///x", "https://gw.example:99999/", "/v1", "https://gw.example/ä", "https://gw.example/a b", "https://gw.example/\n"],
)
def test_normalize_htu_refuses(url):
    with pytest.raises(ValueError):
        normalize_htu(url)


@pytest.mark.parametrize(
    "kw, message",
    [
        pytest.param({"holder_jkt": "short"}, "holder_jkt", id="bad-jkt"),
        pytest.param({"scopes": ["two words"]}, "scope", id="scope-with-space"),
        pytest.param({"audience": []}, "audience", id="no-audience"),
        pytest.param({"extra": {"cnf": {"jkt": "x"}}}, "extra", id="extra-overrides-cnf"),
        pytest.param({"subject": ""}, "subject", id="no-subject"),
    ],
)
def test_issuer_refuses_bad_input(env, kw, message):
    with pytest.raises(ValueError, match=message):
        env.token(**kw)


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"algorithms": ["HS256"]}, id="hmac"),
        pytest.param({"algorithms": ["none"]}, id="none"),
        pytest.param({"algorithms": []}, id="empty"),
        pytest.param({"algorithms": ["EdDSA"], "max_age": 0}, id="max-age"),
        pytest.param({"algorithms": ["EdDSA"], "leeway": -1}, id="leeway"),
    ],
)
def test_dpop_verifier_configuration(kw):
    with pytest.raises(ValueError):
        DPoPVerifier(**kw)


def test_token_verifier_configuration():
    with pytest.raises(ValueError):
        TokenVerifier(keys=[], issuer=GW, audience=GW)
    with pytest.raises(ValueError):
        TokenVerifier(keys=[PrivateKey.generate().public_key], issuer=GW, audience=GW, algorithms=["HS256"])


def test_www_authenticate_sanitises_description():
    err = DPoPInvalidError('bad "quote" \\ and\nnewline', reason="x")
    header = www_authenticate(err, algorithms=["EdDSA"])
    assert header == 'DPoP error="invalid_dpop_proof", error_description="bad quote  andnewline", algs="EdDSA"'
    assert www_authenticate(None, algorithms=["ES256"]) == 'DPoP algs="ES256"'
    key_err = DPoPKeyMismatchError(reason="jkt_mismatch")
    assert 'error="invalid_token"' in www_authenticate(key_err, algorithms=["ES256"])


SESSION_ERRORS = [
    TokenInvalidError,
    TokenExpiredError,
    DPoPInvalidError,
    DPoPReplayedError,
    DPoPKeyMismatchError,
    StoreUnavailableError,
    StoreFullError,
]


def test_session_error_codes_are_new_and_unique():
    codes = [cls.code for cls in SESSION_ERRORS]
    assert len(set(codes)) == len(codes)
    for cls in SESSION_ERRORS:
        # Holds before and after these classes move into vcgate.errors.
        assert ERROR_CODES.get(cls.code, cls) is cls, f"{cls.code} collides with an existing code"
    for cls in SESSION_ERRORS:
        assert issubclass(cls, VCGateError) and 400 <= cls.status < 600
