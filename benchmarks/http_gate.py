"""Benchmark: the example FastAPI server under uvicorn, with and without vcgate's ASGI middleware.

The server (examples/server_fastapi.py, uvicorn, one worker, log level warning, no access log) runs
in a subprocess; the load client is ``wrk`` (C, keep-alive) on 127.0.0.1. Two workloads, each run
against the bare app (``server_fastapi.api``) and the wrapped one (``server_fastapi.build(policy)``):

* public -- ``GET /healthz``, a public rule: pure middleware overhead (policy lookup, no crypto);
* model -- the session workload against ``POST /v1/completions``, a route that spends
  ``--upstream-cpu-ms`` (2 ms) of CPU per call like a small model call: the latency and
  throughput the gate adds next to a realistic upstream rather than a 270 µs example route;
* session -- ``POST /v1/chat/completions`` (the example's non-streaming chat route) in session
  mode: ``Authorization: DPoP <token>`` and a fresh DPoP proof per request. wrk cannot sign, so
  the proofs (single-use ``jti``) are made beforehand in Python, written to a file, and a wrk Lua
  script sends one per request; the bare app gets requests of the same shape and size (it ignores
  the headers). The access token comes from the server's token endpoint (a challenge nonce, then
  a presentation), as a client would get it. A run that exhausts its proofs would show non-2xx
  responses; they are reported (must be 0).

Both servers run side by side and the bare and wrapped runs alternate over ``--rounds`` rounds,
so load from other work on a shared machine hits both alike; the ratio is the median of the
per-round ratios. Printed: medians of requests/s, p50 and p99 latency for each, the throughput
ratio (target >= 0.8) and the p99 latency the middleware adds. Server and client share the machine's cores (see ``nproc``), so
absolute numbers are low; the ratio is the point.

For session mode it also prints the cost per request (1 / throughput) with and without the
middleware, and the floor no implementation can go under: the raw pyca/cryptography check of the
DPoP proof's signature (RFC 9449 requires one per request; the access token's own signature is
checked once and then cached), timed in this process over the proofs the run used. The best
ratio possible with zero Python overhead is ``bare / (bare + proof verify)``.

    .venv/bin/python benchmarks/http_gate.py [--seconds 4] [--rounds 3] [--connections 8] [--alg EdDSA]

Needs ``wrk`` on PATH (Debian/Ubuntu: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from _timing import (
    raw_verifier,  # a sibling module: this folder is on sys.path when run as a script
)

from vcgate.credentials import create_presentation, issue_credential
from vcgate.did import did_key_from_public_key
from vcgate.keys import PrivateKey
from vcgate.session import create_proof

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MODEL = "llama-3-70b"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hello"}]})

POLICY = """\
version: 1
audience: {aud}
trusted_issuers:
  - did: {issuer}
    types: [ModelAccessCredential]
