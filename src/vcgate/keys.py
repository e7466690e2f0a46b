"""Keys: generation, JWK/PEM/hex import, public JWK export, and encrypted key files.

Five algorithms, each tied to one curve so that an algorithm can never be used with a key of
another kind (the "algorithm confusion" family of attacks):

========  ==========  ===========================
alg       curve       JWK
========  ==========  ===========================
EdDSA     Ed25519     ``{"kty": "OKP", "crv": "Ed25519"}``
ES256     P-256       ``{"kty": "EC", "crv": "P-256"}``
ES256K    secp256k1   ``{"kty": "EC", "crv": "secp256k1"}``
ES384     P-384       ``{"kty": "EC", "crv": "P-384"}``
ES512     P-521       ``{"kty": "EC", "crv": "P-521"}``
========  ==========  ===========================

Key handling and signing use pyca/cryptography (through pyjwt's algorithm objects, which convert
ECDSA signatures between DER and the JOSE ``r||s`` form); verification uses the fastest
well-kept backend per curve, chosen in :mod:`vcgate.signatures` (libsodium for Ed25519,
libsecp256k1 for secp256k1, OpenSSL for P-256).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
import stat
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from jwt.exceptions import InvalidKeyError

from . import signatures
from .errors import (
    AlgorithmNotAllowedError,
    KeyFileError,
    MalformedError,
    PassphraseError,
    UnsupportedKeyError,
    VCGateError,
)
from .signatures import Check

__all__ = [
    "ALGORITHMS",
    "curve_of_alg",
    "PrivateKey",
    "PublicKey",
    "b64url_encode",
    "b64url_decode",
    "PASSPHRASE_ENV",
    "passphrase_from_env",
    "read_key_file",
    "write_key_file",
]

#: JOSE algorithms vcgate verifies. "Ed25519" is the fully-specified name of RFC 9864 (which
#: deprecates the polymorphic "EdDSA"); did-jwt emits it. vcgate signs with "EdDSA" for now.
ALGORITHMS: tuple[str, ...] = ("EdDSA", "Ed25519", "ES256", "ES256K", "ES384", "ES512")

_CURVE_OF_ALG = {
    "EdDSA": "Ed25519", "Ed25519": "Ed25519", "ES256": "P-256", "ES256K": "secp256k1", "ES384": "P-384", "ES512": "P-521",
}
_ALG_OF_CURVE = {"Ed25519": "EdDSA", "P-256": "ES256", "secp256k1": "ES256K", "P-384": "ES384", "P-521": "ES512"}
_EC_CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(), "ES256K": ec.SECP256K1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1(),
}

# pyjwt's algorithm objects are stateless; one each is enough.
_JWT_ALGS: dict[str, Any] = {
    "EdDSA": OKPAlgorithm(),
    "Ed25519": OKPAlgorithm(),
    "ES256": ECAlgorithm(ECAlgorithm.SHA256),
    "ES256K": ECAlgorithm(ECAlgorithm.SHA256),
    "ES384": ECAlgorithm(ECAlgorithm.SHA384),
    "ES512": ECAlgorithm(ECAlgorithm.SHA512),
}

PublicCryptoKey = Union[ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey]
PrivateCryptoKey = Union[ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey]


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# base64url -> standard alphabet; "+", "/" and "=" become "!" so that binascii's strict mode
# refuses them (one translate pass instead of a separate alphabet check).
_URL_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")


def b64url_decode(data: str | bytes) -> bytes:
    """Strict unpadded base64url (RFC 7515 section 2): no padding, no other characters.

    The standard library's default decoder silently skips characters outside the alphabet,
    which would let two different strings decode to the same bytes; this one refuses them,
    and refuses non-zero unused bits in the last character (RFC 4648 section 3.5).
    """
    try:
        raw = data.encode("ascii") if isinstance(data, str) else data
    except UnicodeEncodeError as exc:
        raise MalformedError("invalid base64url encoding (not ASCII)") from exc
    rem = len(raw) % 4
    if rem == 1:
        raise MalformedError("invalid base64url encoding")
    try:
        out = binascii.a2b_base64(raw.translate(_URL_TO_STD) + b"=" * (-len(raw) % 4), strict_mode=True)
    except (binascii.Error, TypeError) as exc:
        raise MalformedError("invalid base64url encoding") from exc
    if rem and _B64URL_ALPHABET.index(raw[-1]) & (0x0F if rem == 2 else 0x03):
        raise MalformedError("non-canonical base64url encoding")
    return out


def _alg_of_crypto_key(key: PublicCryptoKey | PrivateCryptoKey) -> str:
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "EdDSA"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if isinstance(key.curve, ec.SECP256R1):
            return "ES256"
        if isinstance(key.curve, ec.SECP256K1):
            return "ES256K"
        if isinstance(key.curve, ec.SECP384R1):
            return "ES384"
        if isinstance(key.curve, ec.SECP521R1):
            return "ES512"
    raise UnsupportedKeyError(f"unsupported key type {type(key).__name__}")


def _check_alg(alg: str) -> str:
    """The canonical signing name of ``alg`` ("Ed25519" -> "EdDSA")."""
    curve = _CURVE_OF_ALG.get(alg)
    if curve is None:
        raise UnsupportedKeyError(f"unsupported algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")
    return _ALG_OF_CURVE[curve]


def curve_of_alg(alg: str) -> str | None:
    """The one curve a JOSE algorithm may be used with (None for algorithms vcgate lacks)."""
    return _CURVE_OF_ALG.get(alg)


@dataclass(frozen=True, eq=False)
class PublicKey:
    """A public key bound to exactly one JOSE algorithm."""

    alg: str
    key: PublicCryptoKey

    @classmethod
    def from_crypto(cls, key: PublicCryptoKey) -> PublicKey:
        return cls(_alg_of_crypto_key(key), key)

    @classmethod
    def from_jwk(cls, jwk: Any) -> PublicKey:
        """Import a public JWK. A JWK that carries private material (``d``) is refused."""
        if not isinstance(jwk, dict):
            raise MalformedError("a JWK must be a JSON object")
        if "d" in jwk:
            raise MalformedError("a public JWK must not carry private key material")
        crv = jwk.get("crv")
        kty = jwk.get("kty")
        alg = _ALG_OF_CURVE.get(crv) if isinstance(crv, str) else None
        if alg is None or (kty != "OKP") != (alg != "EdDSA"):
            raise UnsupportedKeyError(f"unsupported JWK kty={kty!r} crv={crv!r}")
        if "alg" in jwk and _CURVE_OF_ALG.get(jwk["alg"]) != crv:
            raise UnsupportedKeyError(f"JWK alg {jwk['alg']!r} does not fit curve {crv}")
        try:
            key = _JWT_ALGS[alg].from_jwk(jwk)
        except (InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            raise MalformedError(f"invalid {crv} JWK: {exc}") from exc
        if not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
            raise MalformedError("expected a public key")  # pragma: no cover - guarded by "d"
        return cls(alg, key)

    @classmethod
    def from_raw(cls, alg: str, data: bytes) -> PublicKey:
        """Import raw bytes: 32-byte Ed25519, or a SEC1 (compressed or not) EC point."""
        alg = _check_alg(alg)
        try:
            if alg == "EdDSA":
                return cls(alg, ed25519.Ed25519PublicKey.from_public_bytes(data))
            return cls(alg, ec.EllipticCurvePublicKey.from_encoded_point(_EC_CURVES[alg], data))
        except ValueError as exc:
            raise MalformedError(f"invalid {_CURVE_OF_ALG[alg]} public key bytes") from exc

    @property
    def curve(self) -> str:
        return _CURVE_OF_ALG[self.alg]

    def raw(self, *, compressed: bool = True) -> bytes:
        """Raw Ed25519 bytes, or the SEC1 point (compressed by default, as multicodec wants)."""
        if self.alg == "EdDSA":
            return self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        fmt = (
            serialization.PublicFormat.CompressedPoint
            if compressed
            else serialization.PublicFormat.UncompressedPoint
        )
        return self.key.public_bytes(serialization.Encoding.X962, fmt)

    def jwk(self) -> dict[str, str]:
        """The public JWK, members in RFC 7638 order plus nothing private."""
        if self.alg == "EdDSA":
            return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(self.raw())}
        nums = self.key.public_numbers()  # type: ignore[union-attr]
        size = (self.key.curve.key_size + 7) // 8  # type: ignore[union-attr]  # 32, 48 or 66 bytes
        return {
            "crv": self.curve,
            "kty": "EC",
            "x": b64url_encode(nums.x.to_bytes(size, "big")),
            "y": b64url_encode(nums.y.to_bytes(size, "big")),
        }

    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint (SHA-256, base64url), as used in DPoP ``cnf.jkt``."""
        jwk = self.jwk()
        members = ("crv", "kty", "x") if self.alg == "EdDSA" else ("crv", "kty", "x", "y")
        canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
        return b64url_encode(hashlib.sha256(canonical.encode()).digest())

    @functools.cached_property
    def _check(self) -> Check:
        """This key's verifier from the backend :mod:`vcgate.signatures` picks for its curve."""
        key = self.key
        if getattr(key, "verify", None) is None:  # built from a private key: check with its public half
            key = key.public_key()  # type: ignore[union-attr]
        return signatures.prepare(_CURVE_OF_ALG[self.alg], key)

    def verify(self, alg: str, message: bytes, signature: bytes) -> None:
        """Check a JOSE signature; raise ``SignatureInvalidError`` unless it verifies.

        ``alg`` must be this key's own algorithm: an ES256 signature is never checked with a
        secp256k1 key, whatever the token says. The backend is chosen per curve in
        :mod:`vcgate.signatures` (libsodium, libsecp256k1, OpenSSL).
        """
        if _CURVE_OF_ALG.get(alg) != _CURVE_OF_ALG[self.alg]:
            raise AlgorithmNotAllowedError(f"algorithm {alg} does not fit a {self.curve} key")
        # As pyjwt did: text is taken as its UTF-8 bytes.
        if isinstance(message, str):
            message = message.encode("utf-8")
        if isinstance(signature, str):
            signature = signature.encode("utf-8")
        self._check(message, signature)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.alg == other.alg and self.raw() == other.raw()

    def __hash__(self) -> int:
        return hash((self.alg, self.raw()))


