"""Every loader of untrusted or operator-written input fails with a vcgate error, nothing else.

Key files, mirror checkpoints, JSON-RPC answers, DID documents and status-list bitstrings get
arbitrary (hypothesis) input; each must answer with a value or a :class:`VCGateError` subclass
with its code -- never a ``ValueError``, ``RecursionError`` or ``AttributeError`` from below.
(The policy loader has its own table and fuzzing in tests/policy/test_loader_fuzz.py.)
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.chain.helpers import require_chain_stack
from vcgate.errors import VCGateError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
DEEP = "[" * 5000 + "]" * 5000


# --- key files --------------------------------------------------------------------------------------


def _read_key(tmp_path, data: bytes) -> None:
    from vcgate.keys import read_key_file

    path = tmp_path / "k.json"
    path.write_bytes(data)
    try:
        read_key_file(path, passphrase="pw")
    except VCGateError as exc:
        assert exc.code in ("key_file_invalid", "passphrase_invalid", "key_error") or exc.code, exc


@FUZZ
@given(data=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_key_file_of_any_content(tmp_path, data):
    _read_key(tmp_path, data)


@FUZZ
@given(member=st.sampled_from(["alg", "public_jwk", "pkcs8", "encryption", "vcgate_key"]), value=json_values)
def test_key_file_with_any_member_value(tmp_path, member, value):
    from vcgate.keys import PrivateKey, write_key_file

    path = tmp_path / "good.json"
    path.unlink(missing_ok=True)
    write_key_file(path, PrivateKey.generate("EdDSA"), passphrase=None)
    doc = json.loads(path.read_text())
    doc[member] = value
    _read_key(tmp_path, json.dumps(doc).encode())


def test_key_file_nested_too_deeply_and_its_json_position(tmp_path):
    from vcgate.keys import read_key_file

    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    with pytest.raises(VCGateError):
        read_key_file(path, passphrase=None)
    path.write_text('{"vcgate_key": 1,\n  "alg": }')
    with pytest.raises(VCGateError, match=r"line 2 column 10"):
        read_key_file(path, passphrase=None)


# --- mirror checkpoints -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | json_values.map(json.dumps) | st.just(DEEP))
def test_mirror_checkpoint_of_any_content_is_rejected_not_raised(tmp_path, text):
    require_chain_stack()
    from tests.status.test_mirror import FakeChain
    from vcgate.status import mirror as mirror_module
    from vcgate.status.mirror import RevocationMirror

    node = FakeChain()
    node.mine()
    path = tmp_path / "cp.json"
    path.write_text(text)
    real = mirror_module.fetch_events
    mirror_module.fetch_events = lambda chain_, address, a, b, **kw: node.get_logs(a, b)  # scripted chain
    try:
        m = RevocationMirror(chain=node, registry="0x" + "cd" * 20, chain_id=4242, checkpoint_path=path)  # type: ignore[arg-type]
        result = m.sync_once()
    finally:
        mirror_module.fetch_events = real
    assert result.ok, result.error
    assert m.stats().checkpoints_rejected == 1


# --- JSON-RPC answers -----------------------------------------------------------------------------


class _Node:
    """An HTTP server that answers every JSON-RPC request with ``body``."""

    def __init__(self) -> None:
        node = self
        self.body = b""

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(node.body)))
                self.end_headers()
                self.wfile.write(node.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        from vcgate.chain import connect

        self.chain = connect(self.url, timeout=2)


@pytest.fixture(scope="module")
def fake_node():
    require_chain_stack()
    node = _Node()
    yield node
    node.server.shutdown()
    node.server.server_close()


def _answers():
    results = json_values | st.text(max_size=70).map(lambda t: "0x" + t)
    envelopes = st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": st.integers(0, 3), "result": results})
    return (
        st.binary(max_size=200)
        | envelopes.map(lambda d: json.dumps(d).encode())
        | json_values.map(lambda v: json.dumps(v).encode())
        | st.just(DEEP.encode())
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_answers(), call=st.sampled_from(["node_chain_id", "block", "code_at", "events"]))
def test_any_json_rpc_answer_is_a_chain_error(fake_node, body, call):
    require_chain_stack()
    from vcgate.chain import fetch_events
    from vcgate.errors import ChainError

    fake_node.body = body
    chain = fake_node.chain
    registry = "0x" + "cd" * 20
    try:
        if call == "events":
            fetch_events(chain, registry, 0, 10)
        elif call == "code_at":
            chain.code_at(registry, 1)
        else:
            getattr(chain, call)()
    except ChainError as exc:
        assert exc.code == "chain_unavailable", exc


# --- DID documents and status-list bitstrings ----------------------------------------------------------


@FUZZ
@given(doc=json_values | st.dictionaries(st.sampled_from(["id", "verificationMethod", "assertionMethod",
                                                          "authentication", "@context", "controller"]),
                                         json_values, max_size=6))
def test_did_document_of_any_shape(doc):
    from vcgate.did.document import DIDDocument

    try:
        DIDDocument.from_json(doc)
    except VCGateError:
        pass


@FUZZ
@given(value=json_values | st.text(max_size=80).map(lambda t: "u" + t), multibase=st.booleans())
def test_status_list_bitstring_of_any_value(value, multibase):
    from vcgate.status.bitstring import decode_encoded_list

    try:
        decode_encoded_list(value, max_bytes=4096, multibase=multibase)
    except VCGateError as exc:
        assert exc.code == "status_list_invalid"
