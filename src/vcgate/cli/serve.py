"""``vcgate serve``: the auth service for Envoy, NGINX and Traefik (see vcgate.server)."""

from __future__ import annotations

import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import click

from .base import EXISTING_FILE, CLIError, alg_name_option, cli, did_web_ports_option, info, warn


@cli.command("serve")
@click.option("--policy", "policy_file", default=None, type=EXISTING_FILE, envvar="VCGATE_POLICY",
              help="The policy file (reloaded when it changes); required unless --vc-api. [env: VCGATE_POLICY]")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="VCGATE_HOST",
              help="Address to listen on. Keep it reachable only by the gateway. [env: VCGATE_HOST]")
@click.option("--port", default=8181, show_default=True, type=click.IntRange(0, 65535), envvar="VCGATE_PORT",
              help="HTTP port: NGINX auth_request, Traefik ForwardAuth, Envoy ext_authz HTTP, token endpoint, "
                   "metrics, health. [env: VCGATE_PORT]")
@click.option("--grpc-port", default=None, type=click.IntRange(0, 65535), envvar="VCGATE_GRPC_PORT",
              help="Also serve Envoy ext_authz over gRPC on this port (off unless given). [env: VCGATE_GRPC_PORT]")
@click.option("--key-file", type=EXISTING_FILE, default=None, envvar="VCGATE_KEY_FILE",
              help="Gateway key file that signs access tokens; without it tokens die with the process. "
                   "Passphrase from VCGATE_PASSPHRASE. [env: VCGATE_KEY_FILE]")
@click.option("--redis", "redis_url", default=None, envvar="VCGATE_REDIS_URL", metavar="URL",
              help="redis:// URL for the nonce, DPoP replay, session and limit stores shared by replicas. [env: VCGATE_REDIS_URL]")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), default=None, envvar="VCGATE_AUDIT_LOG",
              help="Append every decision to this hash-chained log. [env: VCGATE_AUDIT_LOG]")
@click.option("--rpc", "rpc_url", default=None, envvar="VCGATE_RPC_URL", metavar="URL",
              help="Ethereum JSON-RPC URL: mirror the revocation registry for on-chain status. [env: VCGATE_RPC_URL]")
@click.option("--registry", default=None, envvar="VCGATE_REGISTRY", metavar="ADDRESS",
              help="The ERC-5539 registry the mirror follows (with --rpc). [env: VCGATE_REGISTRY]")
@click.option("--confirmations", default=12, show_default=True, type=click.IntRange(0, 10_000),
              envvar="VCGATE_CONFIRMATIONS",
              help="Reorg window the mirror keeps undo data for. [env: VCGATE_CONFIRMATIONS]")
@click.option("--max-staleness", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
              envvar="VCGATE_MAX_STALENESS", metavar="SECONDS",
              help="Refuse on-chain status checks (status_unavailable, /readyz 503) when the mirror's last good "
                   "sync is older than this. [env: VCGATE_MAX_STALENESS]")
@click.option("--mirror-poll-interval", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True),
              envvar="VCGATE_MIRROR_POLL_INTERVAL", metavar="SECONDS",
              help="Seconds between mirror syncs. [env: VCGATE_MIRROR_POLL_INTERVAL]")
@click.option("--mirror-ready-timeout", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
              envvar="VCGATE_MIRROR_READY_TIMEOUT", metavar="SECONDS",
              help="How long start-up waits for the mirror's first sync. [env: VCGATE_MIRROR_READY_TIMEOUT]")
@click.option("--rpc-timeout", default=10.0, show_default=True, type=click.FloatRange(0, min_open=True),
              envvar="VCGATE_RPC_TIMEOUT", metavar="SECONDS",
              help="Total time one JSON-RPC request may take. [env: VCGATE_RPC_TIMEOUT]")
@click.option("--registry-code-hash", default=None, envvar="VCGATE_REGISTRY_CODE_HASH", metavar="0xHASH",
              help="keccak-256 of the registry's runtime code (default: pinned at the first sync, kept in the "
                   "checkpoint). [env: VCGATE_REGISTRY_CODE_HASH]")
