"""did methods served by didkit in a child process (vcgate.did.didkit).

Tests marked with the ``didkit`` fixture run the real didkit 0.3.3 in a child; the others
stand in for the child with small shell scripts passed as ``python=`` (the adapter runs
``<python> -I -c <script> <did>``), so crashes, hangs and garbage are reproducible.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vcgate.did import Resolver
from vcgate.did.didkit import DidkitMethod, didkit_methods
from vcgate.did.key import did_key_from_public_key
from vcgate.errors import (
    DIDMethodNotSupportedError,
    DIDNotFoundError,
    DIDResolutionError,
    InvalidDIDError,
)
from vcgate.keys import PrivateKey

PKH = "did:pkh:eip155:1:0xb9c5714089478a327f09197987f16f9e5d936e8a"
PKH_SOL = "did:pkh:sol:CKg5d12Jhpej1JqtmxLJgaFqqeYjxgPqToJ4LBdvG9Ev"
DID_KEY = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
MARKER = "vcgate-didkit/1"  # the child's answer protocol; pinned here on purpose


@pytest.fixture
def didkit() -> None:
    """Real didkit in this interpreter's environment: skip when missing, fail under CI."""
    if importlib.util.find_spec("didkit") is None:  # finds, does not import
        message = "didkit is not installed: pip install 'vcgate[didkit]'"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + " (CI runs every test)")
        pytest.skip(message)


