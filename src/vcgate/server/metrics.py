"""Prometheus metrics of the auth service: decisions, check latency, revocation-mirror lag,
policy reloads, store errors. docs/observability.md lists them, with the shipped alert rules
and dashboard (deploy/observability/) built on them.

One :class:`prometheus_client.CollectorRegistry` per service instance (no module-level
registry: two services in one process, as in the tests, must not share counters). The mirror
is read at scrape time by a custom collector, so the request path never touches it for metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# From 100 µs (a warm session check is ~150-300 µs here) to 2.5 s (a token request that
# waits for a slow audit disk); decisions beyond that are refused by the audit timeout anyway.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


# The proofs a mirror makes on every sync (vcgate.errors.ChainMismatchError's reasons): one
# series each, so an alert can name the failed proof.
_MISMATCH_REASONS = ("chain_id", "registry_code", "history")


class _MirrorCollector(Collector):
    """``vcgate_mirror_*`` gauges read from the mirror's :meth:`lag` when scraped."""

    def __init__(self, mirror: Any) -> None:
        self.mirror = mirror

    def collect(self) -> Iterator[Any]:
        lag = self.mirror.lag()
        reg = str(self.mirror.registry)
        labels = ["registry"]
        seconds = GaugeMetricFamily(
            "vcgate_mirror_lag_seconds", "Seconds since the revocation mirror's last good sync", labels=labels
        )
        seconds.add_metric([reg], float("nan") if lag.seconds is None else lag.seconds)
        yield seconds
        blocks = GaugeMetricFamily(
            "vcgate_mirror_lag_blocks", "Blocks between the chain head seen and the block the mirror applied",
            labels=labels,
        )
        blocks.add_metric([reg], float("nan") if lag.blocks_behind is None else lag.blocks_behind)
        yield blocks
        synced = GaugeMetricFamily("vcgate_mirror_synced_block", "Last block the mirror applied", labels=labels)
        synced.add_metric([reg], float("nan") if lag.synced_block is None else lag.synced_block)
        yield synced
        healthy = GaugeMetricFamily(
            "vcgate_mirror_healthy", "1 if the mirror answers (last good sync within max_staleness)", labels=labels
        )
        healthy.add_metric([reg], 1.0 if lag.healthy else 0.0)
        yield healthy
        mismatch = GaugeMetricFamily(
            "vcgate_mirror_chain_mismatch",
            "1 for the proof that failed when the node is not provably the configured chain "
            "(reason: chain_id, registry_code, history); checks are refused meanwhile",
            labels=["registry", "reason"],
        )
        for reason in _MISMATCH_REASONS:
            mismatch.add_metric([reg, reason], 1.0 if lag.chain_mismatch == reason else 0.0)
        yield mismatch


class _PolicyCollector(Collector):
    """``vcgate_policy_*`` read from the gate's :attr:`~vcgate.gate.Gate.policy_state` when scraped."""

    def __init__(self, gate: Any) -> None:
        self.gate = gate

    def collect(self) -> Iterator[Any]:
        state = self.gate.policy_state
        failures = CounterMetricFamily(
            "vcgate_policy_reload_failures", "Policy file edits that did not load (the previous policy stayed)"
        )
        failures.add_metric([], state.reload_failures)
        yield failures
        reloads = CounterMetricFamily(
            "vcgate_policy_reloads", "Policy file edits by result: ok (now in force) or failed (the previous policy stayed)",
            labels=["result"],
        )
        reloads.add_metric(["ok"], state.reloads)
        reloads.add_metric(["failed"], state.reload_failures)
        yield reloads
        loaded = GaugeMetricFamily("vcgate_policy_loaded_timestamp_seconds", "When the policy in force was loaded")
        loaded.add_metric([], state.loaded_at)
        yield loaded
        stale = GaugeMetricFamily(
            "vcgate_policy_stale", "1 while the policy file's last edit did not load and the previous policy decides"
        )
        stale.add_metric([], 1.0 if state.stale else 0.0)
        yield stale
        info = InfoMetricFamily("vcgate_policy", "The policy in force")
        info.add_metric([], {"sha256": state.sha256 or "", "source": str(state.source or "")})
        yield info


def _stores(gate: Any) -> list[Any]:
    """The gate's stores that count their failures (the Redis ones), each once."""
    candidates = (
        gate.nonce_store,
        getattr(gate.dpop_verifier, "replay_store", None),
        gate.meter.store,
        gate.session_records.store,
    )
    found: list[Any] = []
    for store in candidates:
        if callable(getattr(store, "failures", None)) and all(store is not f for f in found):
            found.append(store)
    return found


class _StoreCollector(Collector):
    """``vcgate_store_errors_total`` read from the gate's stores when scraped (the stores count
    where a Redis failure becomes ``store_unavailable``: :mod:`vcgate.stores`)."""

    def __init__(self, gate: Any) -> None:
        self.gate = gate

    def collect(self) -> Iterator[Any]:
        errors = CounterMetricFamily(
            "vcgate_store_errors",
            "Shared-store operations that failed (Redis down, timed out, refused); each refuses its request 503",
            labels=["store", "operation"],
        )
        for store in _stores(self.gate):
            for operation, count in sorted(store.failures().items()):
                errors.add_metric([store.kind, operation], count)
        yield errors


class _InfoCollector(Collector):
    def __init__(self, version: str, audience: str) -> None:
        self.version, self.audience = version, audience

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("vcgate_build", "vcgate version and the audience it guards")
        info.add_metric([], {"version": self.version, "audience": self.audience})
        yield info


class Metrics:
    """The service's counters and histogram, and their text exposition."""

    def __init__(self, *, mirror: Any = None, gate: Any = None, version: str = "", audience: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "vcgate_decisions",
            "Decisions by adapter, outcome (allow/deny) and error code (ok when allowed)",
            ["adapter", "outcome", "code"],
            registry=self.registry,
        )
        self.statuses = Counter(
            "vcgate_decision_status",
            "Decisions by adapter and the HTTP status the gate answered (200 allowed; 5xx: it could not decide)",
            ["adapter", "status"],
            registry=self.registry,
        )
        self.internal_errors = Counter(
            "vcgate_internal_errors",
            "Requests the auth service answered 500 because of an unexpected exception (a bug: the gate never raises)",
            registry=self.registry,
        )
        self.latency = Histogram(
            "vcgate_check_duration_seconds",
            "Time to decide one request inside the auth service (excludes the HTTP server)",
            ["adapter"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_InfoCollector(version, audience))
        if mirror is not None:
            self.registry.register(_MirrorCollector(mirror))
        if gate is not None:
            self.registry.register(_PolicyCollector(gate))
            self.registry.register(_StoreCollector(gate))

    def observe(self, adapter: str, allow: bool, code: str | None, seconds: float, status: int | None = None) -> None:
        self.decisions.labels(adapter, "allow" if allow else "deny", code or "ok").inc()
        if status is not None:
            self.statuses.labels(adapter, str(status)).inc()
        self.latency.labels(adapter).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
