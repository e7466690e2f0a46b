"""Red-team finding: ``vcgate serve``'s HTTP server (waitress) buffered a whole request body,
up to 1 GiB and to disk past 1 MiB, before the auth service could refuse it: 300 MB were taken
in to be answered 413, and a few such uploads at once fill the disk the audit log lives on.
A body far over the service's own limit is now refused on its Content-Length, unread.
"""

from __future__ import annotations

import socket

import requests

from tests.integration.gateway_support import AuthService, gateway_world


def _answer_without_the_body(port: int, path: str) -> bytes:
    """Declare a 500 MB body, send none of it, and read what the server says."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {500_000_000}\r\n\r\n".encode())
        return conn.recv(4096)  # unfixed: the server waits for the body; the timeout fails this


def test_a_huge_declared_body_is_refused_unread(tmp_path):
    world = gateway_world(tmp_path, "http://127.0.0.1:9")
    with AuthService(world.policy) as svc:
        for path in ("/.well-known/vcgate/token", "/envoy/v1/chat/completions"):
            assert _answer_without_the_body(svc.port, path).startswith(b"HTTP/1.1 413 "), path
        # what is merely over the limit still gets the service's coded answer
        coded = requests.post(svc.url + "/.well-known/vcgate/token", data=b"x" * (2 << 20), timeout=30)
        assert coded.status_code == 413 and coded.json()["error"] == "too_large"