@click.option("--redis-timeout", default=0.25, show_default=True, type=click.FloatRange(0, min_open=True),
              envvar="VCGATE_REDIS_TIMEOUT", metavar="SECONDS",
              help="Time one Redis command may take before the request is refused (store_unavailable). "
                   "[env: VCGATE_REDIS_TIMEOUT]")
@click.option("--audit-timeout", default=5.0, show_default=True, type=click.FloatRange(0, min_open=True),
              envvar="VCGATE_AUDIT_TIMEOUT", metavar="SECONDS",
              help="Time a decision waits for the audit disk before it is refused (audit_unavailable). "
                   "[env: VCGATE_AUDIT_TIMEOUT]")
@click.option("--mirror-checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="VCGATE_MIRROR_CHECKPOINT",
              help="Checkpoint file: a restart syncs from there. [env: VCGATE_MIRROR_CHECKPOINT]")
@click.option("--status-lists", is_flag=True, help="Fetch Bitstring Status List credentials (HTTPS, SSRF-safe).")
@click.option("--did-web", is_flag=True, help="Resolve did:web issuers and issuers that are https URLs (controller documents; HTTPS, SSRF-safe).")
@click.option("--allow-network", "allow_networks", multiple=True, metavar="CIDR",
              help="Let did:web / status-list fetches reach this private network (repeatable).")
@click.option("--ca-bundle", type=EXISTING_FILE, default=None, help="CA bundle for did:web / status-list fetches.")
@did_web_ports_option
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Threads of each worker's HTTP server (and of its gRPC server).")
@click.option("--workers", default=None, type=click.IntRange(1, 256), envvar="VCGATE_WORKERS",
              help="Worker processes sharing the port(s): one per core for a CPU-bound check. Default: the "
                   "number of cores with --redis, else 1 (workers share nonces, DPoP replay and sessions only "
                   "through --redis). [env: VCGATE_WORKERS]")
@click.option("--envoy-prefix", default="/envoy", show_default=True,
              help="The ext_authz HTTP path_prefix configured in Envoy.")
@click.option("--vc-api", is_flag=True, envvar="VCGATE_VC_API",
              help="Also serve the W3C VC-API (issue, verify, DID resolution, status lists); see "
                   "docs/conformance.md. With --policy only verify and DID resolution (no issuing "
                   "on the auth service). [env: VCGATE_VC_API]")
@click.option("--issuer-key", type=EXISTING_FILE, default=None, envvar="VCGATE_ISSUER_KEY",
              help="With --vc-api: the key file credentials are issued with (its did:key is the issuer). "
                   "[env: VCGATE_ISSUER_KEY]")
@click.option("--vc-api-profile", default=None, envvar="VCGATE_VC_API_PROFILE",
              type=click.Choice(["vc-jose", "eddsa-rdfc-2022", "eddsa-jcs-2022", "ecdsa-rdfc-2019", "ecdsa-jcs-2019"]),
              help="With --vc-api: how /credentials/issue secures credentials (default: the first Data Integrity "
                   "suite fitting the key); /<profile>/credentials/issue picks per request. [env: VCGATE_VC_API_PROFILE]")
@click.option("--tls-cert", type=EXISTING_FILE, default=None, envvar="VCGATE_TLS_CERT",
              help="With --vc-api and --tls-key: serve HTTPS (the W3C suites fetch status lists over https). "
                   "[env: VCGATE_TLS_CERT]")
@click.option("--tls-key", type=EXISTING_FILE, default=None, envvar="VCGATE_TLS_KEY",
              help="The TLS private key (PEM) for --tls-cert. [env: VCGATE_TLS_KEY]")
