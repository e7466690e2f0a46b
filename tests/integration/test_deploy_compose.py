"""deploy/compose.yaml's topology run for real without Docker: the same command lines and
environment, started as local processes on free ports.

anvil (the devchain stage's entrypoint with the chain service's arguments), the registry
one-shot (its shell script, run as is), `vcgate serve` (the image's entrypoint and ENV with the
vcgate service's environment), the example model API (the model service's command, from a
folder laid out like the model stage's /opt/model) and nginx with plugins/nginx/vcgate.conf
(the file compose mounts). What differs from `docker compose up`, and only that: ports are
free ones, container paths (/etc/vcgate, /var/lib/vcgate, /opt/chain, /tmp/dev.key) are
folders of this test, `chain:8545` is 127.0.0.1, and 0.0.0.0 is 127.0.0.1. The images
themselves are never built here (no Docker daemon).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.deploy.files import REPO, compose, dockerfile_stages, healthcheck_command
from tests.integration.gateway_support import (
    NGINX_HINT,
    Nginx,
    free_port,
    gateway_world,
    nginx_binary,
    render_nginx_site,
    stop_process,
    wait_http,
    wait_port,
)
from tests.support import require_real

pytestmark = pytest.mark.integration

PASSPHRASE = "compose topology"
CHAIN_DIR = REPO / "tools" / "chain"


@dataclass
class Topology:
    base: str            # NGINX: the policy's audience
    vcgate: str          # vcgate serve's HTTP port
    env: dict[str, str]  # vcgate serve's environment
    world: Any
    registry: str
    rpc: str             # the chain service, as vcgate reaches it
    dev_key_hex: str     # the registry one-shot's account (anvil's first development key)
    procs: dict[str, subprocess.Popen]


def _start(name: str, cmd: list[str], tmp: Path, *, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    log = open(tmp / f"{name}.log", "wb")  # a file, not a pipe: a full pipe would block the server
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)


def _log(tmp: Path, name: str) -> str:
    path = tmp / f"{name}.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _with(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with the value after ``option`` replaced (it must be there)."""
    out = list(args)
    out[out.index(option) + 1] = value
    return out


