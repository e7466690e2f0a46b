"""Benchmark: NGINX with vcgate (auth_request, session mode) against NGINX alone, same upstream.

Setup, all on 127.0.0.1 in one nginx (Debian ``nginx-light``, one worker) and one ``vcgate serve``
(waitress, default 8 threads, the headers-only policy of the NGINX tests):

* upstream -- a ``return 200`` server inside that nginx: as fast as an upstream gets, so the
  ratio shows the whole cost of the auth step (a real model server takes milliseconds to
  seconds per call, against which the same absolute cost is noise);
* baseline -- a server that ``proxy_pass``-es to that upstream through the same keepalive
  ``upstream`` block: "NGINX alone to the same upstream";
* vcgate -- the shipped ``plugins/nginx/vcgate.conf`` to the same upstream, with two additions
  for measuring only: ``auth_request_set $vcgate_auth_time $upstream_response_time`` and an
  access log (the baseline logs to its own file in the same format, buffered).

Load: ``wrk`` (2 threads, 16 connections by default, keep-alive) sends ``GET /v1/models`` with
``Authorization: DPoP <token>`` and a fresh DPoP proof per request. The token comes from the
token endpoint through nginx (the agent client: challenge, presentation, token). wrk cannot
sign, so the proofs (single-use ``jti``, ``iat`` = now, ``htu`` = the gateway URL) are made
beforehand in Python and each wrk thread takes its own slice of them, in order, never twice: a
replayed proof would be refused and distort the result. A thread that runs out sends no proof
(refused 401); non-2xx responses and exhausted slices are counted and printed (must be 0).
The baseline gets the very same requests (it ignores the headers).

The auth service's latency under that load, two ways:

* ``auth round trip`` -- ``$upstream_response_time`` of the auth subrequest, as nginx saw it
  (connection reuse, waitress queueing, Flask, the check): what each request actually waits
  for. nginx reports it with 1 ms resolution, so small values are coarse.
* ``Gate.check`` -- the service's own histogram ``vcgate_check_duration_seconds{adapter="nginx"}``,
  its deltas over the run, quantiles interpolated inside the buckets (as PromQL
  ``histogram_quantile`` does): the decision alone, without the HTTP server.

Server and client share the machine's cores (see ``nproc``): absolute numbers are low, the
ratio is the point.

    .venv/bin/python benchmarks/gateway.py [--seconds 6] [--threads 2] [--connections 16]

Needs ``nginx`` with the auth_request module and ``wrk`` (``apt-get install nginx-light wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the gateway test support (tests/integration/gateway_support.py)

import httpx

from tests.integration.gateway_support import (
    AuthService,
    Nginx,
    free_port,
    gateway_world,
    nginx_binary,
    render_nginx_site,
    wait_port,
)
from vcgate.session import create_proof

PATH = "/v1/models"

# Each wrk thread reads every n-th proof (its own slice) and sends each once.
LUA = """\
local threads, counter = {}, 0
function setup(thread)
  thread:set("tid", counter)
  thread:set("nthreads", %(nthreads)d)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  proofs, used, missing = {}, 0, 0
  local k = 0
  for line in io.lines(%(proofs)s) do
    if k %% nthreads == tid then proofs[#proofs + 1] = line end
    k = k + 1
  end
end
function request()
  if used < #proofs then
    used = used + 1
    return wrk.format("GET", %(path)s, {["Authorization"] = %(auth)s, ["DPoP"] = proofs[used]})
  end
  missing = missing + 1
  return wrk.format("GET", %(path)s, {["Authorization"] = %(auth)s})
end
function done(summary, latency, requests)
  local used_all, missing_all = 0, 0
  for _, t in ipairs(threads) do
    used_all = used_all + t:get("used")
    missing_all = missing_all + t:get("missing")
  end
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout,
    used_all, missing_all))
end
"""

LOG_FORMAT = "    log_format vcgate_timing '$status $vcgate_auth_time $request_time';\n"

UPSTREAM_AND_BASELINE = """\
# The fast upstream: answers like a model list, without a body to read.
server {
    listen 127.0.0.1:%(upstream)d;
    access_log off;
    location / {
        default_type application/json;
        return 200 '{"object": "list", "data": [{"id": "llama-3-70b", "object": "model"}]}';
    }
}