def fake_python(tmp_path: Path, body: str, name: str = "python") -> str:
    """An executable standing in for the interpreter; it gets ``-I -c <script> <did>``."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def answer_line(obj: dict) -> str:
    return json.dumps({**obj, "marker": MARKER})


# --- real didkit ----------------------------------------------------------------------------


def test_resolves_did_pkh(didkit: None) -> None:
    imported_before = "didkit" in sys.modules
    doc = DidkitMethod("pkh").resolve(PKH)
    assert doc["id"] == PKH
    (vm,) = doc["verificationMethod"]
    assert vm["id"] == PKH + "#blockchainAccountId"
    assert vm["type"] == "EcdsaSecp256k1RecoveryMethod2020"
    assert vm["blockchainAccountId"] == "eip155:1:0xb9c5714089478a327f09197987f16f9e5d936e8a"
    assert doc["assertionMethod"] == [vm["id"]]
    if not imported_before:  # another test module may have imported it; then see the next test
        assert "didkit" not in sys.modules


def test_parent_never_imports_didkit(didkit: None) -> None:
    code = (
        "import sys\n"
        "from vcgate.did.didkit import DidkitMethod\n"
        f"DidkitMethod('pkh').resolve({PKH!r})\n"
        "assert 'didkit' not in sys.modules, 'didkit was imported by the parent'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]


def test_resolves_did_key(didkit: None) -> None:
    doc = DidkitMethod("key").resolve(DID_KEY)
    assert doc["id"] == DID_KEY
    (vm,) = doc["verificationMethod"]
    assert vm["id"] == f"{DID_KEY}#{DID_KEY.removeprefix('did:key:')}"
    assert vm["publicKeyJwk"] == {"kty": "OKP", "crv": "Ed25519", "x": "Lm_M42cB3HkUiODQsXRcweM6TByfzEHGO9ND274JcOY"}


def test_resolver_parses_pkh_document(didkit: None) -> None:
    resolver = Resolver([DidkitMethod("pkh")])
    doc = resolver.resolve(PKH)
    assert doc.id == PKH
    # blockchainAccountId carries no public key: listed, authorised, but not usable by vcgate.
    assert doc.relationships["assertionMethod"] == (PKH + "#blockchainAccountId",)
    assert doc.methods == {}
    assert PKH + "#blockchainAccountId" in doc.skipped
    assert resolver.resolve(PKH) is doc  # cached: no second child


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "ES256K"])
def test_resolver_gets_same_key_as_vcgate_did_key(didkit: None, alg: str) -> None:
    public = PrivateKey.generate(alg).public_key
    did = did_key_from_public_key(public)
    doc = Resolver([DidkitMethod("key")]).resolve(did)
    (vm,) = doc.methods_for("assertionMethod")
    assert vm.public_key == public


def test_pkh_sol_has_usable_ed25519_key(didkit: None) -> None:
    doc = Resolver([DidkitMethod("pkh")]).resolve(PKH_SOL)
    vms = doc.methods_for("assertionMethod", "EdDSA")
    # didkit lists the account's key twice: as Ed25519VerificationKey2018 and SolanaMethod2021.
    assert [vm.id for vm in vms] == [PKH_SOL + "#controller", PKH_SOL + "#SolanaMethod2021"]
    assert vms[0].public_key == vms[1].public_key


@pytest.mark.parametrize(
    ("method", "did", "error", "code"),
    [
        pytest.param("pkh", "did:pkh:eip155:1:nothex", InvalidDIDError, "did_invalid", id="pkh-bad-address"),
        pytest.param("pkh", "did:pkh:nochain:abc", InvalidDIDError, "did_invalid", id="pkh-unknown-chain"),
        pytest.param("key", "did:key:zzz", DIDNotFoundError, "did_not_found", id="key-not-a-key"),
        pytest.param("sol", "did:sol:abc", DIDMethodNotSupportedError, "did_method_not_supported", id="sol"),
        pytest.param("ion", "did:ion:abc", DIDResolutionError, "did_resolution_failed", id="ion-no-endpoint"),
    ],
)
def test_didkit_errors_are_typed(didkit: None, method: str, did: str, error: type, code: str) -> None:
    with pytest.raises(error) as info:
        DidkitMethod(method).resolve(did)
    assert type(info.value) is error
    assert info.value.code == code


def test_free_text_error_stays_out_of_the_message(didkit: None) -> None:
    with pytest.raises(DIDResolutionError) as info:
        DidkitMethod("ion").resolve("did:ion:abc")
    assert info.value.code == "did_resolution_failed"
    assert "Sidetree" not in info.value.message


def test_didkit_missing(tmp_path: Path) -> None:
    # The real child script under a real interpreter, with didkit made unimportable.
    python = fake_python(
        tmp_path,
        f'shift 2\nexec "{sys.executable}" -I -c '
        "'import sys; sys.modules[\"didkit\"] = None; exec(compile(sys.argv[1], \"<child>\", \"exec\"))' \"$@\"",
    )
    with pytest.raises(DIDMethodNotSupportedError) as info:
        DidkitMethod("pkh", python=python).resolve(PKH)
    assert info.value.code == "did_method_not_supported"
    assert "pip install 'vcgate[didkit]'" in info.value.message


# --- the adapter, with stand-in children ------------------------------------------------------


def test_timeout(tmp_path: Path) -> None:
    python = fake_python(tmp_path, "exec sleep 30")
    start = time.monotonic()
    with pytest.raises(DIDResolutionError) as info:
        DidkitMethod("pkh", python=python, timeout=0.3).resolve(PKH)
    assert type(info.value) is DIDResolutionError
    assert info.value.code == "did_resolution_failed"
    assert "0.3 s" in info.value.message
    assert time.monotonic() - start < 5


def test_timeout_ends_grandchildren(tmp_path: Path) -> None:
    # sh waits for sleep, which holds the pipes open: only killing the group ends it promptly.
    python = fake_python(tmp_path, "sleep 30\necho done")
    start = time.monotonic()
    with pytest.raises(DIDResolutionError) as info:
        DidkitMethod("pkh", python=python, timeout=0.3).resolve(PKH)
    assert info.value.code == "did_resolution_failed"
    assert time.monotonic() - start < 1.5


def test_crash_after_complete_answer_is_fine(tmp_path: Path) -> None:
    line = answer_line({"status": "ok", "document": {"id": PKH}})
    python = fake_python(tmp_path, f"echo '{line}'\nkill -SEGV $$")
    assert DidkitMethod("pkh", python=python).resolve(PKH) == {"id": PKH}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param("echo 'Fatal Python error: boom' >&2\nkill -SEGV $$", "SIGSEGV", id="segfault-no-answer"),
        pytest.param("kill -ABRT $$", "SIGABRT", id="abort-no-answer"),
        pytest.param("echo 'Traceback: boom' >&2\nexit 3", "exit status 3", id="exit-3-no-answer"),
        pytest.param(
            "printf '%s' '{\"status\":\"ok\",\"document\":{\"id\":'\nkill -SEGV $$", "SIGSEGV", id="cut-short"
        ),
    ],
)
def test_crash_without_answer(tmp_path: Path, body: str, words: str) -> None:
    python = fake_python(tmp_path, body)
    with pytest.raises(DIDResolutionError) as info:
        DidkitMethod("pkh", python=python).resolve(PKH)
    assert type(info.value) is DIDResolutionError
    assert info.value.code == "did_resolution_failed"
    assert words in info.value.message
    assert "boom" not in info.value.message  # no stderr in refusals


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("echo 'not json at all'", id="garbage"),
        pytest.param("echo '[1, 2, 3]'", id="json-not-object"),
        pytest.param("echo '{\"status\": \"ok\", \"document\": {}}'", id="no-marker"),
        pytest.param(f"echo '{answer_line({'status': 'ok', 'document': []})}'", id="document-not-object"),
        pytest.param(f"echo '{answer_line({'status': 'weird'})}'", id="unknown-status"),
        pytest.param(f"echo '{answer_line({'status': 'ok', 'document': {}})}'\necho more", id="two-lines"),
        pytest.param("printf '\\377\\376\\n'", id="not-utf8"),
        pytest.param("head -c 100000 /dev/zero | tr '\\0' '['; echo", id="deep-nesting"),
        pytest.param("true", id="silent-success"),
    ],
)
def test_garbage_answer(tmp_path: Path, body: str) -> None:
    python = fake_python(tmp_path, body)
    with pytest.raises(DIDResolutionError) as info:
        DidkitMethod("pkh", python=python).resolve(PKH)
    assert type(info.value) is DIDResolutionError
    assert info.value.code == "did_resolution_failed"
    assert "not json" not in info.value.message


def test_oversized_answer(tmp_path: Path) -> None:
    python = fake_python(tmp_path, "exec yes")
    start = time.monotonic()
    with pytest.raises(DIDResolutionError) as info:
        DidkitMethod("pkh", python=python, max_bytes=4096).resolve(PKH)
    assert info.value.code == "did_resolution_failed"
    assert "4096 bytes" in info.value.message
    assert time.monotonic() - start < 5


def test_free_text_error_from_child(tmp_path: Path) -> None:
    line = answer_line({"status": "error", "error": "error sending request for url (http://10.0.0.1/)"})
    python = fake_python(tmp_path, f"echo '{line}'")
    with pytest.raises(DIDResolutionError) as info:
        DidkitMethod("pkh", python=python).resolve(PKH)
    assert type(info.value) is DIDResolutionError
    assert info.value.code == "did_resolution_failed"
    assert "10.0.0.1" not in info.value.message


def test_interpreter_not_found(tmp_path: Path) -> None:
    with pytest.raises(DIDResolutionError) as info:
        DidkitMethod("pkh", python=str(tmp_path / "no-such-python")).resolve(PKH)
    assert type(info.value) is DIDResolutionError
    assert info.value.code == "did_resolution_failed"
    assert isinstance(info.value.__cause__, OSError)


# --- checks before any child runs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("did", "error", "code"),
    [
        pytest.param("not a did", InvalidDIDError, "did_invalid", id="not-a-did"),
        pytest.param(PKH + "#frag", InvalidDIDError, "did_invalid", id="fragment"),
        pytest.param("did:ethr:0xb9c5714089478a327f09197987f16f9e5d936e8a", DIDMethodNotSupportedError,
                     "did_method_not_supported", id="other-method"),
    ],
)
def test_refused_before_spawning(tmp_path: Path, did: str, error: type, code: str) -> None:
    flag = tmp_path / "spawned"
    python = fake_python(tmp_path, f"touch '{flag}'")
    with pytest.raises(error) as info:
        DidkitMethod("pkh", python=python).resolve(did)
    assert type(info.value) is error
    assert info.value.code == code
    assert not flag.exists()


@pytest.mark.parametrize("method", ["web", "onion", "webkey"])
def test_methods_that_fetch_from_the_did_host_are_refused(method: str) -> None:
    with pytest.raises(ValueError, match=f"did:{method}"):
        DidkitMethod(method)


@pytest.mark.parametrize("method", ["", "PKH", "pkh:x", "did:pkh"])
def test_bad_method_name(method: str) -> None:
    with pytest.raises(ValueError):
        DidkitMethod(method)


def test_configuration_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        DidkitMethod("pkh", 5.0)  # type: ignore[misc]


def test_didkit_methods_helper() -> None:
    methods = didkit_methods(["pkh", "ethr", "key"], timeout=3.0)
    assert [m.name for m in methods] == ["pkh", "ethr", "key"]
    assert all(m.timeout == 3.0 for m in methods)
    assert [m.cacheable_forever for m in methods] == [True, False, True]
    assert Resolver(methods).methods == ("pkh", "ethr", "key")