@alg_name_option
def serve(
    policy_file: Path,
    host: str,
    port: int,
    grpc_port: int | None,
    key_file: Path | None,
    redis_url: str | None,
    audit_log: Path | None,
    rpc_url: str | None,
    registry: str | None,
    confirmations: int,
    max_staleness: float,
    mirror_poll_interval: float,
    mirror_ready_timeout: float,
    rpc_timeout: float,
    registry_code_hash: str | None,
    redis_timeout: float,
    audit_timeout: float,
    mirror_checkpoint: Path | None,
    status_lists: bool,
    did_web: bool,
    allow_networks: tuple[str, ...],
    ca_bundle: Path | None,
    did_web_ports: tuple[int, ...],
    threads: int,
    workers: int | None,
    envoy_prefix: str,
    vc_api: bool,
    issuer_key: Path | None,
    vc_api_profile: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    alg_name: str,
) -> None:
    """Run the auth service that NGINX, Envoy and Traefik ask about each request.

    Served by waitress (a production WSGI server) with --threads threads in each of --workers
    processes (default: one per core with --redis, else one). Without --redis the nonce, replay
    and session stores are in memory, so one process serves; workers and replicas share --redis
    and --key-file.

    \b
    Endpoints (HTTP port):
      /nginx/auth                          NGINX auth_request (X-Original-Method / X-Original-URI)
      /traefik/auth                        Traefik ForwardAuth (X-Forwarded-Method/Proto/Host/Uri)
      /envoy/<path>                        Envoy ext_authz HTTP (path_prefix: /envoy)
      /.well-known/vcgate/token            token endpoint (route it here from the gateway)
      /.well-known/oauth-protected-resource  RFC 9728 metadata
      /metrics  /healthz  /readyz          Prometheus metrics, liveness, readiness
    With --grpc-port: envoy.service.auth.v3.Authorization/Check.
    With --vc-api (W3C VC-API; --policy then optional):
      POST [/<profile>]/credentials/verify, /presentations/verify
      GET /1.0/identifiers/<did>           did:key resolution
      without --policy also (issuing: keep this port private):
      POST [/<profile>]/credentials/issue
      GET /status-lists/<n>                the issuer's BitstringStatusListCredentials

    \b
    Examples:
      vcgate serve --policy policy.yaml --key-file gateway.key
      vcgate serve --policy policy.yaml --port 8181 --grpc-port 9191 --redis redis://127.0.0.1:6379/0
      vcgate serve --policy policy.yaml --rpc http://127.0.0.1:8545 --registry 0x5FbD... --audit-log audit.jsonl
      vcgate serve --vc-api --issuer-key issuer.key --port 40443 --tls-cert cert.pem --tls-key key.pem

    Configuration snippets for each gateway: docs/plugins/. Tracing: VCGATE_OTEL=1 with the
    standard OTEL_* exporter variables (the otel extra); metrics, alert rules and the
    dashboard: docs/observability.md.
    """
    try:
        import waitress  # noqa: F401

        from ..server import AuthService, create_app
    except ImportError as exc:
        raise CLIError(
            "extra_missing", f"vcgate serve needs the server extra: pip install 'vcgate[server]' ({exc})",
            "pip install 'vcgate[server]'",
        ) from exc
    from ..assembly import GateConfig

    if (rpc_url is None) != (registry is None):
        raise click.UsageError("--rpc and --registry go together")
    vcapi = _vcapi_service(vc_api, issuer_key, vc_api_profile, tls_cert, tls_key, alg_name)
    if policy_file is not None and tls_cert is not None:
        raise click.UsageError("--tls-cert/--tls-key serve the VC-API alone (no --policy); terminate TLS at the gateway")
    if policy_file is None:
        if vcapi is None:
            raise click.UsageError("--policy is required (or serve only the VC-API with --vc-api)")
        _run_vcapi(vcapi, host=host, port=port, tls=(tls_cert, tls_key))
        return
    if registry_code_hash is not None and not _is_hash(registry_code_hash):
        raise click.BadParameter("0x followed by 64 hex digits (env: VCGATE_REGISTRY_CODE_HASH)",
                                 param_hint="--registry-code-hash")
    config = GateConfig(
        policy=str(policy_file),
        key_file=str(key_file) if key_file else None,
        key_passphrase=_passphrase(),
        redis_url=redis_url,
        audit_log=str(audit_log) if audit_log else None,
        rpc_url=rpc_url,
        registry=registry,
        confirmations=confirmations,
        max_staleness=max_staleness,
        mirror_poll_interval=mirror_poll_interval,
        mirror_ready_timeout=mirror_ready_timeout,
        rpc_timeout=rpc_timeout,
        registry_code_hash=registry_code_hash,
        redis_timeout=redis_timeout,
        audit_timeout=audit_timeout,
        mirror_checkpoint=str(mirror_checkpoint) if mirror_checkpoint else None,
        status_lists=status_lists,
        did_web=did_web,
        allow_networks=allow_networks,
        ca_bundle=str(ca_bundle) if ca_bundle else None,
        did_web_ports=did_web_ports,
    )
    workers = _workers(workers, redis_url, grpc_port)
    from ..tracing import configure_sdk

    try:  # VCGATE_OTEL=1 (docs/observability.md): checked once, set up in each worker below
        configure_sdk(check_only=True)
    except ImportError as exc:
        raise CLIError("extra_missing", str(exc)) from exc
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if vcapi is not None and workers > 1:
        # The VC-API's status lists live in the process: forked workers would each have a copy.
        raise click.UsageError("--vc-api serves from one process: use --workers 1")
    gate_options: dict[str, Any] = {}
    if key_file is None:
        warn("no --key-file: access tokens are signed by a key generated now; they die with this process")
        if workers > 1:  # generated once, before the fork: every worker accepts every token
            from ..keys import PrivateKey

            gate_options["gateway_key"] = PrivateKey.generate("EdDSA")

    def run(worker: int | None = None, sock: Any = None) -> None:
        cfg = config
        if worker is not None:
            from dataclasses import replace

            from ..server.workers import per_worker_path

            cfg = replace(config, audit_log=per_worker_path(config.audit_log, worker),
                          mirror_checkpoint=per_worker_path(config.mirror_checkpoint, worker))
        configure_sdk()  # the span exporter's thread: per process, after the fork
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the no-key warning, said once above
            runtime = cfg.build(**gate_options)
        try:
            service = AuthService(runtime.gate, mirror=runtime.mirror)
            app = create_app(service, envoy_prefix=envoy_prefix)
            if vcapi is not None:
                from ..server.vcapi import create_blueprint

                # Verification and DID resolution only: /credentials/issue here would let whoever
                # reaches the auth service mint credentials the gate trusts (red-team finding).
                app.register_blueprint(create_blueprint(vcapi, issue=False))
            _run(app, service, host=host, port=port, grpc_port=grpc_port, threads=threads, sock=sock)
        finally:
            runtime.close()

    if workers == 1:
        run()
        return
    from ..server.workers import bind, supervise

    try:
        sock = bind(host, port)
    except OSError as exc:
        raise CLIError("io_error", f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                       "choose a free port with --port (and --grpc-port), or stop what is listening there") from exc
    bound = sock.getsockname()[1]
    where = f"http://{host}:{bound}" + (f", grpc {host}:{grpc_port}" if grpc_port is not None else "")
    info(f"vcgate serve: listening on {where} ({workers} workers, policy {policy_file}, audience {_audience(policy_file)})")
    code = supervise(workers, lambda index: run(index, sock), log=warn)
    info("vcgate serve: stopped")
    raise SystemExit(code)