# NGINX alone to the same upstream (same upstream block, same proxy settings).
server {
    listen 127.0.0.1:%(baseline)d;
    set $vcgate_auth_time "-";
    access_log %(tmp)s/baseline.log vcgate_timing buffer=64k;
    location / {
        proxy_pass http://vcgate_model;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_buffering off;
    }
}
"""


def site_with_timing(site: str, tmp: Path) -> str:
    """The shipped site plus the two measuring lines in ``location /``."""
    anchor = "        auth_request /_vcgate_auth;\n"
    assert site.count(anchor) == 1
    return site.replace(anchor, anchor + "        auth_request_set $vcgate_auth_time $upstream_response_time;\n"
                        f"        access_log {tmp}/vcgate.log vcgate_timing buffer=64k;\n")


def run_wrk(url: str, script: Path, *, seconds: float, threads: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout
    m = re.search(r"RESULT " + " ".join([r"(\d+)"] * 8), out)
    if not m:
        raise SystemExit("wrk printed no result:\n" + out)
    n, dur_us, p50, p99, non2xx, errors, used, missing = map(int, m.groups())
    return {"rps": n / (dur_us / 1e6), "p50": p50 / 1000, "p99": p99 / 1000, "n": n, "non2xx": non2xx,
            "errors": errors, "used": used, "missing": missing}


def histogram(metrics_text: str, adapter: str) -> dict[float, float]:
    """Cumulative bucket counts of ``vcgate_check_duration_seconds{adapter=...}``."""
    out: dict[float, float] = {}
    pattern = re.compile(r'^vcgate_check_duration_seconds_bucket\{(.*)\} (\S+)$')
    for line in metrics_text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("adapter") == adapter:
            le = labels["le"]
            out[float("inf") if le == "+Inf" else float(le)] = float(m.group(2))
    return out


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """PromQL-style quantile of the delta histogram, linear inside the bucket; seconds."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return float("nan")
    rank, lower, prev = q * total, 0.0, 0.0
    for bound, cum in zip(bounds, counts):
        if cum >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - prev) / (cum - prev) if cum > prev else 0.0)
        lower, prev = bound, cum
    return bounds[-2]


