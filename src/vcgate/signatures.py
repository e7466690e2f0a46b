"""Signature verification backends: the one place that decides which library checks which curve.

=========  ==========================  ===================================================
curve      backend (vcgate verifies)   why
=========  ==========================  ===================================================
Ed25519    libsodium (PyNaCl)          about 2x faster than OpenSSL; refuses small-order
                                       and non-canonical points (see below)
secp256k1  libsecp256k1 (coincurve)    about 9x faster than OpenSSL; S is normalised first
P-256      OpenSSL (pyca/cryptography) the fastest well-kept implementation for P-256
=========  ==========================  ===================================================

Key import, export and signing stay with pyca/cryptography (:mod:`vcgate.keys`); a backend only
gets a key cryptography has already imported and validated, and verifies with it.

Each backend is a function ``prepare(key) -> check`` that turns a cryptography public key into
``check(message, signature)``: it returns ``None`` when the JOSE signature (Ed25519 bytes, or
``r || s`` for ECDSA) verifies, and raises :class:`~vcgate.errors.SignatureInvalidError`
otherwise -- never a bool, never a third-party exception.

``REFERENCE`` maps every curve to pyca/cryptography. vcgate does not fall back to it at run
time: PyNaCl and coincurve are core dependencies with wheels for every platform vcgate
supports, and a silent fallback would give one deployment other verdicts than another (the
Ed25519 small-order rule differs). It is the reference the differential test
(tests/test_keys_backends.py) checks the fast backends against.

Where the verdicts differ, and what vcgate does (docs/credentials.md, "Signature backends"):

* Ed25519: libsodium refuses public keys and ``R`` values of small order and non-canonical
  point encodings. OpenSSL follows RFC 8032's equation only, under which a small-order public
  key "signs" any message with ``S = 0`` -- a universal forgery needing no secret. vcgate
  keeps libsodium's stricter rule.
* ES256K: libsecp256k1 verifies only low-S signatures (BIP 62/146); JOSE (RFC 7518 3.4) does
  not require low S, and OpenSSL-based signers -- vcgate's own included -- emit high S half the
  time. vcgate replaces ``s`` by ``n - s`` before verifying, which gives exactly the verdicts of
  a plain ECDSA verifier. Nothing in vcgate identifies a token by its signature bytes, so the
  malleability this allows (one more valid signature per signature) opens nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Union

import coincurve
import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .errors import MalformedError, SignatureInvalidError

__all__ = ["Check", "Prepare", "FAST", "REFERENCE", "backend_name", "prepare"]

PublicCryptoKey = Union[ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey]

#: ``check(message, signature)``: returns None or raises SignatureInvalidError.
Check = Callable[[bytes, bytes], None]
#: ``prepare(public_key) -> check``.
Prepare = Callable[[PublicCryptoKey], Check]

_ED25519_SIG = 64
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_SECP256K1_HALF_N = _SECP256K1_N >> 1


def libsodium_ed25519(key: PublicCryptoKey) -> Check:
    """Ed25519 with libsodium's ``crypto_sign_open`` (PyNaCl's public binding)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    sign_open = nacl.bindings.crypto_sign_open

    def check(message: bytes, signature: bytes) -> None:
        # crypto_sign_open takes signature || message: a signature of another length would
        # shift the boundary, so the length is checked here.
        if len(signature) != _ED25519_SIG:
            raise SignatureInvalidError()
        try:
            sign_open(signature + message, raw)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            raise SignatureInvalidError() from None

    return check


def libsecp256k1_ecdsa(key: PublicCryptoKey) -> Check:
    """ECDSA over secp256k1 with libsecp256k1 (coincurve), SHA-256, JOSE ``r || s``."""
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    try:
        verify = coincurve.PublicKey(point).verify
    except ValueError as exc:  # cryptography imported the point already: not expected
        raise MalformedError("invalid secp256k1 public key") from exc
    n, half_n = _SECP256K1_N, _SECP256K1_HALF_N

    def check(message: bytes, signature: bytes) -> None:
        if len(signature) != 64:
            raise SignatureInvalidError()
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        if not (0 < r < n and 0 < s < n):
            raise SignatureInvalidError()
        if s > half_n:
            s = n - s  # JOSE allows high S; libsecp256k1 verifies the low-S twin only
        try:
            ok = verify(encode_dss_signature(r, s), message)
        except ValueError:
            raise SignatureInvalidError() from None
        if not ok:
            raise SignatureInvalidError()

    return check


def _openssl_ecdsa(size: int, algorithm: hashes.HashAlgorithm) -> Prepare:
    """ECDSA with pyca/cryptography (OpenSSL); a JOSE signature is r || s, ``size`` bytes each."""
    ecdsa = ec.ECDSA(algorithm)

    def prepare(key: PublicCryptoKey) -> Check:
        verify = key.verify

        def check(message: bytes, signature: bytes) -> None:
            if len(signature) != 2 * size:
                raise SignatureInvalidError()
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
            try:
                verify(der, message, ecdsa)  # type: ignore[call-arg]
            except InvalidSignature:
                raise SignatureInvalidError() from None

        return check

    return prepare


def openssl_ed25519(key: PublicCryptoKey) -> Check:
    """Ed25519 with pyca/cryptography (OpenSSL): RFC 8032's equation, no small-order checks."""
    verify = key.verify

    def check(message: bytes, signature: bytes) -> None:
        try:
            verify(signature, message)  # type: ignore[call-arg]
        except InvalidSignature:
            raise SignatureInvalidError() from None

    return check


openssl_ecdsa_sha256 = _openssl_ecdsa(32, hashes.SHA256())
openssl_ecdsa_p384 = _openssl_ecdsa(48, hashes.SHA384())
openssl_ecdsa_p521 = _openssl_ecdsa(66, hashes.SHA512())

#: What vcgate verifies with, per curve.
FAST: Mapping[str, Prepare] = MappingProxyType(
    {"Ed25519": libsodium_ed25519, "P-256": openssl_ecdsa_sha256, "secp256k1": libsecp256k1_ecdsa,
     "P-384": openssl_ecdsa_p384, "P-521": openssl_ecdsa_p521}
)
#: pyca/cryptography for every curve: the reference of the differential test.
REFERENCE: Mapping[str, Prepare] = MappingProxyType(
    {"Ed25519": openssl_ed25519, "P-256": openssl_ecdsa_sha256, "secp256k1": openssl_ecdsa_sha256,
     "P-384": openssl_ecdsa_p384, "P-521": openssl_ecdsa_p521}
)
_NAMES: Mapping[Prepare, str] = MappingProxyType(
    {
        libsodium_ed25519: "libsodium",
        libsecp256k1_ecdsa: "libsecp256k1",
        openssl_ecdsa_sha256: "openssl",
        openssl_ecdsa_p384: "openssl",
        openssl_ecdsa_p521: "openssl",
        openssl_ed25519: "openssl",
    }
)


def prepare(curve: str, key: PublicCryptoKey) -> Check:
    """The check vcgate uses for ``key`` on ``curve`` (one of the keys of :data:`FAST`)."""
    return FAST[curve](key)


def backend_name(curve: str) -> str:
    """The library behind :func:`prepare` for ``curve`` ("libsodium", "libsecp256k1", "openssl")."""
    return _NAMES[FAST[curve]]