@pytest.fixture(scope="module")
def topology(tmp_path_factory) -> Iterator[Topology]:
    stages, services = dockerfile_stages(), compose()["services"]
    anvil_entry = stages["devchain"].entrypoint[0]
    anvil = CHAIN_DIR / Path(anvil_entry).relative_to("/opt/chain")
    if not anvil.exists() or shutil.which("node") is None:
        require_real("anvil (npm @foundry-rs/anvil)", "make chain-tools (npm ci --prefix tools/chain)")
    if nginx_binary() is None:
        require_real("nginx with the auth_request module", NGINX_HINT)

    tmp = tmp_path_factory.mktemp("compose")
    ports = {name: free_port() for name in ("chain", "vcgate", "grpc", "model", "nginx")}
    base = f"http://127.0.0.1:{ports['nginx']}"
    # /etc/vcgate as `vcgate init` + the headers-only edit of docs/deploy.md would leave it.
    config = tmp / "etc-vcgate"
    config.mkdir()
    world = gateway_world(config, base, headers_only=True)
    from vcgate.keys import PrivateKey, write_key_file

    write_key_file(config / "gateway.key", PrivateKey.generate("EdDSA"), passphrase=PASSPHRASE)
    state = tmp / "var-lib-vcgate"
    state.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VCGATE_")}
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    rpc = f"http://127.0.0.1:{ports['chain']}"

    def local(value: str) -> str:
        return (value.replace("/etc/vcgate", str(config)).replace("/var/lib/vcgate", str(state))
                .replace("http://chain:8545", rpc).replace("/tmp/dev.key", str(tmp / "dev.key")))

    procs: dict[str, subprocess.Popen] = {}
    try:
        # model: laid out as the model stage's WORKDIR (its COPY lines), the service's command.
        workdir = tmp / "opt-model"
        for copy_ in stages["model"].copies:
            *sources, target = copy_.split()
            (workdir / target).mkdir(parents=True, exist_ok=True)
            for source in sources:
                shutil.copy(REPO / source, workdir / target)
        model = _with(services["model"]["command"], "--port", str(ports["model"]))
        assert model[0] == "uvicorn"
        procs["model"] = _start("model", [sys.executable, "-m", *model], tmp, env=clean, cwd=workdir)

        # chain: the devchain entrypoint with the chain service's arguments.
        args = _with(_with(services["chain"]["command"], "--host", "127.0.0.1"), "--port", str(ports["chain"]))
        procs["chain"] = _start("chain", [str(anvil), *args], tmp, env=clean)
        wait_port(ports["chain"], timeout=30, proc=procs["chain"])

        # registry: the one-shot's script, through sh as its entrypoint says.
        registry = services["registry"]
        env = {**clean, **{k: local(v) for k, v in registry["environment"].items()}}
        done = subprocess.run([*registry["entrypoint"], local(registry["command"][0])], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        address = done.stdout.strip().splitlines()[-1]

        # vcgate serve: the image's entrypoint and ENV, then the service's environment.
        service = services["vcgate"]
        env = {**stages["vcgate"].env, **service["environment"]}
        env = {k: local(v) for k, v in env.items()}
        env.update(VCGATE_PASSPHRASE=PASSPHRASE, VCGATE_PORT=str(ports["vcgate"]), VCGATE_GRPC_PORT=str(ports["grpc"]))
        entry = stages["vcgate"].entrypoint
        assert entry[0] == "vcgate"
        procs["vcgate"] = _start("vcgate", [sys.executable, "-m", "vcgate", *entry[1:], *service.get("command", [])],
                                 tmp, env={**clean, **env})
        wait_http(f"http://127.0.0.1:{ports['vcgate']}/healthz", timeout=60, proc=procs["vcgate"])
        wait_http(f"http://127.0.0.1:{ports['model']}/healthz", timeout=60, proc=procs["model"])
        site = render_nginx_site(listen_port=ports["nginx"], vcgate_port=ports["vcgate"], model_port=ports["model"])
        with Nginx(tmp / "nginx", site, ports=(ports["nginx"],)):
            dev_hex = shlex.split(registry["command"][0].split("|")[0])[-1]
            yield Topology(base, f"http://127.0.0.1:{ports['vcgate']}", env, world, address, rpc, dev_hex, procs)
    except BaseException:
        for name in procs:
            print(f"--- {name}\n{_log(tmp, name)}")
        raise
    finally:
        for proc in reversed(list(procs.values())):
            stop_process(proc)


def test_registry_lands_where_the_vcgate_service_looks_for_it(topology):
    assert topology.registry.lower() == compose()["services"]["vcgate"]["environment"]["VCGATE_REGISTRY"].lower()


def test_ready_with_the_mirror_following_the_registry(topology):
    r = requests.get(topology.vcgate + "/readyz", timeout=10)
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert checks["mirror"]["healthy"] is True and not checks["mirror"]["chain_mismatch"]
    assert checks["mirror"]["synced_block"] >= 1  # the block the registry was deployed in
    assert checks["policy"]["status"] == "ok" and checks["audit"] == "ok"


def test_agent_call_through_nginx_reaches_the_model(topology):
    session = requests.Session()
    session.auth = topology.world.holder().requests_auth()  # session mode: token endpoint via NGINX
    r = session.post(topology.base + "/v1/chat/completions", timeout=30,
                     json={"model": "llama-3-70b", "messages": [{"role": "user", "content": "hello"}]})
    assert r.status_code == 200, r.text
    # The example model names the caller from the grant header NGINX passed on.
    assert r.json()["choices"][0]["message"]["content"].startswith(f"[llama-3-70b for {topology.world.agent.did}]")


def test_no_credential_is_refused_with_the_challenge(topology):
    r = requests.get(topology.base + "/v1/models", timeout=10)
    assert r.status_code == 401
    body = r.json()
    assert body["error"] and body["nonce"] and body["token_endpoint"] == topology.base + "/.well-known/vcgate/token"


def test_an_untrusted_issuer_is_refused(topology):
    session = requests.Session()
    session.auth = topology.world.holder(credentials=[topology.world.untrusted_vc]).requests_auth(mode="direct")
    r = session.get(topology.base + "/v1/models", timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "issuer_not_trusted"


def test_revocation_on_the_compose_chain_is_refused_through_nginx(topology):
    """The chain and registry services are the ones vcgate's mirror follows: an issuer's
    on-chain revocation turns the agent's next call through NGINX into a refusal."""
    from vcgate.chain import RegistryClient, connect, eth_account_from_key, eth_address
    from vcgate.credentials import issue_credential
    from vcgate.keys import PrivateKey
    from vcgate.status.registry import status_entry

    chain = connect(topology.rpc, timeout=10)
    owner_key = PrivateKey.from_secp256k1_hex(topology.dev_key_hex)
    owner = eth_account_from_key(owner_key)
    lst, key = os.urandom(32), os.urandom(32)
    world, now = topology.world, time.time()
    vc = issue_credential(
        world.issuer.key, issuer=world.issuer.did, kid=world.issuer.kid, subject=world.agent.did,
        types=["ModelAccessCredential"], claims={"models": ["llama-3-70b"]}, valid_from=now - 60,
        valid_until=now + 3600,
        status=status_entry(topology.registry, chain.chain_id(), eth_address(owner_key.public_key), lst, key),
    )
    session = requests.Session()
    session.auth = world.holder(credentials=[vc]).requests_auth(mode="direct")
    r = session.get(topology.base + "/v1/models", timeout=10)
    assert r.status_code == 200, r.text
    RegistryClient(chain, topology.registry).change_status(owner, revoked=True, revocation_list=lst,
                                                           revocation_key=key)
    deadline = time.monotonic() + 30  # a functional bound: the mirror polls every second
    while True:
        r = session.get(topology.base + "/v1/models", timeout=10)
        if r.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 401 and r.json()["error"] == "revoked", r.text  # docs/errors.md


def test_audit_log_lands_in_the_state_volume(topology):
    log = Path(topology.env["VCGATE_AUDIT_LOG"])
    assert log.exists() and log.read_text().strip()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records


def test_image_healthcheck_command_passes_then_fails_when_the_service_stops(topology):
    """Last in this module: it stops vcgate serve."""
    command = healthcheck_command(dockerfile_stages()["vcgate"])
    env = {**os.environ, "VCGATE_PORT": topology.env["VCGATE_PORT"]}
    command = [sys.executable if command[0] == "python" else command[0], *command[1:]]
    ok = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    stop_process(topology.procs["vcgate"])
    down = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert down.returncode != 0