def _vcapi_service(
    vc_api: bool, issuer_key: Path | None, profile: str | None, tls_cert: Path | None, tls_key: Path | None,
    alg_name: str = "EdDSA",
) -> Any:
    """The VC-API service when --vc-api is given (None otherwise); checks its options."""
    if not vc_api:
        if issuer_key or profile or tls_cert or tls_key:
            raise click.UsageError("--issuer-key, --vc-api-profile, --tls-cert and --tls-key go with --vc-api")
        return None
    if issuer_key is None:
        raise click.UsageError("--vc-api needs --issuer-key (env VCGATE_ISSUER_KEY)")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        from ..server.vcapi import VCAPIService
    except ImportError as exc:
        raise CLIError(
            "extra_missing", f"--vc-api needs the conformance extra: pip install 'vcgate[conformance]' ({exc})",
            "pip install 'vcgate[conformance]'",
        ) from exc
    from .base import load_key

    loaded = load_key(issuer_key)
    try:
        return VCAPIService(issuer_key=loaded.key, default_profile=profile, alg_name=alg_name)
    except ValueError as exc:
        raise click.UsageError(f"--vc-api-profile: {exc}") from exc


def _run_vcapi(service: Any, *, host: str, port: int, tls: tuple[Path | None, Path | None]) -> None:
    import logging

    from ..server.vcapi import create_vcapi_app, serve_tls

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    app = create_vcapi_app(service)
    cert, key = tls
    scheme = "https" if cert else "http"

    def ready(bound: int) -> None:
        info(f"vcgate serve: VC-API on {scheme}://{host}:{bound} (issuer {service.issuer}, "
             f"profiles {', '.join(service.profiles)}, default {service.default_profile})")

    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(SystemExit(0)))
    try:
        if cert is not None and key is not None:
            serve_tls(app, host=host, port=port, cert=str(cert), key=str(key), on_ready=ready)
        else:
            from waitress.server import create_server

            from ..server.vcapi import MAX_BODY

            server = create_server(app, host=host, port=port, threads=4, ident="vcgate",
                                   max_request_body_size=_buffered_body_limit(MAX_BODY))
            ready(server.effective_port)
            server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    info("vcgate serve: stopped")