def log_quantiles(path: Path) -> tuple[int, float, float]:
    """(lines, p50, p99) of the auth subrequest time (ms) in an access log."""
    times = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] not in ("-", ""):
            times.append(float(parts[1].split(",")[-1]) * 1000)
    if not times:
        return 0, float("nan"), float("nan")
    times.sort()
    return len(times), times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its children (the workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    """A throwaway redis-server on a free port (the workers' shared stores)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("--workers above 1 needs redis-server (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp)], stdout=subprocess.DEVNULL)
    wait_port(port, proc=proc)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="duration of each wrk run")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=16, help="wrk keep-alive connections")
    ap.add_argument("--workers", type=int, default=1,
                    help="vcgate serve --workers (above 1 starts a redis-server for the shared stores)")
    ap.add_argument("--max-rps", type=int, default=6000,
                    help="proofs made for the vcgate run = max-rps * seconds (more than it can serve)")
    args = ap.parse_args()
    if not 1 <= args.seconds <= 40:
        raise SystemExit("--seconds must be within 1..40: proofs older than 60 s are refused")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if nginx_binary() is None:
        raise SystemExit("nginx with the auth_request module is not installed (apt-get install nginx-light)")

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        gw_port, base_port, up_port = free_port(), free_port(), free_port()
        gateway = f"http://127.0.0.1:{gw_port}"
        world = gateway_world(tmp, gateway, headers_only=True)
        serve_args: tuple[str, ...] = ()
        redis = None
        if args.workers > 1:
            redis, redis_url = start_redis(tmp)
            serve_args = ("--workers", str(args.workers), "--redis", redis_url)
        with AuthService(world.policy, args=serve_args) as service:
            site = site_with_timing(render_nginx_site(listen_port=gw_port, vcgate_port=service.port,
                                                      model_port=up_port), tmp)
            extra = UPSTREAM_AND_BASELINE % {"upstream": up_port, "baseline": base_port, "tmp": tmp}
            with Nginx(tmp / "nginx", site + extra, ports=(gw_port, base_port, up_port), http_extra=LOG_FORMAT):
                # A session as the agent client gets it: challenge -> token endpoint -> DPoP call.
                sent: list[httpx.Request] = []
                with httpx.Client(auth=world.holder().httpx_auth(), timeout=10,
                                  event_hooks={"request": [sent.append]}) as client:
                    r = client.get(gateway + PATH)
                    assert r.status_code == 200, r.text
                token = sent[-1].headers["authorization"].removeprefix("DPoP ")

                n = int(args.max_rps * args.seconds)
                t0 = time.perf_counter()
                proofs = [create_proof(world.agent.key, htm="GET", htu=gateway + PATH, access_token=token)
                          for _ in range(n)]
                made = time.perf_counter() - t0
                pfile = tmp / "proofs.txt"
                pfile.write_text("\n".join(proofs) + "\n")
                script = tmp / "session.lua"
                script.write_text(LUA % {"nthreads": args.threads, "proofs": json.dumps(str(pfile)),
                                         "path": json.dumps(PATH), "auth": json.dumps(f"DPoP {token}")})
                print(f"{n} proofs made in {made:.1f} s (outside the runs)", file=sys.stderr)

                wrk_opts = {"seconds": args.seconds, "threads": args.threads, "connections": args.connections}
                # vcgate first, while the proofs are fresh (iat within the 60 s max_age); the
                # baseline then gets the same requests, whose proofs nobody checks.
                before = histogram(service.metrics(), "nginx")
                cpu0 = tree_cpu_seconds(service.proc.pid)
                gated = run_wrk(gateway + PATH, script, **wrk_opts)
                cpu = tree_cpu_seconds(service.proc.pid) - cpu0
                after = histogram(service.metrics(), "nginx")
                baseline = run_wrk(f"http://127.0.0.1:{base_port}{PATH}", script, **wrk_opts)
            # nginx has exited: its buffered access logs are flushed.
            lines, auth_p50, auth_p99 = log_quantiles(tmp / "vcgate.log")
        if redis is not None:
            redis.terminate()
            redis.wait(10)

    check_p50 = histogram_quantile(0.5, before, after) * 1000
    check_p99 = histogram_quantile(0.99, before, after) * 1000
    print(f"nginx 1 worker + vcgate serve ({args.workers} worker(s), waitress, 8 threads); wrk -t{args.threads} -c{args.connections} "
          f"-d{args.seconds:g}s on 127.0.0.1, {os.cpu_count()} CPUs shared by all; GET {PATH}, session mode")
    print(f"{'run':<44}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non2xx':>8}{'sockerr':>8}")
    for label, r in (("NGINX alone -> upstream (baseline)", baseline), ("NGINX + vcgate auth_request -> upstream", gated)):
        print(f"{label:<44}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['non2xx']:>8d}{r['errors']:>8d}")
    print(f"  -> throughput ratio vcgate / baseline: {gated['rps'] / baseline['rps']:.3f}")
    print(f"  proofs: {gated['used']} sent once each of {n} made; {gated['missing']} requests found none "
          f"(must be 0)")
    decisions = gated["n"]
    print(f"  auth service CPU per decision (all its processes, /proc): {cpu / max(decisions, 1) * 1e6:.0f} us "
          f"(compare with the proof's raw signature check, benchmarks/verify.py)")
    print(f"  auth round trip as nginx saw it ($upstream_response_time, 1 ms resolution, {lines} subrequests): "
          f"p50 {auth_p50:.1f} ms, p99 {auth_p99:.1f} ms")
    print(f"  Gate.check inside the service (histogram deltas, interpolated): p50 {check_p50:.3f} ms, "
          f"p99 {check_p99:.3f} ms")
    if gated["non2xx"] or gated["missing"]:
        print("  WARNING: refused requests in the vcgate run: the numbers above are distorted", file=sys.stderr)


if __name__ == "__main__":
    main()
