"""``vcgate serve --workers N`` as a real process tree on real Redis.

The supervisor binds one port and forks the workers; each request on a fresh connection may
land on any of them, so a challenge nonce issued by one is consumed at another (through
Redis), a DPoP proof used at one is refused at all, a killed worker is restarted while the
others keep answering, and SIGTERM stops the whole tree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.gateway_support import AuthService, free_port, gateway_world
from tests.integration.test_redis_store import redis_server  # noqa: F401  (the fixture)

MODELS = "/v1/models"


def children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return {int(x) for x in out.stdout.split()}


def ask(url: str, audience: str, headers: dict[str, str] | None = None) -> requests.Response:
    """One NGINX auth_request question on a fresh connection (so the kernel picks the worker)."""
    with requests.Session() as s:
        return s.get(url + "/nginx/auth", timeout=10, headers={
            "X-Original-Method": "GET", "X-Original-URI": MODELS, "Host": audience.split("//", 1)[1],
            "Connection": "close", **(headers or {})})


def direct_call(url: str, world) -> requests.Response:  # noqa: ANN001
    nonce = ask(url, world.audience).json()["nonce"]
    vp = world.holder().present(audience=world.audience, nonce=nonce)
    return ask(url, world.audience, {"Authorization": f"VP {vp}"})


@pytest.fixture
def served(tmp_path: Path, redis_server):  # noqa: F811
    world = gateway_world(tmp_path, f"http://127.0.0.1:{free_port()}", headers_only=True)
    with AuthService(world.policy, args=("--workers", "2", "--redis", redis_server.url, "--threads", "4")) as service:
        yield world, service


def test_two_workers_share_nonces_and_replay_through_redis(served) -> None:
    world, service = served
    assert len(children(service.proc.pid)) == 2
    statuses = [direct_call(service.url, world).status_code for _ in range(12)]
    assert statuses == [200] * 12  # every nonce was consumed, whichever worker issued it
    nonce = ask(service.url, world.audience).json()["nonce"]
    vp = world.holder().present(audience=world.audience, nonce=nonce)
    first = ask(service.url, world.audience, {"Authorization": f"VP {vp}"})
    again = [ask(service.url, world.audience, {"Authorization": f"VP {vp}"}) for _ in range(4)]
    assert first.status_code == 200
    assert {r.headers["X-Vcgate-Error"] for r in again} == {"nonce_mismatch"}  # refused at every worker


def test_a_killed_worker_is_restarted_and_the_others_keep_answering(served) -> None:
    world, service = served
    before = children(service.proc.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    # The port stays open (the supervisor and the other worker hold it): calls keep succeeding.
    assert [direct_call(service.url, world).status_code for _ in range(4)] == [200] * 4
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(children(service.proc.pid) - {victim}) < 2:
        time.sleep(0.2)
    after = children(service.proc.pid)
    assert victim not in after and len(after) == 2
    assert direct_call(service.url, world).status_code == 200


def test_sigterm_stops_every_worker(served) -> None:
    _, service = served
    workers = children(service.proc.pid)
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=20) == 0
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_workers_without_redis_is_a_usage_error(tmp_path: Path) -> None:
    world = gateway_world(tmp_path, "http://127.0.0.1:8080", headers_only=True)
    out = subprocess.run([sys.executable, "-m", "vcgate", "serve", "--policy", str(world.policy), "--workers", "2"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "VCGATE_REDIS_URL" in out.stderr


def test_a_session_works_at_every_worker(served) -> None:
    """The token comes from one worker; the calls, each on a new connection, reach both: the
    session is in the shared store, the proofs' jti in the shared replay cache."""
    from vcgate.session import create_proof

    world, service = served
    host = world.audience.split("//", 1)[1]
    nonce = ask(service.url, world.audience).json()["nonce"]
    vp = world.holder().present(audience=world.audience, nonce=nonce)
    proof = create_proof(world.agent.key, htm="POST", htu=world.audience + "/.well-known/vcgate/token")
    r = requests.post(service.url + "/.well-known/vcgate/token", data={"vp_token": vp}, timeout=10,
                      headers={"DPoP": proof, "Host": host, "Connection": "close"})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    proofs = [create_proof(world.agent.key, htm="GET", htu=world.audience + MODELS, access_token=token)
              for _ in range(8)]
    answers = [ask(service.url, world.audience, {"Authorization": f"DPoP {token}", "DPoP": p}) for p in proofs]
    assert [a.status_code for a in answers] == [200] * 8, [a.headers.get("X-Vcgate-Error") for a in answers]
    again = ask(service.url, world.audience, {"Authorization": f"DPoP {token}", "DPoP": proofs[0]})
    assert again.headers["X-Vcgate-Error"] == "dpop_replayed"