class PrivateKey:
    """A private signing key bound to one algorithm. Its repr never shows key material."""

    __slots__ = ("alg", "_key", "_public")

    def __init__(self, alg: str, key: PrivateCryptoKey) -> None:
        alg = _check_alg(alg)
        if _alg_of_crypto_key(key) != alg:
            raise UnsupportedKeyError(f"key does not fit algorithm {alg}")
        self.alg = alg
        self._key = key
        self._public = PublicKey(alg, key.public_key())

    def __repr__(self) -> str:
        return f"PrivateKey(alg={self.alg!r}, thumbprint={self._public.thumbprint()!r})"

    @classmethod
    def generate(cls, alg: str = "EdDSA") -> PrivateKey:
        alg = _check_alg(alg)
        if alg == "EdDSA":
            return cls(alg, ed25519.Ed25519PrivateKey.generate())
        return cls(alg, ec.generate_private_key(_EC_CURVES[alg]))

    @classmethod
    def from_jwk(cls, jwk: Any) -> PrivateKey:
        if not isinstance(jwk, dict) or "d" not in jwk:
            raise MalformedError("a private JWK must be a JSON object with 'd'")
        crv = jwk.get("crv")
        alg = _ALG_OF_CURVE.get(crv) if isinstance(crv, str) else None
        if alg is None:
            raise UnsupportedKeyError(f"unsupported JWK curve {crv!r}")
        try:
            key = _JWT_ALGS[alg].from_jwk(jwk)
        except (InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            raise MalformedError(f"invalid {crv} private JWK") from exc
        return cls(alg, key)

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except TypeError as exc:
            if password is None:
                raise PassphraseError("the PEM key is encrypted: give its password") from exc
            raise PassphraseError("the PEM key is not encrypted: give no password") from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            if password is not None and b"ENCRYPTED" in data:
                raise PassphraseError("wrong password for the encrypted PEM key") from exc
            raise MalformedError("not a readable PEM private key") from exc
        if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
            raise UnsupportedKeyError(f"unsupported PEM key type {type(key).__name__}")
        return cls(_alg_of_crypto_key(key), key)

    @classmethod
    def from_secp256k1_hex(cls, hex_key: str) -> PrivateKey:
        """Import a raw 32-byte secp256k1 private key in hex (Ethereum style, ``0x`` optional)."""
        text = hex_key.strip().removeprefix("0x").removeprefix("0X")
        try:
            raw = bytes.fromhex(text)
        except ValueError as exc:
            raise MalformedError("the key is not valid hex") from exc
        if len(raw) != 32:
            raise MalformedError("a secp256k1 private key is 32 bytes (64 hex digits)")
        return cls.from_raw_private("ES256K", raw)

    @classmethod
    def from_raw_private(cls, alg: str, raw: bytes) -> PrivateKey:
        """Import a raw private scalar / Ed25519 seed of 32 bytes."""
        alg = _check_alg(alg)
        try:
            if alg == "EdDSA":
                return cls(alg, ed25519.Ed25519PrivateKey.from_private_bytes(raw))
            return cls(alg, ec.derive_private_key(int.from_bytes(raw, "big"), _EC_CURVES[alg]))
        except ValueError as exc:
            raise MalformedError(f"invalid {_CURVE_OF_ALG[alg]} private key") from exc

    @property
    def public_key(self) -> PublicKey:
        return self._public

    @property
    def crypto_key(self) -> PrivateCryptoKey:
        """The pyca/cryptography key object (for pyjwt's ``encode``)."""
        return self._key

    def sign(self, message: bytes) -> bytes:
        """A JOSE signature (Ed25519 bytes, or ``r||s`` for ECDSA)."""
        return _JWT_ALGS[self.alg].sign(message, self._key)

    def private_bytes_raw(self) -> bytes:
        """The 32-byte seed / scalar. Handle with care: this is the secret."""
        if self.alg == "EdDSA":
            return self._key.private_bytes(  # type: ignore[union-attr]
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        size = (self._key.curve.key_size + 7) // 8  # type: ignore[union-attr]
        return self._key.private_numbers().private_value.to_bytes(size, "big")  # type: ignore[union-attr]

    def _pkcs8(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


# --- key files ----------------------------------------------------------------------------
#
# Format (JSON, mode 0600):
#   {"vcgate_key": 1, "alg": ..., "public_jwk": {...}, "did": "did:key:...",
#    "encryption": {"kdf": "scrypt", "salt": b64, "n": 2**15, "r": 8, "p": 1,
#                   "cipher": "A256GCM", "nonce": b64},
#    "ciphertext": b64(AES-256-GCM(PKCS#8 DER))}        -- or, only when asked,
#   {..., "encryption": null, "pkcs8": b64(PKCS#8 DER)}
#
# Why not an encrypted PKCS#8 PEM: cryptography's BestAvailableEncryption picks its own KDF
# cost, which has been weak in some versions; scrypt with explicit parameters and an AEAD
# whose associated data covers the clear header (alg, public key) makes the file's strength
# and integrity explicit. Both parts come from pyca/cryptography.

_SCRYPT_N = 2**15
_SCRYPT_R = 8
_SCRYPT_P = 1
_MAX_KEY_FILE = 64 * 1024


def _kdf(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _aad(header: dict[str, Any]) -> bytes:
    return json.dumps(
        {"alg": header["alg"], "public_jwk": header["public_jwk"]}, sort_keys=True, separators=(",", ":")
    ).encode()


def write_key_file(
    path: str | os.PathLike[str],
    key: PrivateKey,
    *,
    passphrase: str | None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``key`` to ``path`` with mode 0600, encrypted unless ``passphrase`` is None.

    ``passphrase=None`` writes an unencrypted file; callers decide when that is allowed (the
    CLI only with ``--unencrypted``). ``extra`` adds public metadata (e.g. the DID).
    """
    target = Path(path)
    header: dict[str, Any] = {"vcgate_key": 1, "alg": key.alg, "public_jwk": key.public_key.jwk()}
    if extra:
        header.update({k: v for k, v in extra.items() if k not in header})
    if passphrase is None:
        header["encryption"] = None
        header["pkcs8"] = b64url_encode(key._pkcs8())
    else:
        if not passphrase:
            raise PassphraseError("the passphrase must not be empty")
        salt, nonce = os.urandom(16), os.urandom(12)
        header["encryption"] = {
            "kdf": "scrypt",
            "salt": b64url_encode(salt),
            "n": _SCRYPT_N,
            "r": _SCRYPT_R,
            "p": _SCRYPT_P,
            "cipher": "A256GCM",
            "nonce": b64url_encode(nonce),
        }
        secret = _kdf(passphrase, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
        header["ciphertext"] = b64url_encode(AESGCM(secret).encrypt(nonce, key._pkcs8(), _aad(header)))
    data = (json.dumps(header, indent=2) + "\n").encode()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{target} exists; refusing to overwrite a key file") from exc
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), stat.S_IRUSR | stat.S_IWUSR)
        fh.write(data)
    return target


def read_key_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The clear part of a key file (alg, public JWK, metadata), no passphrase needed."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large to be a key file")
    try:
        header = json.loads(data)
    except json.JSONDecodeError as exc:
        raise KeyFileError(
            f"{path} is not a vcgate key file (not JSON: {exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    except (ValueError, RecursionError) as exc:  # not UTF-8; nested too deeply
        raise KeyFileError(f"{path} is not a vcgate key file (not JSON)") from exc
    if not isinstance(header, dict) or header.get("vcgate_key") != 1:
        raise KeyFileError(f"{path} is not a vcgate key file")
    if header.get("alg") not in _ALG_OF_CURVE.values() or not isinstance(header.get("public_jwk"), dict):
        raise KeyFileError(f"{path} has no valid alg / public_jwk")
    if not (header.get("encryption") is None or isinstance(header.get("encryption"), dict)):
        raise KeyFileError(f"{path} has an invalid 'encryption' member")
    try:
        public = PublicKey.from_jwk(header["public_jwk"])
    except VCGateError as exc:
        raise KeyFileError(f"{path} has an invalid public_jwk: {exc.message}") from exc
    if public.alg != header["alg"]:
        raise KeyFileError(f"{path}: public_jwk does not fit alg {header['alg']}")
    return header


def read_key_file(path: str | os.PathLike[str], *, passphrase: str | None) -> PrivateKey:
    """Load a key file written by :func:`write_key_file`.

    Raises ``PassphraseError`` when the file is encrypted and the passphrase is missing or
    wrong, ``KeyFileError`` when the file is damaged. AES-GCM cannot tell a wrong passphrase
    from an edited ciphertext or public part: both raise ``PassphraseError`` for an encrypted
    file.
    """
    header = read_key_header(path)
    enc = header.get("encryption")
    try:
        if enc is None:
            der = b64url_decode(header["pkcs8"])
        else:
            if passphrase is None:
                raise PassphraseError(f"{path} is encrypted: set {PASSPHRASE_ENV} to its passphrase")
            if enc.get("kdf") != "scrypt" or enc.get("cipher") != "A256GCM":
                raise KeyFileError(f"{path}: unsupported encryption {enc.get('kdf')}/{enc.get('cipher')}")
            n, r, p = int(enc["n"]), int(enc["r"]), int(enc["p"])
            if not (2**10 <= n <= 2**20 and 1 <= r <= 16 and 1 <= p <= 4):
                raise KeyFileError(f"{path}: scrypt parameters out of range")
            secret = _kdf(passphrase, b64url_decode(enc["salt"]), n, r, p)
            try:
                der = AESGCM(secret).decrypt(
                    b64url_decode(enc["nonce"]), b64url_decode(header["ciphertext"]), _aad(header)
                )
            except InvalidTag as exc:
                raise PassphraseError(
                    f"wrong passphrase for {path} (or the file was altered): check {PASSPHRASE_ENV}"
                ) from exc
        key = serialization.load_der_private_key(der, password=None)
    except (KeyError, TypeError, ValueError, AttributeError, MalformedError) as exc:
        raise KeyFileError(f"{path} is damaged") from exc
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise KeyFileError(f"{path} holds an unsupported key type")
    priv = PrivateKey(_alg_of_crypto_key(key), key)
    if priv.alg != header["alg"] or priv.public_key.jwk() != PublicKey.from_jwk(header["public_jwk"]).jwk():
        raise KeyFileError(f"{path}: the public part does not match the private key")
    return priv


# --- the passphrase setting --------------------------------------------------------------

#: The one environment variable that holds a key file's passphrase, read the same way by the
#: CLI, ``Holder``, ``Gate``, ``vcgate serve`` and the plugins (see docs/keys.md).
PASSPHRASE_ENV = "VCGATE_PASSPHRASE"
#: Its former name for gateways (``vcgate serve`` and the plugins read it until 0.2).
DEPRECATED_PASSPHRASE_ENV = "VCGATE_KEY_PASSPHRASE"


def passphrase_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """The passphrase in ``$VCGATE_PASSPHRASE`` (None when unset).

    ``$VCGATE_KEY_PASSPHRASE`` is accepted as a deprecated alias with a warning; when both are
    set, ``VCGATE_PASSPHRASE`` wins. A variable that is set but empty is an error, not "no
    passphrase": an empty value is almost always a broken secret mount.
    """
    env = os.environ if environ is None else environ
    name = PASSPHRASE_ENV
    value = env.get(PASSPHRASE_ENV)
    if value is None:
        value = env.get(DEPRECATED_PASSPHRASE_ENV)
        if value is None:
            return None
        name = DEPRECATED_PASSPHRASE_ENV
        warnings.warn(
            f"{DEPRECATED_PASSPHRASE_ENV} is deprecated: set {PASSPHRASE_ENV} instead",
            FutureWarning,
            stacklevel=2,
        )
    if not value:
        raise PassphraseError(f"{name} is set but empty: set {PASSPHRASE_ENV} to the key file's passphrase")
    return value
