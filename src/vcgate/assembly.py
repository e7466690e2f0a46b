"""Assembly: build a running :class:`~vcgate.gate.Gate` (and what runs beside it) from settings.

Every adapter that is started by someone else's process -- ``vcgate serve``, the vLLM
``--middleware`` class, the LiteLLM ``custom_auth`` hook, the Kong plugin -- needs the same
pieces around the gate: the policy file, the gateway's token key, shared Redis stores, the
audit log, the revocation mirror and status lists. :class:`GateConfig` names them once;
:meth:`GateConfig.from_env` reads the ``VCGATE_*`` variables (table in ``docs/plugins/README.md``)
and :meth:`GateConfig.build` returns an :class:`AssembledGate` that owns whatever has a thread or
a connection (mirror, audit writer) and closes it; :class:`SharedGates` keeps one per
configuration for plugins whose host builds them.

The request path is untouched by this module: it only wires objects together at start-up.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from .gate import Gate
from .keys import passphrase_from_env

__all__ = ["ENV_VARS", "AssembledGate", "GateConfig", "SharedGates"]

#: The environment variables :meth:`GateConfig.from_env` reads, and what each sets.
ENV_VARS: dict[str, str] = {
    "VCGATE_POLICY": "policy file (required)",
    "VCGATE_KEY_FILE": "gateway key file that signs access tokens (a vcgate key file)",
    "VCGATE_PASSPHRASE": "passphrase of an encrypted VCGATE_KEY_FILE (VCGATE_KEY_PASSPHRASE: deprecated alias)",
    "VCGATE_REDIS_URL": "redis:// URL for the nonce, DPoP replay, session and limit stores shared by replicas",
    "VCGATE_AUDIT_LOG": "append every decision to this hash-chained JSON-lines file",
    "VCGATE_RPC_URL": "Ethereum JSON-RPC URL: follow the ERC-5539 registry in VCGATE_REGISTRY",
    "VCGATE_REGISTRY": "address of the revocation registry the mirror follows",
    "VCGATE_CONFIRMATIONS": "blocks the mirror keeps undo data for (reorg window), default 12",
    "VCGATE_MIRROR_CHECKPOINT": "file the mirror checkpoints to, so a restart syncs from there",
    "VCGATE_MAX_STALENESS": "seconds after the mirror's last good sync when on-chain status checks are refused "
    "(status_unavailable), default 30",
    "VCGATE_MIRROR_POLL_INTERVAL": "seconds between mirror syncs, default 1",
    "VCGATE_MIRROR_READY_TIMEOUT": "seconds start-up waits for the mirror's first sync, default 30",
    "VCGATE_RPC_TIMEOUT": "seconds one JSON-RPC request may take in total (a trickling node is cut off), default 10",
    "VCGATE_REGISTRY_CODE_HASH": "keccak-256 of the registry's runtime code the mirror must see "
    "(default: pinned at the first sync)",
    "VCGATE_REDIS_TIMEOUT": "seconds one Redis command may take before the request is refused "
    "(store_unavailable), default 0.25",
    "VCGATE_AUDIT_TIMEOUT": "seconds a decision waits for the audit disk before it is refused "
    "(audit_unavailable), default 5",
    "VCGATE_STATUS_LISTS": "1: fetch Bitstring Status List credentials over HTTPS (SSRF-safe)",
    "VCGATE_DID_WEB": "1: resolve did:web issuers, and issuers that are https URLs (controller documents), "
    "over HTTPS (SSRF-safe)",
    "VCGATE_ALLOW_NETWORKS": "comma-separated networks did:web / status-list fetches may reach "
    "(private ranges are refused otherwise)",
    "VCGATE_CA_BUNDLE": "CA bundle for did:web and status-list HTTPS fetches",
    "VCGATE_DID_WEB_PORTS": "ports besides 443 a did:web DID or issuer URL may name, comma-separated "
    "(others are refused)",
}

_TRUE = ("1", "true", "yes", "on")
# Numeric settings: (environment variable, GateConfig field, type); the bounds after the first
# are seconds that must be > 0.
_NUMBERS: tuple[tuple[str, str, type], ...] = (
    ("VCGATE_CONFIRMATIONS", "confirmations", int),
    ("VCGATE_MAX_STALENESS", "max_staleness", float),
    ("VCGATE_MIRROR_POLL_INTERVAL", "mirror_poll_interval", float),
    ("VCGATE_MIRROR_READY_TIMEOUT", "mirror_ready_timeout", float),
    ("VCGATE_RPC_TIMEOUT", "rpc_timeout", float),
    ("VCGATE_REDIS_TIMEOUT", "redis_timeout", float),
    ("VCGATE_AUDIT_TIMEOUT", "audit_timeout", float),
)
log = logging.getLogger("vcgate.assembly")


@dataclass(frozen=True, kw_only=True)
class GateConfig:
    """Everything a gateway process needs to build its :class:`~vcgate.gate.Gate`."""

    policy: str
    key_file: str | None = None
    key_passphrase: str | None = field(default=None, repr=False)
    redis_url: str | None = None
    audit_log: str | None = None
    rpc_url: str | None = None
    registry: str | None = None
    confirmations: int = 12
    mirror_checkpoint: str | None = None
    mirror_ready_timeout: float = 30.0
    max_staleness: float = 30.0
    mirror_poll_interval: float = 1.0
    rpc_timeout: float = 10.0
    registry_code_hash: str | None = None
    redis_timeout: float = 0.25
    audit_timeout: float = 5.0
    status_lists: bool = False
    did_web: bool = False
    allow_networks: tuple[str, ...] = ()
    ca_bundle: str | None = None
    did_web_ports: tuple[int, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> GateConfig:
        """Settings from ``VCGATE_*`` variables (see :data:`ENV_VARS`); keywords win."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        values: dict[str, Any] = {
            "policy": get("VCGATE_POLICY"),
            "key_file": get("VCGATE_KEY_FILE"),
            "key_passphrase": passphrase_from_env(env),
            "redis_url": get("VCGATE_REDIS_URL"),
            "audit_log": get("VCGATE_AUDIT_LOG"),
            "rpc_url": get("VCGATE_RPC_URL"),
            "registry": get("VCGATE_REGISTRY"),
            "mirror_checkpoint": get("VCGATE_MIRROR_CHECKPOINT"),
            "status_lists": (get("VCGATE_STATUS_LISTS") or "").lower() in _TRUE,
            "did_web": (get("VCGATE_DID_WEB") or "").lower() in _TRUE,
            "allow_networks": tuple(n.strip() for n in (get("VCGATE_ALLOW_NETWORKS") or "").split(",") if n.strip()),
            "ca_bundle": get("VCGATE_CA_BUNDLE"),
        }
        ports = get("VCGATE_DID_WEB_PORTS")
        if ports is not None:
            from .did.web import parse_ports  # raises ValueError naming the variable

            values["did_web_ports"] = parse_ports(ports)
        values["registry_code_hash"] = get("VCGATE_REGISTRY_CODE_HASH")
        for name, key, kind in _NUMBERS:
            raw = get(name)
            if raw is not None:
                try:
                    values[key] = kind(raw)
                except ValueError:
                    raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, not {raw!r}") from None
        values.update(overrides)
        if not values.get("policy"):
            raise ValueError("no policy file: set VCGATE_POLICY (or pass policy=...)")
        return cls(**values)

    def __post_init__(self) -> None:
        if (self.rpc_url is None) != (self.registry is None):
            raise ValueError("the revocation mirror needs both an RPC URL and a registry address")
        if self.confirmations < 0:
            raise ValueError("confirmations must be >= 0 (VCGATE_CONFIRMATIONS, --confirmations)")
        for name, key, _kind in _NUMBERS[1:]:
            value = getattr(self, key)
            if not value > 0 or value == float("inf"):
                raise ValueError(f"{key} must be a positive number of seconds ({name}, --{key.replace('_', '-')})")

    def build(self, **gate_options: Any) -> AssembledGate:
        """Build the gate and start what runs beside it (mirror polling, audit writer).

        ``gate_options`` go to :class:`~vcgate.gate.Gate` and win over what the settings give
        (tests pass a clock or their own status checker). With a mirror configured this waits
        up to ``mirror_ready_timeout`` seconds for its first sync so the first requests are not
        refused ``status_unavailable``; a chain that cannot be reached raises.
        """
        closers: list[Any] = []
        try:
            return self._build(closers, gate_options)
        except BaseException:
            for close in reversed(closers):
                close()
            raise

    def _build(self, closers: list[Any], gate_options: dict[str, Any]) -> AssembledGate:
        from .credentials import Verifier
        from .did import JWKMethod, KeyMethod, Resolver, WebMethod
        from .did.controller import ControllerDocumentMethod
        from .keys import ALGORITHMS

        opts: dict[str, Any] = {}
        verify: Any = self.ca_bundle if self.ca_bundle is not None else True
        fetch = {"allow_networks": self.allow_networks, "verify": verify, "allow_ports": self.did_web_ports}
        resolver = (
            # did:web and issuers that are https URLs (controller documents): the same fetch rules.
            Resolver([KeyMethod(), JWKMethod(), WebMethod(**fetch), ControllerDocumentMethod(**fetch)])
            if self.did_web
            else Resolver.local()
        )
        clock = gate_options.get("clock")
        verifier_kw: dict[str, Any] = {"resolver": resolver, "algorithms": gate_options.get("algorithms", ALGORITHMS)}
        if clock is not None:
            verifier_kw["clock"] = clock
        verifier = Verifier(**verifier_kw)
        opts["verifier"] = verifier

        if self.redis_url:
            from .stores import RedisCounterStore, RedisNonceStore, RedisReplayStore, RedisSessionStore, redis_client

            client = redis_client(self.redis_url, timeout=self.redis_timeout)
            opts["nonce_store"] = RedisNonceStore(client)
            opts["replay_store"] = RedisReplayStore(client)
            opts["counter_store"] = RedisCounterStore(client)  # limits (docs/limits.md)
            opts["session_store"] = RedisSessionStore(client)  # a token works at every replica
            closers.append(client.close)

        mirror = None
        methods: list[Any] = []
        if self.rpc_url is not None and self.registry is not None:
            from .chain import connect
            from .status.mirror import RevocationMirror
            from .status.registry import OnchainStatusMethod

            chain = connect(self.rpc_url, timeout=self.rpc_timeout)
            mirror = RevocationMirror(
                chain=chain,
                registry=self.registry,
                chain_id=chain.chain_id(),
                confirmations=self.confirmations,
                checkpoint_path=self.mirror_checkpoint,
                max_staleness=self.max_staleness,
                poll_interval=self.mirror_poll_interval,
                code_hash=self.registry_code_hash,
            )
            mirror.start()
            closers.append(mirror.stop)
            mirror.wait_ready(self.mirror_ready_timeout)
            methods.append(OnchainStatusMethod([mirror]))
        if self.status_lists:
            from .fetch import SafeFetcher
            from .status.bitstring import BitstringStatusMethod
            from .status.tokenlist import TokenStatusListMethod

            fetcher = SafeFetcher(
                allow_networks=self.allow_networks, verify=verify, label="status list host", document="status list"
            )
            methods.append(BitstringStatusMethod(verifier=verifier, fetch=fetcher.fetch))
            methods.append(TokenStatusListMethod(
                verifier=verifier, fetch=lambda url: fetcher.fetch(url, accept=TokenStatusListMethod.accept)
            ))
        if methods:
            from .status import StatusChecker

            opts["status"] = StatusChecker(methods)

        audit = None
        if self.audit_log:
            from .audit import AuditLog

            audit = AuditLog(self.audit_log)
            closers.append(audit.close)
            opts["audit"] = audit

        opts["audit_timeout"] = self.audit_timeout
        opts.update(gate_options)
        gate = Gate.from_policy_file(self.policy, key_file=self.key_file, key_passphrase=self.key_passphrase, **opts)
        return AssembledGate(gate=gate, mirror=mirror, audit=audit, closers=tuple(closers))