def _buffered_body_limit(app_limit: int) -> int:
    """waitress buffers a whole request body (to disk past 1 MiB) before the app reads it, up to
    1 GiB by default: 300 MB were taken to be answered 413 (red-team finding; a few at once fill
    the disk the audit log is on). A few times the app's own limit keeps the app's coded 413 for
    what is merely too large; waitress answers a bare 413 above it."""
    return 4 * app_limit + 65536


def _is_hash(value: str) -> bool:
    import re

    return re.fullmatch(r"0x[0-9a-fA-F]{64}", value) is not None


def _passphrase() -> str | None:
    from ..keys import passphrase_from_env

    return passphrase_from_env()


def _workers(workers: int | None, redis_url: str | None, grpc_port: int | None) -> int:
    """The number of worker processes (see --workers), checked against what they must share."""
    import os

    if workers is None:
        return (os.cpu_count() or 1) if redis_url else 1
    if workers > 1 and not redis_url:
        raise click.UsageError(
            "--workers above 1 needs --redis (VCGATE_REDIS_URL): workers share nonces, DPoP replay and sessions "
            "only through Redis; without it a proof used at one worker could be replayed at another"
        )
    if workers > 1 and grpc_port == 0:
        raise click.UsageError("--workers above 1 needs a fixed --grpc-port (the workers share it), not 0")
    return workers


def _audience(policy_file: Path) -> str:
    from ..policy import Policy

    try:
        return Policy.from_file(policy_file).audience
    except Exception:  # noqa: BLE001 -- each worker loads it again and reports what is wrong
        return "?"


def _run(app: Any, service: Any, *, host: str, port: int, grpc_port: int | None, threads: int,
         sock: Any = None) -> None:
    from waitress.server import create_server

    grpc_server = None
    if grpc_port is not None:
        from ..server.grpc_authz import serve_grpc

        grpc_server, grpc_port = serve_grpc(service, host=host, port=grpc_port, workers=threads)
    # X-Forwarded-Proto/-Host describe the *original* request (Traefik's ForwardAuth, NGINX and
    # Envoy set them) and are read as data by the service; waitress 3 deletes them by default
    # unless a trusted proxy is configured, so keep them. Only the gateway reaches this port.
    where_to = {"sockets": [sock]} if sock is not None else {"host": host, "port": port}
    server = create_server(app, threads=threads, ident="vcgate", clear_untrusted_proxy_headers=False,
                           max_request_body_size=_buffered_body_limit(service.gate.max_body), **where_to)
    bound = server.effective_port

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.close, daemon=True).start()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    if sock is None:  # a worker: the supervisor said where it listens
        where = f"http://{host}:{bound}" + (f", grpc {host}:{grpc_port}" if grpc_server is not None else "")
        info(f"vcgate serve: listening on {where} (policy {service.gate.policy_path}, audience {service.gate.audience})")
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()
        if grpc_server is not None:
            grpc_server.stop(grace=2).wait(5)
        if sock is None:
            info("vcgate serve: stopped")