rules:
  - name: health
    match: {{methods: [GET], paths: [/healthz]}}
    public: true
  - name: no-admin
    match: {{paths: [/v1/admin/**]}}
    allow: false
  - name: models
    match: {{methods: [GET], paths: [/v1/models]}}
    require: {{types: [ModelAccessCredential]}}
  - name: chat
    match: {{methods: [POST], paths: [/v1/chat/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
        tier: {{one_of: [gold, silver]}}
    grants:
      headers:
        X-Vcgate-Subject: $subject
  - name: completions
    match: {{methods: [POST], paths: [/v1/completions]}}
    require:
      types: [ModelAccessCredential]
      claims:
        models: {{contains: $model}}
  - name: files
    match: {{methods: [GET, POST], paths: [/v1/files, /v1/files/*]}}
    require: {{types: [ModelAccessCredential]}}
"""

SERVER = """\
import sys, time, warnings
warnings.simplefilter("ignore", RuntimeWarning)
sys.path.insert(0, {examples!r})
import uvicorn, server_fastapi
from fastapi import Request

@server_fastapi.api.post("/v1/completions")
async def model_call(request: Request):
    # A stand-in for a small model call: {cpu_ms} ms of CPU in the upstream.
    body = await request.json()
    end = time.process_time() + {cpu_ms} / 1000
    while time.process_time() < end:
        pass
    return {{"model": body.get("model"), "choices": [{{"text": "ok"}}]}}

app = server_fastapi.build({policy!r}) if {wrapped!r} else server_fastapi.api
uvicorn.run(app, host="127.0.0.1", port={port}, workers=1, log_level="warning", access_log=False, lifespan="off")
"""

# One wrk thread; each request takes the next pre-made proof (the last one is repeated if the
# pool runs out -- those replays are refused and show up as non-2xx).
LUA = """\
local proofs, i = {}, 0
for line in io.lines(%(proofs)s) do proofs[#proofs + 1] = line end
local auth, body = %(auth)s, %(body)s
request = function()
  if i < #proofs then i = i + 1 end
  return wrk.format("POST", %(path)s, {
    ["Host"] = %(host)s, ["Content-Type"] = "application/json",
    ["Authorization"] = auth, ["DPoP"] = proofs[i]}, body)
end
"""
DONE = """\
done = function(summary, latency, requests)
  local non2xx = (summary.errors.status or 0)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port: int, policy: Path, wrapped: bool, cpu_ms: float) -> None:
        code = SERVER.format(examples=str(EXAMPLES), policy=str(policy), wrapped=wrapped, port=port, cpu_ms=cpu_ms)
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        self.port = port
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=str(ROOT))
        deadline = time.monotonic() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    c.close()
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def get_token(port: int, agent: PrivateKey, vc: str) -> str:
    """Challenge -> presentation -> the token endpoint, by hand (what vcgate.client does)."""
    adid = did_key_from_public_key(agent.public_key)
    aud = f"http://127.0.0.1:{port}"
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", CHAT, body=BODY, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    challenge = r.getheader("WWW-Authenticate") or ""
    m = re.search(r'nonce="([^"]+)"', challenge)
    assert r.status == 401 and m, (r.status, challenge)
    vp = create_presentation(agent, holder=adid, kid=f"{adid}#{adid.method_specific_id}", credentials=[vc],
                             audience=aud, nonce=m.group(1), issued_at=time.time())
    token_url = aud + "/.well-known/vcgate/token"
    mt = re.search(r'token_endpoint="([^"]+)"', challenge)
    if mt:
        token_url = mt.group(1)
    path = urllib.parse.urlsplit(token_url).path
    c.request("POST", path, body=urllib.parse.urlencode({"vp_token": vp}),
              headers={"Content-Type": "application/x-www-form-urlencoded",
                       "DPoP": create_proof(agent, htm="POST", htu=token_url)})
    r = c.getresponse()
    body = json.loads(r.read())
    assert r.status == 200, body
    c.close()
    return body["access_token"]


def wrk(port: int, script: Path, path: str, seconds: float, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", out)
    if not m:
        raise SystemExit("wrk printed no result:\n" + out)
    n, dur_us, p50, p99, non2xx, errors = map(int, m.groups())
    return {"rps": n / (dur_us / 1e6), "p50": p50 / 1000, "p99": p99 / 1000, "n": n, "non2xx": non2xx, "errors": errors}


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per-metric medians over rounds; counts of failures are summed (any one is a problem)."""
    out = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
    out.update({k: sum(r[k] for r in runs) for k in ("n", "non2xx", "errors")})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="duration of each wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="bare and middleware runs alternate, round after round")
    ap.add_argument("--connections", type=int, default=8, help="wrk keep-alive connections (one thread)")
    ap.add_argument("--alg", default="EdDSA", choices=["EdDSA", "ES256"], help="the agent's key")
    ap.add_argument("--max-rps", type=int, default=4000, help="proofs made per session run = max-rps * seconds")
    ap.add_argument("--upstream-cpu-ms", type=float, default=2.0,
                    help="CPU the model-call workload's upstream route spends per request")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    issuer, agent = PrivateKey.generate("EdDSA"), PrivateKey.generate(args.alg)
    idid, adid = did_key_from_public_key(issuer.public_key), did_key_from_public_key(agent.public_key)
    now = time.time()
    vc = issue_credential(
        issuer, issuer=idid, kid=f"{idid}#{idid.method_specific_id}", subject=adid, types=["ModelAccessCredential"],
        claims={"models": [MODEL], "tier": "gold"}, valid_from=now - 60, valid_until=now + 86400,
    )
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    ratios: dict[str, list[float]] = {"public": [], "session": [], "model": []}
    verify_us: list[float] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        public_lua = tmp / "public.lua"
        public_lua.write_text(DONE)
        # Both servers run side by side (an idle one costs nothing) and the runs alternate, so
        # background load on a shared machine hits both alike; each round gives one ratio.
        servers: dict[str, Server] = {}
        tokens: dict[str, str] = {}
        try:
            for label in ("bare", "middleware"):
                port = free_port()
                policy = tmp / f"policy-{port}.yaml"
                policy.write_text(POLICY.format(aud=f"http://127.0.0.1:{port}", issuer=idid))
                servers[label] = Server(port, policy, label == "middleware", args.upstream_cpu_ms)
            tokens["bare"] = "not-checked-by-the-bare-app"
            tokens["middleware"] = get_token(servers["middleware"].port, agent, vc)
            for rnd in range(args.rounds):
                order = ("bare", "middleware") if rnd % 2 == 0 else ("middleware", "bare")
                this: dict[tuple[str, str], dict[str, float]] = {}
                for label in order:
                    port, token = servers[label].port, tokens[label]
                    this[("public", label)] = wrk(port, public_lua, "/healthz", args.seconds, args.connections)
                    # Fresh single-use proofs for every run (the bare app gets the same kind of requests).
                    n = int(args.max_rps * args.seconds)
                    t0 = time.perf_counter()
                    aud = f"http://127.0.0.1:{port}"
                    proofs = [create_proof(agent, htm="POST", htu=aud + CHAT, access_token=token) for _ in range(n)]
                    made = time.perf_counter() - t0
                    pfile = tmp / f"proofs-{port}.txt"
                    pfile.write_text("\n".join(proofs) + "\n")
                    lua = tmp / f"session-{port}.lua"
                    values = {"proofs": str(pfile), "auth": f"DPoP {token}", "body": BODY, "path": CHAT, "host": f"127.0.0.1:{port}"}
                    lua.write_text(LUA % {k: json.dumps(v) for k, v in values.items()} + DONE)  # JSON strings are Lua strings
                    print(f"[round {rnd + 1} {label}] {n} proofs made in {made:.1f} s (outside the run)", file=sys.stderr)
                    this[("session", label)] = wrk(port, lua, CHAT, args.seconds, args.connections)
                    # The same session calls against a route that costs what a small model call
                    # costs on CPU: what the gate adds next to a realistic upstream.
                    n_model = int(min(args.max_rps, 2000 / max(args.upstream_cpu_ms, 0.1)) * args.seconds) + 100
                    mproofs = [create_proof(agent, htm="POST", htu=aud + COMPLETIONS, access_token=token)
                               for _ in range(n_model)]
                    mfile = tmp / f"model-proofs-{port}.txt"
                    mfile.write_text("\n".join(mproofs) + "\n")
                    mlua = tmp / f"model-{port}.lua"
                    mvalues = {**values, "proofs": str(mfile), "path": COMPLETIONS}
                    mlua.write_text(LUA % {k: json.dumps(v) for k, v in mvalues.items()} + DONE)
                    this[("model", label)] = wrk(port, mlua, COMPLETIONS, args.seconds, args.connections)
                    if label == "middleware":  # the floor: one raw proof-signature check per request, same proofs
                        raws = [raw_verifier(agent, p) for p in proofs[:2000]]
                        t0 = time.perf_counter()
                        for raw in raws:
                            raw()
                        verify_us.append((time.perf_counter() - t0) / len(raws) * 1e6)
                for key, r in this.items():
                    runs.setdefault(key, []).append(r)
                for workload, rs in ratios.items():
                    rs.append(this[(workload, "middleware")]["rps"] / this[(workload, "bare")]["rps"])
        finally:
            for server in servers.values():
                server.stop()

    results = {key: _median_run(rs) for key, rs in runs.items()}
    v_us = statistics.median(verify_us)
    print(f"uvicorn 1 worker, wrk -t1 -c{args.connections} -d{args.seconds:g}s x {args.rounds} alternating rounds on "
          f"127.0.0.1, {os.cpu_count()} CPUs shared by server and client; agent key {args.alg}; medians over rounds")
    print(f"{'workload':<40}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non2xx':>8}{'sockerr':>8}")
    for workload, what in (("public", "GET /healthz (public rule)"), ("session", "POST chat, session mode"),
                           ("model", f"POST {args.upstream_cpu_ms:g} ms model call, session")):
        for label in ("bare", "middleware"):
            r = results[(workload, label)]
            print(f"{what + ' / ' + label:<40}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['non2xx']:>8d}{r['errors']:>8d}")
        bare, mw = results[(workload, "bare")], results[(workload, "middleware")]
        rs = ratios[workload]
        print(f"  -> throughput ratio {statistics.median(rs):.2f} (rounds {min(rs):.2f}-{max(rs):.2f}; target >= 0.8), "
              f"added p99 {mw['p99'] - bare['p99']:+.2f} ms, added p50 {mw['p50'] - bare['p50']:+.2f} ms")
        if workload == "session":
            b_us, m_us = 1e6 / bare["rps"], 1e6 / mw["rps"]
            print(f"  per request: bare {b_us:.0f} us, middleware {m_us:.0f} us (+{m_us - b_us:.0f} us), of which "
                  f"the {args.alg} proof signature alone (raw verify) {v_us:.0f} us")
            print(f"  -> best ratio with zero Python overhead: {b_us / (b_us + v_us):.2f}; "
                  f"the rest of the added cost: {m_us - b_us - v_us:.0f} us")


if __name__ == "__main__":
    main()