@dataclass(frozen=True)
class AssembledGate:
    """A built gate and the things beside it that hold threads or connections."""

    gate: Gate
    mirror: Any = None
    audit: Any = None
    closers: tuple[Any, ...] = ()

    def close(self) -> None:
        """Stop the mirror (writing its checkpoint), flush and close the audit log, drop Redis."""
        for close in reversed(self.closers):
            try:
                close()
            except Exception:  # shutting down: one failure must not keep the rest open
                log.warning("vcgate: closing %r failed", close, exc_info=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SharedGates:
    """At most one :class:`AssembledGate` per :class:`GateConfig`, built on first use.

    For plugins whose host builds them with no way to pass a shared object (vLLM's
    ``--middleware`` class, Kong's plugin instances, one per route): two gates in one process
    would hold two nonce stores and two session caches, so a challenge issued by one and
    answered at the other would fail and a token would be ``session_unknown``. The plugin
    class keeps one cache; equal configs (a frozen, hashable value) share one gate.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtimes: dict[GateConfig, AssembledGate] = {}

    def get(self, config: GateConfig) -> AssembledGate:
        with self._lock:
            runtime = self._runtimes.get(config)
            if runtime is None:
                # Built under the lock: a second caller must wait for this gate rather than
                # build its own (a mirror's first sync may take seconds).
                runtime = self._runtimes[config] = config.build()
            return runtime

    def close(self, config: GateConfig) -> None:
        """Close and forget the runtime for ``config``; a later :meth:`get` builds a new one."""
        with self._lock:
            runtime = self._runtimes.pop(config, None)
        if runtime is not None:
            runtime.close()

    def close_all(self) -> None:
        with self._lock:
            runtimes = list(self._runtimes.values())
            self._runtimes.clear()
        for runtime in runtimes:
            runtime.close()

    def runtimes(self) -> list[AssembledGate]:
        with self._lock:
            return list(self._runtimes.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._runtimes)
