"""Holder construction and the WWW-Authenticate parser."""

from __future__ import annotations

import pytest

from vcgate.client import Challenge, Holder, ProtocolError, parse_challenges
from vcgate.credentials import FORMAT_VC_JWT11, Verifier
from vcgate.errors import PassphraseError
from vcgate.keys import PrivateKey, write_key_file

from .gateway import claims_of


def test_defaults(agent, credential, clock) -> None:
    h = Holder(agent.key, credentials=[credential], clock=clock)
    assert h.did == str(agent.did) and h.kid == agent.kid
    vp = h.present(audience="https://gw", nonce="n1")
    verified = Verifier(clock=clock).verify_presentation(vp, audience="https://gw", nonce="n1")
    assert verified.holder == h.did and len(verified.credentials) == 1


def test_vc_jwt11_presentations(agent, credential, clock) -> None:
    h = Holder(agent.key, credentials=[credential], clock=clock, presentation_format=FORMAT_VC_JWT11)
    vp = h.present(audience="https://gw", nonce="n1")
    assert "vp" in claims_of(vp)
    Verifier(clock=clock).verify_presentation(vp, audience="https://gw", nonce="n1")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        pytest.param({"did": "did:web:example.com"}, "kid", id="kid-needed-for-did-web"),
        pytest.param({"credentials": "eyJ.a.b"}, "sequence", id="credentials-one-string"),
        pytest.param({"credentials": ["not a jwt"]}, "compact", id="credential-not-jwt"),
        pytest.param({"presentation_format": "ldp"}, "presentation_format", id="format"),
    ],
)
def test_bad_arguments(agent, credential, kwargs, message) -> None:
    args = {"credentials": [credential], **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        Holder(agent.key, **args)


def test_did_key_must_match_the_key(agent, credential) -> None:
    other = PrivateKey.generate("EdDSA")
    with pytest.raises(ValueError, match="not the DID"):
        Holder(other, did=str(agent.did), credentials=[credential])


def test_from_key_file(tmp_path, agent, credential, monkeypatch) -> None:
    key_path = tmp_path / "agent.key"
    write_key_file(key_path, agent.key, passphrase="s3cret")
    cred_path = tmp_path / "access.jwt"
    cred_path.write_text(credential + "\n")
    with pytest.raises(PassphraseError):
        Holder.from_key_file(key_path, credentials=[cred_path])
    monkeypatch.setenv("VCGATE_PASSPHRASE", "s3cret")
    h = Holder.from_key_file(key_path, credentials=[cred_path, credential])
    assert h.did == str(agent.did) and h.credentials == (credential, credential)
    assert Holder.from_key_file(key_path, credentials=[str(cred_path)], passphrase="s3cret").credentials == (credential,)
    with pytest.raises(ValueError, match="neither"):
        Holder.from_key_file(key_path, credentials=[str(tmp_path / "missing.jwt")])


def test_repr_hides_the_key(holder: Holder) -> None:
    assert "did:key" in repr(holder) and "PrivateKey" not in repr(holder)


@pytest.mark.parametrize(
    "values, expected",
    [
        pytest.param(
            ['VP realm="https://gw", nonce="abc", token_endpoint="https://gw/t"'],
            [Challenge("vp", {"realm": "https://gw", "nonce": "abc", "token_endpoint": "https://gw/t"})],
            id="one",
        ),
        pytest.param(
            ['VP realm="a", nonce="n", DPoP algs="EdDSA ES256"'],
            [Challenge("vp", {"realm": "a", "nonce": "n"}), Challenge("dpop", {"algs": "EdDSA ES256"})],
            id="two-in-one-field",
        ),
        pytest.param(
            ['Basic realm="x"', 'vp  REALM = "a" ,NONCE="n"'],
            [Challenge("basic", {"realm": "x"}), Challenge("vp", {"realm": "a", "nonce": "n"})],
            id="two-fields-case-and-spaces",
        ),
        pytest.param(
            ['VP realm="a, b", nonce="q\\"uo\\\\te", error=invalid_token'],
            [Challenge("vp", {"realm": "a, b", "nonce": 'q"uo\\te', "error": "invalid_token"})],
            id="quoted-comma-and-escapes",
        ),
        pytest.param(
            ["Negotiate abc+/==, VP nonce=n"],
            [Challenge("negotiate", {}, "abc+/=="), Challenge("vp", {"nonce": "n"})],
            id="token68",
        ),
        pytest.param([", ,VP nonce=n,, ,"], [Challenge("vp", {"nonce": "n"})], id="empty-elements"),
        pytest.param(["DPoP"], [Challenge("dpop", {})], id="bare-scheme"),
        pytest.param([""], [], id="empty"),
    ],
)
def test_parse_challenges(values, expected) -> None:
    assert parse_challenges(values) == expected


def test_repeated_parameter_is_refused() -> None:
    with pytest.raises(ProtocolError, match="nonce"):
        parse_challenges('VP nonce="a", nonce="b"')
