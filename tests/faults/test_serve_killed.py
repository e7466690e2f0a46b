"""``vcgate serve`` killed with SIGKILL under load, then started again (as a supervisor would).

One real service with everything a replica has: the audit log (sync durability), Redis for
nonces and replay, the revocation mirror on anvil. Four clients load it; one keeps presenting
a revoked credential. The process is killed mid-load, a torn half-line is left at the end of
the audit log (a write the kill cut), and the service is started again. Asserted:

* at no moment is the revoked credential accepted (refused, or no answer while it is down);
* every decision a client got an answer for (acknowledged) is in the audit logs (one per
  worker process: with ``--redis`` the service runs a worker per core), which verify after the
  restart cut the torn tails and logged each cut as a ``recovery`` record;
* a presentation whose nonce was consumed before the kill is refused after it (the nonce
  store is Redis, not the dead process);
* the restarted service is ready within the stated bound.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import requests

from tests.chain.helpers import require_chain_stack

require_chain_stack()

from tests.faults.harness import AUDIENCE, ORIGINAL, ChainWorld, Prober, serve, until  # noqa: E402
from tests.faults.test_chain import SERVE_ARGS, _require_anvil  # noqa: E402
from tests.integration.test_redis_store import _start_redis  # noqa: E402
from vcgate.audit import read_records, verify_file  # noqa: E402
from vcgate.chain import AnvilNode  # noqa: E402

pytestmark = pytest.mark.integration

LOAD_SECONDS = 2.0  # load before the kill
RESTART_BOUND = 60.0  # a start includes the mirror's first sync; generous for a busy CI machine


def test_serve_killed_under_load_loses_no_acknowledged_decision(tmp_path, timing):
    _require_anvil()
    redis = _start_redis(tmp_path)
    audit = tmp_path / "audit.jsonl"
    try:
        with AnvilNode() as node:
            world = ChainWorld(node.url, tmp_path)
            world.issue("good")
            world.issue("revoked")
            world.revoke("revoked")
            args = world.serve_args(node.url, *SERVE_ARGS, "--redis", redis.url, "--audit-log", str(audit))
            acked: list[str] = []  # paths of decisions a client got an answer for
            lock = threading.Lock()
            stop = threading.Event()
            revoked_answers: list[tuple[int, str | None]] = []

            svc = serve(world.policy, args).__enter__()
            probe = Prober(world, svc.url)
            until("ready", lambda: probe("good") == (200, None), 30)

            def load(n: int) -> None:
                session, i = requests.Session(), 0
                while not stop.is_set():
                    path = f"/load/{n}/{i}"
                    i += 1
                    try:
                        r = session.get(svc.url + "/nginx/auth", timeout=5,
                                        headers={**ORIGINAL, "X-Original-URI": path})
                    except requests.RequestException:
                        time.sleep(0.05)
                        continue
                    if r.status_code in (401, 403):
                        with lock:
                            acked.append(path)

            def revoked_prober() -> None:
                p = Prober(world, svc.url)
                while not stop.is_set():
                    revoked_answers.append(p("revoked"))

            threads = [threading.Thread(target=load, args=(n,)) for n in range(3)]
            threads.append(threading.Thread(target=revoked_prober))
            for t in threads:
                t.start()
            # A presentation whose nonce is consumed now, to be replayed after the restart.
            challenge = requests.get(svc.url + "/nginx/auth", headers=ORIGINAL, timeout=5).json()
            from vcgate.credentials import create_presentation

            agent = world.agent
            vp = create_presentation(agent.key, holder=agent.did, kid=agent.kid,
                                     credentials=[world.credentials["good"][0]], audience=AUDIENCE,
                                     nonce=challenge["nonce"], issued_at=time.time())
            used = requests.get(svc.url + "/nginx/auth", headers={**ORIGINAL, "Authorization": f"VP {vp}"}, timeout=5)
            assert used.status_code == 200, used.headers
            time.sleep(LOAD_SECONDS)

            os.killpg(svc.proc.pid, signal.SIGKILL)  # the whole service, mid-load
            svc.proc.wait(10)
            # One log per worker (--redis: a worker per core; audit.w<N>.jsonl), else audit.jsonl.
            logs = sorted(tmp_path.glob("audit.w*.jsonl")) or [audit]
            for log in logs:
                with open(log, "ab") as fh:  # a write the kill cut in half
                    fh.write(b'{"kind":"decision","outcome":"al')
            killed_at = time.monotonic()
            with lock:
                acked_before = list(acked)
            assert len(acked_before) > 20, "the load did not run"

            svc2 = serve(world.policy, args)
            svc.url = svc2.url  # the load and the prober follow the new process
            svc2.__enter__()
            try:
                probe = Prober(world, svc2.url)
                took = until("restarted service ready", lambda: probe.ready() == 200, RESTART_BOUND)
                timing("restart to ready", time.monotonic() - killed_at)
                assert took <= RESTART_BOUND
                assert probe("good") == (200, None)
                replay = requests.get(svc2.url + "/nginx/auth", headers={**ORIGINAL, "Authorization": f"VP {vp}"},
                                      timeout=5)
                assert (replay.status_code, replay.headers.get("X-Vcgate-Error")) == (401, "nonce_mismatch")
                time.sleep(0.5)
            finally:
                stop.set()
                for t in threads:
                    t.join(10)
                svc2.__exit__(None, None, None)

            assert revoked_answers and all(status != 200 for status, _ in revoked_answers), "revoked accepted"
            assert {code for _, code in revoked_answers} <= {"revoked", "ConnectionError", "ReadTimeout"}
            records = []
            for log in logs:
                report = verify_file(log)
                assert report.ok, report
                found = list(read_records(log))
                assert any(r.get("kind") == "recovery" for r in found), f"{log.name}: the torn tail was not cut"
                records += found
            recorded = {r.get("path") for r in records if r.get("kind") == "decision"}
            lost = [p for p in acked_before if p not in recorded]
            assert not lost, f"{len(lost)} acknowledged decisions missing from the audit log: {lost[:5]}"
            timing("acknowledged decisions", float(len(acked_before)))
            print(json.dumps({"acknowledged": len(acked_before), "records": len(records)}))
    finally:
        redis.stop()
