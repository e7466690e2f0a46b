"""Differential test of vcgate's signature backends against pyca/cryptography (OpenSSL).

vcgate verifies Ed25519 with libsodium and secp256k1 with libsecp256k1 (``signatures.FAST``);
``signatures.REFERENCE`` is pyca/cryptography for every curve. The same inputs go through both,
and any disagreement fails:

* every Wycheproof vector of the two curves (Ed25519; secp256k1 in the JOSE ``r||s`` form, and
  every case of the DER file that has an ``r||s`` form), also checked against Wycheproof's own
  verdict;
* every Ed25519 and secp256k1 did:key vector: the key vcgate decodes from the DID, signatures by
  the vector's private key over many messages, and their mutations;
* a fixed, seeded mutation loop (about 200,000 signatures: bit flips, truncations, the other
  party's signature, ``S + L``, ``n - s``, out-of-range ``r``/``s``, random bytes, wrong
  message, other key) and a hypothesis search over arbitrary messages and signature bytes.

The one intended difference is a table of its own (``test_libsodium_is_stricter``): small-order
and non-canonical Ed25519 points, which OpenSSL accepts (a universal forgery with ``S = 0``) and
libsodium, hence vcgate, refuses. High-S ES256K signatures must verify in both: vcgate
normalises S before libsecp256k1 sees it (docs/credentials.md, "Signature backends").
P-256 is not here: both sides would be the same OpenSSL call.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vcgate import signatures
from vcgate.credentials import Verifier, issue_credential
from vcgate.did.key import did_key_from_public_key, public_key_from_did_key
from vcgate.errors import SignatureInvalidError
from vcgate.keys import PrivateKey, PublicKey, b64url_encode

VECTORS = Path(__file__).resolve().parent / "vectors"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1 order
L = 2**252 + 27742317777372353535851937790883648493  # Ed25519 group order
CURVE = {"EdDSA": "Ed25519", "ES256K": "secp256k1"}


def _load(path: str) -> dict[str, Any]:
    return json.loads((VECTORS / path).read_text())


class Pair:
    """One public key, prepared in both backends; ``verdict`` fails on a disagreement."""

    def __init__(self, key: PublicKey) -> None:
        self.key = key
        self.fast = signatures.FAST[key.curve](key.key)
        self.ref = signatures.REFERENCE[key.curve](key.key)
        self.count = 0

    @staticmethod
    def _run(check: Callable[[bytes, bytes], None], msg: bytes, sig: bytes) -> bool:
        try:
            check(msg, sig)
        except SignatureInvalidError:
            return False  # anything that is not a SignatureInvalidError fails the test
        return True

    def verdict(self, msg: bytes, sig: bytes) -> bool:
        fast, ref = self._run(self.fast, msg, sig), self._run(self.ref, msg, sig)
        self.count += 1
        assert fast == ref, f"{self.key.curve}: fast={fast} reference={ref} msg={msg.hex()[:64]} sig={sig.hex()}"
        return fast


def test_backends_are_the_intended_ones() -> None:
    assert {c: signatures.backend_name(c) for c in signatures.FAST} == {
        "Ed25519": "libsodium",
        "secp256k1": "libsecp256k1",
        "P-256": "openssl",
        "P-384": "openssl",
        "P-521": "openssl",
    }
    for curve in ("Ed25519", "secp256k1"):
        assert signatures.FAST[curve] is not signatures.REFERENCE[curve]


# --- Wycheproof --------------------------------------------------------------------------------

WYCHEPROOF = {
    "ed25519": ("EdDSA", "wycheproof/ed25519_test.json"),
    "secp256k1-p1363": ("ES256K", "wycheproof/ecdsa_secp256k1_sha256_p1363_test.json"),
    "secp256k1-der": ("ES256K", "wycheproof/ecdsa_secp256k1_sha256_test.json"),
}


def _jose_form(der: bytes) -> bytes | None:
    """The ``r||s`` form of a DER signature, or None when it has none (bad DER, r or s too long)."""
    try:
        r, s = decode_dss_signature(der)
    except ValueError:
        return None
    if not (0 <= r < 2**256 and 0 <= s < 2**256):
        return None
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.mark.parametrize("name", list(WYCHEPROOF))
def test_wycheproof(name: str) -> None:
    alg, path = WYCHEPROOF[name]
    data = _load(path)
    ran = skipped_der = 0
    for group in data["testGroups"]:
        pub = group["publicKey"]
        pair = Pair(PublicKey.from_raw(alg, bytes.fromhex(pub["pk"] if alg == "EdDSA" else pub["uncompressed"])))
        for test in group["tests"]:
            msg, sig = bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
            if name == "secp256k1-der":
                jose = _jose_form(sig)
                if jose is None:
                    assert test["result"] != "valid" or "BER" in str(test["flags"]), test
                    skipped_der += 1
                    continue
                sig = jose
            ok = pair.verdict(msg, sig)
            ran += 1
            if test["result"] == "valid":
                assert ok, f"tc{test['tcId']} {test['comment']} must verify"
            elif test["result"] == "invalid" and name != "secp256k1-der":
                # (a DER case can be invalid for its encoding only; its r||s may be a fine signature)
                assert not ok, f"tc{test['tcId']} {test['comment']} must be refused"
    assert ran + skipped_der == data["numberOfTests"]
    assert ran >= {"ed25519": 151, "secp256k1-p1363": 252, "secp256k1-der": 240}[name]  # the other DER cases have no r||s form


def test_wycheproof_high_s_cases_verify() -> None:
    """The Wycheproof secp256k1 signatures libsecp256k1 alone would refuse (high S) verify in vcgate."""
    data = _load("wycheproof/ecdsa_secp256k1_sha256_test.json")
    high = 0
    for group in data["testGroups"]:
        key = PublicKey.from_raw("ES256K", bytes.fromhex(group["publicKey"]["uncompressed"]))
        for test in group["tests"]:
            jose = _jose_form(bytes.fromhex(test["sig"]))
            if test["result"] == "valid" and jose is not None and int.from_bytes(jose[32:], "big") > N // 2:
                key.verify("ES256K", bytes.fromhex(test["msg"]), jose)
                high += 1
    assert high >= 50  # the DESIGN notes 72 valid high-S cases in this file


# --- did:key vectors and the mutation loop -------------------------------------------------------


def _did_key_pairs() -> list[tuple[str, PrivateKey, PublicKey]]:
    out = []
    for file, alg in (("ed25519-x25519.json", "EdDSA"), ("secp256k1.json", "ES256K")):
        for did, entry in _load(f"did-key/{file}").items():
            vm = entry["verificationKeyPair"]
            if "privateKeyJwk" in vm:
                priv = PrivateKey.from_jwk(vm["privateKeyJwk"])
            else:
                raw = base58.b58decode(vm["privateKeyBase58"]) if "privateKeyBase58" in vm else bytes.fromhex(entry["seed"])
                priv = PrivateKey.from_raw_private(alg, raw)
            out.append((did, priv, public_key_from_did_key(did)))
    return out


DID_KEYS = _did_key_pairs()


def test_did_key_vectors_are_all_here() -> None:
    algs = [priv.alg for _did, priv, _pub in DID_KEYS]
    assert (algs.count("EdDSA"), algs.count("ES256K")) == (5, 6)
    for did, priv, pub in DID_KEYS:
        assert pub == priv.public_key, did  # the key vcgate resolves is the vector's own


def _mutations(rng: random.Random, alg: str, msg: bytes, sig: bytes, other: bytes) -> list[tuple[bytes, bytes]]:
    """Mutated (message, signature) pairs of one valid signature (its own first: it must verify)."""
    flip = bytearray(sig)
    bit = rng.randrange(len(sig) * 8)
    flip[bit // 8] ^= 1 << (bit % 8)
    mflip = bytearray(msg or b"\x00")
    mbit = rng.randrange(len(mflip) * 8)
    mflip[mbit // 8] ^= 1 << (mbit % 8)
    byte = bytearray(sig)
    byte[rng.randrange(len(sig))] = rng.randrange(256)
    out = [
        (msg, sig),
        (msg, bytes(flip)),
        (bytes(mflip), sig),
        (msg, bytes(byte)),
        (msg, other),  # a valid signature of another message
        (msg, sig[:-1]),
        (msg, sig + b"\x00"),
        (msg, rng.randbytes(len(sig))),
        (msg + b"\x00", sig),
    ]
    hi = int.from_bytes(sig[32:], "big") if alg == "ES256K" else int.from_bytes(sig[32:], "little")
    if alg == "EdDSA":
        # S + L and S + 2L: the same scalar, non-canonical (RFC 8032 requires S < L)
        for k in (1, 2, rng.randrange(3, 15)):
            if hi + k * L < 2**256:
                out.append((msg, sig[:32] + (hi + k * L).to_bytes(32, "little")))
        out.append((msg, sig[:32] + bytes(32)))  # S = 0
        out.append((msg, bytes(32) + sig[32:]))  # R = 0 (a small-order encoding)
    else:
        r = int.from_bytes(sig[:32], "big")
        twin = (N - hi).to_bytes(32, "big")
        out += [
            (msg, sig[:32] + twin),  # the other S: valid in JOSE, high or low
            (msg, sig[32:] + sig[:32]),  # r and s swapped
            (msg, sig[:32] + (hi + N).to_bytes(33, "big")[-32:]) if hi + N < 2**256 else (msg, sig[:32] + bytes(32)),
            (msg, (r + N).to_bytes(33, "big")[-32:] + sig[32:]) if r + N < 2**256 else (msg, bytes(32) + sig[32:]),
            (msg, sig[:32] + N.to_bytes(32, "big")),
            (msg, N.to_bytes(32, "big") + sig[32:]),
            (msg, bytes(64)),
            (msg, sig[:32] + (1).to_bytes(32, "big")),
            (msg, (N - 1).to_bytes(32, "big") + sig[32:]),
        ]
    return out


#: Signatures checked by test_mutation_loop: valid ones of the did:key and generated keys, and
#: their mutations. Each goes through both backends.
MUTATION_TARGET = 200_000


def test_mutation_loop() -> None:
    rng = random.Random(1303)
    keys = [(priv, pub) for _did, priv, pub in DID_KEYS]
    keys += [(k, k.public_key) for k in (PrivateKey.generate(a) for a in ("EdDSA", "ES256K") for _ in range(8))]
    # An Ed25519 pair of verifies costs ~180 us, a secp256k1 pair ~430 us (OpenSSL's secp256k1 is
    # slow): most of the budget goes to Ed25519 so the test stays under a minute.
    share = {"EdDSA": 0.88, "ES256K": 0.12}
    per_key = {alg: int(MUTATION_TARGET * share[alg] / sum(1 for k, _ in keys if k.alg == alg)) for alg in share}
    accepted = refused = 0
    for priv, pub in keys:
        pair = Pair(pub)
        alg = priv.alg
        while pair.count < per_key[alg]:
            msg = rng.randbytes(rng.choice((0, 1, 31, 32, 33, 64, 200, 1000, rng.randrange(2000))))
            other_msg = msg + b"!"
            sig, other = priv.sign(msg), priv.sign(other_msg)
            for i, (m, s) in enumerate(_mutations(rng, alg, msg, sig, other)):
                ok = pair.verdict(m, s)
                if i == 0:
                    assert ok, "a fresh signature must verify"
                accepted += ok
                refused += not ok
    total = accepted + refused
    assert total >= MUTATION_TARGET * 0.95
    assert accepted >= total // 20 and refused >= total // 2  # both verdicts well represented


# --- hypothesis: arbitrary bytes ---------------------------------------------------------------

HYP_KEYS = {alg: PrivateKey.from_raw_private(alg, hashlib.sha256(alg.encode()).digest()) for alg in CURVE}
HYP_PAIRS = {alg: Pair(k.public_key) for alg, k in HYP_KEYS.items()}


@settings(max_examples=2000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(
    alg=st.sampled_from(sorted(CURVE)),
    msg=st.binary(max_size=300),
    sig=st.one_of(st.binary(min_size=64, max_size=64), st.binary(max_size=80)),
    edit=st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=3),
    sign=st.booleans(),
)
def test_hypothesis_signatures(alg: str, msg: bytes, sig: bytes, edit: list[tuple[int, int]], sign: bool) -> None:
    """Arbitrary signature bytes, or a real signature with a few bytes overwritten."""
    if sign:
        real = bytearray(HYP_KEYS[alg].sign(msg))
        for pos, value in edit:
            real[pos] = value
        sig = bytes(real)
    ok = HYP_PAIRS[alg].verdict(msg, sig)
    if sign and not edit:
        assert ok


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(point=st.binary(min_size=32, max_size=32), msg=st.binary(max_size=64), sig=st.binary(min_size=64, max_size=64))
def test_hypothesis_ed25519_keys(point: bytes, msg: bytes, sig: bytes) -> None:
    """Arbitrary 32-byte public keys: whatever cryptography imports, both backends judge alike."""
    try:
        key = PublicKey.from_raw("EdDSA", point)
    except Exception:
        return
    if point in SMALL_ORDER or _ed25519_non_canonical(point):
        return  # the documented difference, tested below
    Pair(key).verdict(msg, sig)


# --- the intended difference: libsodium refuses small-order and non-canonical Ed25519 points ------

# The 7 encodings libsodium lists as small order (ge25519_has_small_order), with and without the
# sign bit: order 1, 2, 4 and 8 points, and non-canonical encodings (y = p, p + 1, p - 1 + p ...).
_SMALL = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]
SMALL_ORDER = {bytes.fromhex(h) for h in _SMALL} | {
    bytes.fromhex(h)[:31] + bytes([bytes.fromhex(h)[31] | 0x80]) for h in _SMALL
}


def _ed25519_non_canonical(point: bytes) -> bool:
    return int.from_bytes(point, "little") & (2**255 - 1) >= 2**255 - 19


def _forgeries(point: bytes) -> list[tuple[bytes, bytes]]:
    """(message, signature) pairs OpenSSL accepts for the small-order key ``point``, found by
    trying R in the small-order set with S = 0 (needs no secret at all)."""
    ref = signatures.REFERENCE["Ed25519"](PublicKey.from_raw("EdDSA", point).key)
    found = []
    for r in sorted(SMALL_ORDER):
        for i in range(12):
            msg, sig = b"forged %d" % i, r + bytes(32)
            try:
                ref(msg, sig)
            except SignatureInvalidError:
                continue
            found.append((msg, sig))
    return found


@pytest.mark.parametrize("point", [pytest.param(p, id=p.hex()[:8] + "-" + p.hex()[-4:]) for p in sorted(SMALL_ORDER)])
def test_libsodium_is_stricter(point: bytes) -> None:
    """A small-order public key: OpenSSL accepts S = 0 forgeries of it, vcgate refuses them."""
    forgeries = _forgeries(point)
    assert forgeries, "OpenSSL accepts a forgery for every small-order key (else this table is moot)"
    key = PublicKey.from_raw("EdDSA", point)
    for msg, sig in forgeries:
        with pytest.raises(SignatureInvalidError):
            key.verify("EdDSA", msg, sig)


def test_signer_made_small_order_r_refused() -> None:
    """A key holder can make R the identity (S = k * a): valid under RFC 8032's equation and in
    OpenSSL, refused by libsodium. Nobody signs like that but on purpose; vcgate refuses it."""
    seed = bytes(range(32))
    priv = PrivateKey.from_raw_private("EdDSA", seed)
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a = (a & ~7 & (2**254 - 1)) | 2**254
    r_enc, pk = bytes.fromhex(_SMALL[1]), priv.public_key.raw()
    msg = b"identity R"
    k = int.from_bytes(hashlib.sha512(r_enc + pk + msg).digest(), "little") % L
    sig = r_enc + (k * a % L).to_bytes(32, "little")
    signatures.REFERENCE["Ed25519"](priv.public_key.key)(msg, sig)  # OpenSSL: valid
    with pytest.raises(SignatureInvalidError):
        priv.public_key.verify("EdDSA", msg, sig)


def test_small_order_issuer_credential_refused() -> None:
    """The JWT attack the rule stops: a did:key of the identity point "issues" a VC-JWT with an
    S = 0 signature that OpenSSL would accept. vcgate refuses it as signature_invalid."""
    point = bytes.fromhex(_SMALL[1])
    key = PublicKey.from_raw("EdDSA", point)
    did = did_key_from_public_key(key)
    holder = PrivateKey.generate("EdDSA")
    real = issue_credential(
        holder, issuer=did, kid=f"{did}#{did.method_specific_id}", subject="did:example:me",
        types=["ModelAccessCredential"], valid_from=0,
    )
    h64, p64, _ = real.split(".")
    ref = signatures.REFERENCE["Ed25519"](key.key)
    for r in sorted(SMALL_ORDER):
        forged = f"{h64}.{p64}.{b64url_encode(r + bytes(32))}"
        try:
            ref(f"{h64}.{p64}".encode(), r + bytes(32))
        except SignatureInvalidError:
            continue
        break
    else:
        pytest.fail("no S = 0 forgery OpenSSL accepts")
    with pytest.raises(SignatureInvalidError) as exc:
        Verifier(clock=lambda: 1000.0).verify_credential(forged)
    assert exc.value.code == "signature_invalid"


def test_high_s_es256k_verifies() -> None:
    """vcgate's own ES256K signer (OpenSSL) emits high S about half the time: both forms verify."""
    key = PrivateKey.generate("ES256K")
    seen_high = 0
    for i in range(40):
        msg = b"m%d" % i
        sig = key.sign(msg)
        s = int.from_bytes(sig[32:], "big")
        seen_high += s > N // 2
        twin = sig[:32] + (N - s).to_bytes(32, "big")
        key.public_key.verify("ES256K", msg, sig)
        key.public_key.verify("ES256K", msg, twin)
    assert seen_high  # 40 signatures without one high S: p = 2**-40
