"""The gate: one framework-neutral check per request, ``RequestView -> Decision``.

Every adapter (ASGI and WSGI middleware, the auth service behind Envoy / NGINX / Traefik)
turns its request into a :class:`RequestView`, calls :meth:`Gate.check` and renders the
:class:`Decision`. The wire protocol (challenge, direct mode, session mode, token endpoint,
RFC 9728 metadata) is in ``docs/protocol.md``.

Pure code: no web framework, no network; state lives only in the injected stores (nonces,
``jti`` replay), a bounded session cache and the current policy reference.

Decisions made here (see also the module docs of each method):

* **Policy first, crypto second.** The policy is first asked with no credential at all: a
  public route is allowed, an explicit or default deny is answered, and only routes that need a
  credential pay for verification.
* **Session calls re-run the policy.** The token endpoint keeps the verified credentials of
  each session it issues in an in-process cache bounded per holder and in bytes, keyed by the
  token's ``jti``, and -- with a ``session_store`` -- in the store every replica reads
  (``gate/sessions.py``). Each session call re-decides with those credentials (so path, model
  and claim rules apply per call) and with a fresh status check (the mirror / status list
  lookups are in-memory), so a revocation takes effect within a call, not a token lifetime.
  A token whose session no replica has (expired or evicted, or no shared store and another
  replica issued it) is refused ``token_invalid`` (reason ``session_unknown``) with the
  challenge: the client simply presents again.
* **Allowed calls are admitted against their limits** (docs/limits.md) in one atomic
  reservation on the ``counter_store``; the decision carries the charge (``metered``) that
  the adapter settles with the response's usage (:meth:`Gate.finish_call`) or releases.
* **Every decision is audited, durably before it is answered.** With an
  :class:`~vcgate.audit.AuditLog` configured, each decision of :meth:`Gate.check` and
  :meth:`Gate.token_endpoint` (allow and deny, challenges included) is appended with the
  :data:`~vcgate.audit.DECISION_FIELDS` plus ``mode``. ``audit_durability="sync"`` (default)
  waits until the record is on disk before the decision is returned, so an adapter never
  acknowledges a decision a crash can lose; ``"async"`` only enqueues. A log that cannot take
  the record (closed, queue full, writer failed, too slow) turns the decision into a 503
  ``audit_unavailable``: the gateway fails closed. Without a log the path costs nothing.
* **Session calls check the proof before the session.** The token signature, then the DPoP
  proof including its ``jti`` replay check (shared through Redis between replicas), and only
  then the per-process session lookup: a proof replayed at another replica is refused
  ``dpop_replayed``, never mistaken for ``session_unknown``.
* **Token scopes are advisory.** They are the union of ``grants.scopes`` of the allow rules
  whose required types and issuers some presented, trusted credential carries. Authorisation of
  every call is the policy decision, never the scope string.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from ..audit import AuditLog, Ticket
from ..credentials.dcql import ASK_AGAIN_CODES, challenge_param, dcql_for_rule
from ..credentials.delegation import digest_sri, is_link
from ..credentials.models import VerifiedCredential, VerifiedPresentation, require_pinned_contexts
from ..credentials.verifier import Verifier
from ..errors import (
    QuotaExceededError,
    AuditUnavailableError,
    DPoPKeyMismatchError,
    MalformedError,
    NonceMismatchError,
    StoreUnavailableError,
    TokenInvalidError,
    VCGateError,
)
from ..keys import ALGORITHMS, PrivateKey, passphrase_from_env, read_key_file
from ..policy import (
    Policy,
    PolicyDecision,
    Reason,
    RequestFacts,
    StatusOutcome,
)
from ..session import DPoPVerifier, SessionVerifier, TokenIssuer, TokenVerifier
from ..tracing import Tracer, tracer_from_env
from ..stores import (
    CounterStore,
    MemoryCounterStore,
    MemoryNonceStore,
    MemoryReplayStore,
    MemorySessionStore,
    NonceStore,
    ReplayStore,
    SessionStore,
)
from ..usage import (
    RESERVATION_TYP,
    LimitMetrics,
    Meter,
    Metered,
    Usage,
    charge_claims,
    charge_from_token,
    meter_call,
)
from .sessions import SessionRecords
from .body import MAX_BODY, TOO_LARGE, model_of, token_form, too_large
from .pipeline import CHECK, METADATA, TOKEN, Plan, Result, answer, dumps
from .request import GRANT_PREFIX, Headers, RequestView

__all__ = ["DEFAULT_TOKEN_PATH", "GRANT_PREFIX", "METADATA_PATH", "Decision", "Gate", "PolicyState", "RequestView"]

log = logging.getLogger("vcgate.gate")

DEFAULT_TOKEN_PATH = "/.well-known/vcgate/token"
METADATA_PATH = "/.well-known/oauth-protected-resource"

_NO_STORE = ("Cache-Control", "no-store")
_JSON = ("Content-Type", "application/json")
_MAX_VP_BYTES = 64 * 1024


class Decision(NamedTuple):
    """The outcome of :meth:`Gate.check`.

    ``grant_headers`` go upstream (after stripping client ``x-vcgate-*`` headers);
    ``headers`` go back to the client (``WWW-Authenticate``, ``Cache-Control``, ...);
    ``body`` is the JSON refusal (``None`` when allowed). ``mode`` is ``public``,
    ``direct`` or ``session`` for an allow of :meth:`Gate.check`, ``token`` for a token the
    token endpoint issued, ``None`` for a refusal.
    """

    allow: bool
    status: int
    code: str | None
    message: str
    reasons: tuple[Reason, ...] = ()
    grant_headers: Headers = ()
    scopes: tuple[str, ...] = ()
    subject: str | None = None
    issuer: str | None = None
    holder: str | None = None
    rule: str | None = None
    mode: str | None = None
    headers: Headers = ()
    body: Mapping[str, Any] | None = None
    policy_decision: PolicyDecision | None = None
    #: The call's charge against its limits (docs/limits.md): settle it with
    #: :meth:`Gate.finish_call` once the response is known, or :meth:`Gate.abort_call`.
    metered: Metered | None = None


def _quote(text: str) -> str:
    """A safe quoted-string for a challenge parameter (printable ASCII, no quote or backslash)."""
    return "".join(c for c in text if 0x20 <= ord(c) < 0x7F and c not in '"\\')[:200]


@dataclass(frozen=True, slots=True)
class PolicyState:
    """Which policy the gate runs and how its reloads went (``/readyz``, metrics).

    ``stale`` is True while the file on disk is not the policy in force: its last edit did
    not load (``last_error`` says why) and the previous policy still decides.
    """

    source: str | None
    sha256: str | None
    loaded_at: float
    reload_failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    #: Policy file edits that loaded and replaced the policy in force.
    reloads: int = 0

    @property
    def stale(self) -> bool:
        return self.last_error is not None


def _model_pending(pd: PolicyDecision) -> bool:
    """A denial reached without the model where a credential could still change the answer:
    every rule that might apply denies an anonymous caller, but with a credential one of them
    might allow (the answer is then ``body_required``, not this denial)."""
    return any(r.code == "body_required" for r in pd.reasons)


def _traced(span: Any, d: Decision | None) -> None:
    """The decision's outcome on its ``vcgate.check`` span (docs/observability.md): codes and
    names only, never a token, a DID or a claim value."""
    if d is None or not span.is_recording():
        return
    span.set_attribute("vcgate.decision", "allow" if d.allow else "deny")
    span.set_attribute("vcgate.status_code", d.status)
    if d.code is not None:
        span.set_attribute("vcgate.code", d.code)
    if d.mode is not None:
        span.set_attribute("vcgate.mode", d.mode)
    if d.rule is not None:
        span.set_attribute("vcgate.rule", d.rule)


class Gate:
    """The core check. Thread-safe; build one per gateway process and share it.

    Keyword-only configuration; anything not given gets an in-process default:

    :param policy: the compiled :class:`~vcgate.policy.Policy`.
    :param policy_path: the file to watch for :meth:`reload_if_changed`.
    :param verifier: presentation verifier (default: did:key and did:jwk, no network).
    :param status: a :class:`~vcgate.status.StatusChecker`; without one a credential that has
        ``credentialStatus`` entries counts as status ``unavailable`` (the policy's mode decides).
    :param nonce_store: challenge nonces (default in-memory); use Redis for several replicas.
    :param replay_store: DPoP ``jti`` replay store (default in-memory).
    :param gateway_key: signs access tokens (default: generated in memory, with a warning).
    :param token_issuer, token_verifier, dpop_verifier: override the session pieces entirely.
    :param audit: an :class:`~vcgate.audit.AuditLog` recording every decision (default none).
    :param audit_durability: ``"sync"`` (default): a decision is returned only once its record
        is durable; ``"async"``: the record is only enqueued (a crash may lose the last batch).
    :param audit_timeout: how long ``"sync"`` waits for the disk before failing closed (503).
    :param clock: POSIX seconds; tests pass a fixed one.
    :param max_body: the most request-body bytes an adapter reads for the gate (the token
        request, or a body whose ``model`` a rule needs); more is refused ``too_large`` (413).
    :param counter_store: where the policy's ``limits:`` are counted (default in-memory; a
        :class:`~vcgate.stores.RedisCounterStore` for several replicas). docs/limits.md.
    :param session_store: sessions every replica can find (a
        :class:`~vcgate.stores.RedisSessionStore`); without one a session is known only to
        the replica that issued its token.
    :param limit_metrics: :class:`~vcgate.usage.LimitMetrics` to count limits in Prometheus.
    :param session_cache_bytes, sessions_per_holder: bounds of the in-process session cache.
    :param tracer: OpenTelemetry spans of each decision (:mod:`vcgate.tracing`); default from
        ``VCGATE_OTEL`` (off: a no-op tracer, and OpenTelemetry is not imported).
    """

    def __init__(
        self,
        *,
        policy: Policy,
        policy_path: str | os.PathLike[str] | None = None,
        verifier: Verifier | None = None,
        status: Any = None,
        nonce_store: NonceStore | None = None,
        replay_store: ReplayStore | None = None,
        gateway_key: PrivateKey | None = None,
        token_issuer: TokenIssuer | None = None,
        token_verifier: TokenVerifier | None = None,
        dpop_verifier: DPoPVerifier | None = None,
        clock: Callable[[], float] = time.time,
        token_path: str = DEFAULT_TOKEN_PATH,
        token_lifetime: float = 300,
        nonce_ttl: float = 300,
        algorithms: Sequence[str] = ALGORITHMS,
        reload_interval: float = 1.0,
        audit: AuditLog | None = None,
        audit_durability: str = "sync",
        audit_timeout: float = 5.0,
        max_body: int = MAX_BODY,
        counter_store: CounterStore | None = None,
        session_store: SessionStore | None = None,
        limit_metrics: LimitMetrics | None = None,
        session_cache_bytes: int = 64 * 1024 * 1024,
        sessions_per_holder: int = 16,
        tracer: Tracer | None = None,
    ) -> None:
        self.tracer = tracer if tracer is not None else tracer_from_env()
        if audit_durability not in ("sync", "async"):
            raise ValueError("audit_durability must be 'sync' or 'async'")
        self.audit = audit
        self.max_body = max_body
        self.audit_durability = audit_durability
        self.audit_timeout = audit_timeout
        self._policy = policy
        self.audience = policy.audience.rstrip("/")
        self._clock = clock
        # One allow-list for every entry point (vcgate.keys.ALGORITHMS, in its order).
        self.algorithms = tuple(a for a in ALGORITHMS if a in set(algorithms))
        self.verifier = verifier if verifier is not None else Verifier(clock=clock, algorithms=self.algorithms)
        self.status = status
        self.nonce_store: NonceStore = nonce_store if nonce_store is not None else MemoryNonceStore()
        self.nonce_ttl = nonce_ttl
        if token_issuer is None:
            if gateway_key is None:
                warnings.warn(
                    "vcgate: no gateway key configured; generated one in memory. Access tokens will not "
                    "survive a restart and will not work across replicas (configure a key file).",
                    RuntimeWarning,
                    stacklevel=2,
                )
                gateway_key = PrivateKey.generate("EdDSA")
            token_issuer = TokenIssuer(key=gateway_key, issuer=self.audience, lifetime=token_lifetime, clock=clock)
        self.token_issuer = token_issuer
        if token_verifier is None:
            token_verifier = TokenVerifier(
                keys=[token_issuer.public_key], issuer=token_issuer.issuer, audience=self.audience, clock=clock
            )
        if dpop_verifier is None:
            dpop_verifier = DPoPVerifier(
                algorithms=self.algorithms,
                replay_store=replay_store if replay_store is not None else MemoryReplayStore(),
                clock=clock,
            )
        self.dpop_verifier = dpop_verifier
        self.sessions = SessionVerifier(tokens=token_verifier, proofs=dpop_verifier)
        self.token_path = token_path
        self.token_endpoint_url = self.audience + token_path
        self.meter = Meter(store=counter_store if counter_store is not None else MemoryCounterStore(),
                           metrics=limit_metrics)
        # Verified sessions of this process, bounded per holder and in bytes (their records'
        # size); the shared store, if any, is where other replicas' sessions are found.
        self.session_records = SessionRecords(
            verifier=self.verifier, store=session_store,
            cache=MemorySessionStore(max_bytes=session_cache_bytes, max_per_holder=sessions_per_holder),
            clock=clock,
        )
        self._lock = threading.Lock()
        self._needs_body_memo: dict[tuple[str, str], bool] = {}
        self._policy_needs_body: tuple[Policy | None, bool] = (None, True)
        self._anon_memo: tuple[Policy | None, dict[tuple[Any, ...], PolicyDecision]] = (None, {})
        # Reload state.
        self.policy_path = os.fspath(policy_path) if policy_path is not None else None
        self.reload_interval = reload_interval
        self._reload_lock = threading.Lock()
        self._last_stat_check = time.monotonic()
        self._file_sig = self._stat() if self.policy_path else None
        self._policy_state = PolicyState(
            source=self.policy_path or policy.source, sha256=getattr(policy, "sha256", None), loaded_at=time.time()
        )

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_policy_file(
        cls,
        path: str | os.PathLike[str],
        *,
        key_file: str | os.PathLike[str] | None = None,
        key_passphrase: str | None = None,
        **overrides: Any,
    ) -> Gate:
        """A gate for the policy in ``path``, reloaded when the file changes.

        ``key_file`` (a ``vcgate keys`` key file) is the gateway's token signing key; without
        it (and without ``gateway_key=``) a key is generated in memory, which means tokens do
        not survive a restart and are not accepted by other replicas. ``key_passphrase``
        defaults to ``$VCGATE_PASSPHRASE``, as everywhere else.
        """
        policy = Policy.from_file(path)
        if key_file is not None and "gateway_key" not in overrides:
            if key_passphrase is None:
                key_passphrase = passphrase_from_env()
            overrides["gateway_key"] = read_key_file(key_file, passphrase=key_passphrase)
        return cls(policy=policy, policy_path=path, **overrides)

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def policy_state(self) -> PolicyState:
        """The policy in force and the outcome of its reloads."""
        return self._policy_state

    # --- policy reload --------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.policy_path)  # type: ignore[arg-type]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def reload_if_changed(self, *, force: bool = False) -> bool:
        """Swap in the policy file's new contents if it changed; True if a new policy is live.

        Checks ``stat`` at most once per ``reload_interval`` (unless ``force``). A file that no
        longer loads is logged and the current policy stays: a bad edit never opens or closes
        the gateway. In-flight requests keep the policy object they started with.
        """
        if self.policy_path is None:
            return False
        now = time.monotonic()
        if not force and now - self._last_stat_check < self.reload_interval:
            return False
        if not self._reload_lock.acquire(blocking=False):
            return False  # another thread is reloading; this request uses the current policy
        try:
            self._last_stat_check = now
            sig = self._stat()
            if sig is None or sig == self._file_sig:
                return False
            self._file_sig = sig
            try:
                new = Policy.from_file(self.policy_path)
            except Exception as exc:  # noqa: BLE001 -- whatever the loader raised, the request must not see it
                why = exc.message if isinstance(exc, VCGateError) else f"{type(exc).__name__}: {exc}"
                return self._reload_failed(why)
            if new.audience.rstrip("/") != self.audience:
                return self._reload_failed("the new policy changes the audience; restart the gateway to change it")
            self._policy = new  # one reference assignment: atomic for concurrent readers
            self._needs_body_memo = {}
            self._policy_state = PolicyState(
                source=self.policy_path, sha256=new.sha256, loaded_at=time.time(),
                reload_failures=self._policy_state.reload_failures, reloads=self._policy_state.reloads + 1,
            )
            log.info("vcgate: policy %s reloaded (sha256 %s)", self.policy_path, (new.sha256 or "")[:16])
            return True
        finally:
            self._reload_lock.release()

    def _reload_failed(self, why: str) -> bool:
        state = self._policy_state
        self._policy_state = replace(
            state, reload_failures=state.reload_failures + 1, last_error=why[:500], last_error_at=time.time()
        )
        log.error("vcgate: policy %s not reloaded, keeping the one loaded (sha256 %s): %s",
                  self.policy_path, (state.sha256 or "")[:16], why)
        return False

    # --- helpers for adapters --------------------------------------------------------------

    def needs_body(self, method: str, path: str) -> bool:
        """Whether deciding ``method path`` may need the OpenAI ``model`` field of the body."""
        policy = self._policy
        cached = self._policy_needs_body
        if cached[0] is not policy:  # computed once per policy object (the property walks every rule)
            cached = self._policy_needs_body = (policy, policy.needs_body)
        if not cached[1]:
            return False
        key = (method.upper(), path.split("?", 1)[0])
        memo = self._needs_body_memo
        hit = memo.get(key)
        if hit is None:
            route = getattr(policy, "_route", None)
            if route is None:
                hit = True
            else:
                try:
                    found = route(key[0], key[1])  # policy.engine._Route
                    hit = any(r.spec.needs_body for r in (*found.rules, *(found.caseless or ())))
                except Exception:  # noqa: BLE001 -- unknown engine shape: read the body to be safe
                    hit = True
            if len(memo) >= 4096:
                memo.clear()
            if len(key[1]) <= 1024:
                memo[key] = hit
        return hit

    # --- the pipeline: plan, then run (see vcgate.gate.pipeline) ------------------------------

    def plan(self, view: RequestView, *, endpoints: bool = True) -> Plan:
        """What :meth:`run` will do with ``view`` and whether the adapter must read the body.

        ``endpoints=False`` for adapters that only authorise requests a gateway forwards (the
        auth service's dialects): there the token endpoint and the metadata are routes of
        their own, and a request for those paths is checked like any other.
        """
        path = view.path.split("?", 1)[0]
        if endpoints:
            if path == METADATA_PATH and view.method.upper() in ("GET", "HEAD"):
                return Plan(METADATA, False, 0)
            if path == self.token_path:
                return Plan(TOKEN, True, self.max_body)
        read = self.needs_body(view.method, path) or self._policy.limits_need_body
        return Plan(CHECK, read, self.max_body)

    def run(self, plan: Plan, view: RequestView, body: bytes | None = None, *, wait: bool = True) -> Result:
        """Answer or authorise one request; never raises for anything the client sent.

        ``body`` is what the adapter read when ``plan.read_body`` (at most ``plan.max_body``
        bytes, else :data:`~vcgate.gate.pipeline.TOO_LARGE`), or ``None`` if it cannot read
        bodies. With ``wait=False`` a result whose audit record is not yet durable carries a
        ``ticket``: answer only after :meth:`settle_result` (event-loop adapters run that in a
        worker thread).
        """
        root = self.tracer.start("vcgate.check")
        try:
            root.set_attribute("vcgate.step", plan.step)
            result = self._run(plan, view, body, wait)
            _traced(root, result.decision)
            return result
        finally:
            root.end()

    def _run(self, plan: Plan, view: RequestView, body: bytes | None, wait: bool) -> Result:
        if plan.step == METADATA:
            return answer(200, (("Cache-Control", "max-age=300"), _JSON), self.metadata())
        if type(body) is bytes and len(body) > plan.max_body:  # whoever read it, the cap holds
            body = TOO_LARGE
        if plan.step == TOKEN:
            d = self._token_request(view, body)
        else:
            d = self._check_request(view, body if plan.read_body else None)
        ticket = None
        if self.audit is not None:
            step = self.tracer.start("vcgate.audit")
            try:
                d, ticket = self._record(view, d)
                if ticket is not None and (wait or ticket.done()):
                    d, ticket = self.settle(d, ticket), None
            finally:
                step.end()
        return self._result(view, d, ticket, plan.step == TOKEN)

    def settle_result(self, result: Result) -> Result:
        """Wait until ``result``'s audit record is durable; the result, or a 503 refusal."""
        if result.ticket is None or result.decision is None:
            return result
        decision = self.settle(result.decision, result.ticket)
        if decision is result.decision:
            return Result(
                forward=result.forward, status=result.status, headers=result.headers, body=result.body,
                grants=result.grants, remove=result.remove, decision=decision,
            )
        return answer(decision.status, decision.headers, decision.body, decision)

    @staticmethod
    def _result(view: RequestView, d: Decision, ticket: Ticket | None, endpoint: bool) -> Result:
        if d.allow and not endpoint:
            return Result(
                forward=True, status=200, grants=d.grant_headers, remove=tuple(view.gate_headers()),
                decision=d, ticket=ticket,
            )
        r = answer(d.status, d.headers, d.body if d.body is not None else {"error": d.code, "message": d.message}, d)
        return r if ticket is None else Result(forward=False, status=r.status, headers=r.headers, body=r.body,
                                               decision=d, ticket=ticket)

    def _check_request(self, view: RequestView, body: bytes | None) -> Decision:
        """:meth:`_decide_body`, then the call is admitted against its limits."""
        d = self._decide_body(view, body)
        if not d.allow or d.policy_decision is None or not self._policy.has_limits:
            return d
        return self._limit(d, body if type(body) is bytes else None)

    def _limit(self, d: Decision, body: bytes | None) -> Decision:
        """Reserve the call's limits (docs/limits.md): a 429, 403 or 503 refusal, or ``d``
        carrying its charge, the body to send upstream and the RateLimit headers."""
        try:
            metered = meter_call(self.meter, self._policy, d.policy_decision, body, holder=d.holder)
        except QuotaExceededError as exc:
            r = self._refuse(exc.status, exc.code, exc.message, details=exc.details, pd=d.policy_decision)
            return r._replace(headers=(*r.headers, *getattr(exc, "headers", ())))
        except VCGateError as exc:  # limit_unresolved (403), store_unavailable / store_full (503)
            return self._refuse(exc.status, exc.code, exc.message, details=exc.details, pd=d.policy_decision)
        return d if metered is None else d._replace(metered=metered)

    def finish_call(self, decision: Decision | None, usage: Usage | None, *, ok: bool = True) -> None:
        """The upstream answered: commit the call's usage (``ok=False``: it failed, release).

        Adapters call this once per forwarded call whose decision carries ``metered``.
        A store that cannot take it now leaves the reservation charged (logged): a budget is
        never widened by a failure.
        """
        metered = decision.metered if decision is not None else None
        if metered is None:
            return
        try:
            if ok:
                used = self.meter.settle(metered.charge, usage)
            else:
                self.meter.release(metered.charge)
                used = None
        except VCGateError as exc:
            log.error("vcgate: usage not recorded, the reservation stays charged: %s", exc.message)
            return
        if self.audit is not None and used is not None:
            names = {}
            for r, units in zip(metered.charge.plan.limits, used):
                names[r.name] = max(names.get(r.name, 0), units)
            try:
                self.audit.append({"outcome": "usage", "subject": decision.subject, "rule": decision.rule,
                                   "usage": names})
            except (AuditUnavailableError, ValueError) as exc:
                log.error("vcgate: usage record not audited: %s", exc)

    def reservation(self, decision: Decision | None) -> str | None:
        """The signed reservation of a metered call, for a gateway that reports usage later
        (``X-Vcgate-Reservation``; docs/limits.md, "The usage report")."""
        metered = decision.metered if decision is not None else None
        if metered is None:
            return None
        claims = charge_claims(metered.charge, issuer=self.audience, now=self._clock())
        return self.token_issuer.sign(claims, typ=RESERVATION_TYP)

    def report_usage(self, reservation: str, usage: Usage | None, *, ok: bool = True) -> None:
        """Settle (or with ``ok=False`` release) a reservation a gateway reports; each once.

        Raises :class:`~vcgate.errors.MalformedError` for a reservation that is not this
        gateway's, has expired or was reported before; ``StoreUnavailableError`` (503).
        """
        charge = charge_from_token(reservation, key=self.token_issuer.public_key, issuer=self.audience,
                                   now=self._clock(), replay=self.dpop_verifier.replay_store)
        if ok:
            self.meter.settle(charge, usage)
        else:
            self.meter.release(charge)

    def abort_call(self, decision: Decision | None) -> None:
        """The call failed or was cancelled before an answer: release its tokens and cost."""
        self.finish_call(decision, None, ok=False)

    def _decide_body(self, view: RequestView, body: bytes | None) -> Decision:
        """:meth:`_decide` once the body (if read) gave the model, under the body rules."""
        if body is None:
            return self._decide(view)
        if body is TOO_LARGE:
            exc = too_large(limit=self.max_body)
            return self._refuse(exc.status, exc.code, exc.message)
        try:
            step = self.tracer.start("vcgate.parse")
            try:
                model = model_of(body)
            finally:
                step.end()
        except VCGateError as unreadable:
            # Only refuse when the model could matter: decide as if the body was not seen, and
            # if the policy needs the model for that, the body's flaw is the answer.
            d = self._decide(view)
            if d.code == "body_required":
                return self._refuse(unreadable.status, unreadable.code, unreadable.message, details=unreadable.details)
            return d
        return self._decide(view._with_model(model))

    def _token_request(self, view: RequestView, body: bytes | None) -> Decision:
        if view.method.upper() != "POST":
            return self._token(view, {})  # refused 405 there, before reading anything
        if body is TOO_LARGE:
            exc = too_large("the token request", limit=self.max_body)
            return self._refuse(exc.status, exc.code, exc.message)
        try:
            step = self.tracer.start("vcgate.parse")
            try:
                form = token_form(body or b"", view.get("content-type"))
            finally:
                step.end()
        except VCGateError as exc:
            return self._refuse(exc.status, exc.code, exc.message)
        return self._token(view, form)

    def metadata(self) -> dict[str, Any]:
        """RFC 9728 protected-resource metadata (``/.well-known/oauth-protected-resource``)."""
        return {
            "resource": self.audience,
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": list(self.algorithms),
            "dpop_bound_access_tokens_required": True,
            "vcgate_token_endpoint": self.token_endpoint_url,
            "vcgate_presentation_formats": ["vp+jwt", "jwt_vp", "dc+sd-jwt"],
        }

    # --- challenges and refusals -----------------------------------------------------------

    def _challenge(
        self, error: VCGateError | None, *, dpop_error: bool, rule: str | None = None
    ) -> tuple[Headers, dict[str, Any]] | None:
        """The two ``WWW-Authenticate`` values and the body extras, or None if the store is down.

        With the matching ``rule``, the ``VP`` challenge carries what it needs as a DCQL query
        (``dcql``: base64url JSON; ``dcql_query`` in the body), so an SD-JWT VC holder discloses
        only that (docs/sd-jwt.md).
        """
        try:
            nonce = self.nonce_store.issue(self.nonce_ttl)
        except VCGateError:
            return None
        algs = " ".join(self.algorithms)
        vp = f'VP realm="{_quote(self.audience)}", nonce="{nonce}", token_endpoint="{_quote(self.token_endpoint_url)}"'
        no_token = isinstance(error, TokenInvalidError) and error.details.get("reason") == "missing"
        if error is not None and not no_token:
            vp += f', error="{_quote(error.code)}", error_description="{_quote(error.message)}"'
        vp += f', algs="{algs}"'
        extras: dict[str, Any] = {"nonce": nonce, "token_endpoint": self.token_endpoint_url}
        spec = next((r for r in self._policy.rules if r.name == rule), None) if rule else None
        doc = self._policy.document
        query = dcql_for_rule(spec, limits=doc.limits, delegation=doc.delegation) if spec is not None else None
        if query is not None:
            vp += f', dcql="{challenge_param(query)}"'
            extras["dcql_query"] = query
        dpop = "DPoP "
        oauth = getattr(error, "oauth_error", None)
        if dpop_error and oauth and not no_token and error is not None:
            dpop += f'error="{oauth}", error_description="{_quote(error.message)}", '
        dpop += f'algs="{algs}"'
        return (("WWW-Authenticate", vp), ("WWW-Authenticate", dpop)), extras

    def _refuse(
        self,
        status: int,
        code: str,
        message: str,
        *,
        error: VCGateError | None = None,
        details: Mapping[str, Any] | None = None,
        dpop_error: bool = False,
        pd: PolicyDecision | None = None,
    ) -> Decision:
        body: dict[str, Any] = {"error": code, "message": message}
        if details:
            body["details"] = dict(details)
        headers: list[tuple[str, str]] = [_JSON, _NO_STORE]
        if status == 401:
            ch = self._challenge(error, dpop_error=dpop_error, rule=pd.rule if pd is not None else None)
            if ch is None:
                exc = StoreUnavailableError("the nonce store cannot answer")
                return self._refuse(exc.status, exc.code, exc.message)
            headers.extend(ch[0])
            body.update(ch[1])
        return Decision(
            allow=False,
            status=status,
            code=code,
            message=message,
            reasons=pd.reasons if pd is not None else (),
            subject=pd.subject if pd is not None else None,
            issuer=pd.issuer if pd is not None else None,
            rule=pd.rule if pd is not None else None,
            headers=tuple(headers),
            body=body,
            policy_decision=pd,
        )

    def _from_error(self, exc: VCGateError, *, dpop_error: bool = False) -> Decision:
        # Any refused credential (even a malformed one) is a 401 with a challenge, so the
        # client can present again; only "cannot decide now" (503) differs.
        status = 503 if exc.status == 503 else 401
        return self._refuse(status, exc.code, exc.message, error=exc, details=exc.details, dpop_error=dpop_error)

    def _from_policy(self, pd: PolicyDecision, *, holder: str | None, mode: str | None) -> Decision:
        if pd.allow:
            return Decision(
                allow=True,
                status=200,
                code=None,
                message=pd.message,
                reasons=pd.reasons,
                grant_headers=tuple(pd.grants.headers.items()),
                scopes=tuple(pd.grants.scopes),
                subject=pd.subject,
                issuer=pd.issuer,
                holder=holder,
                rule=pd.rule,
                mode=mode,
                policy_decision=pd,
            )
        details: dict[str, Any] = {}
        if pd.rule:
            details["rule"] = pd.rule
        if pd.reasons:
            details["reasons"] = [{"code": r.code, "message": r.message} for r in pd.reasons]
        code = pd.code or "denied"
        err: VCGateError | None = None
        if code != "credential_required":  # a first challenge carries no error (RFC 6750 3.1)
            err = VCGateError(pd.message, code=code)
        return self._refuse(pd.status, code, pd.message, error=err, details=details, pd=pd)

    # --- status ------------------------------------------------------------------------------

    def _status_results(self, policy: Policy, credentials: Sequence[VerifiedCredential]) -> dict[str, StatusOutcome]:
        """Status outcomes of the credentials from trusted issuers and of delegation links
        (no one else's status list or registry is consulted)."""
        results: dict[str, StatusOutcome] = {}
        if self.status is None:
            return results  # credentials with status entries count as unavailable
        step = self.tracer.start("vcgate.status")
        try:
            for cred in credentials:
                # Delegation links are issued by delegates, not trusted issuers: checked too (their
                # chain must lead to a trusted root, which the policy decides).
                if not cred.status or not (policy.trusts(cred.issuer) or is_link(cred)):
                    continue
                try:
                    self.status.check(cred)
                    results[cred.token] = StatusOutcome.OK
                except Exception as exc:  # noqa: BLE001 -- every failure maps to an outcome, fail closed
                    results[cred.token] = StatusOutcome.from_error(exc)
        finally:
            step.end()
        return results

    # --- the check -----------------------------------------------------------------------------

    def check(self, view: RequestView) -> Decision:
        """Decide one request. Never raises for a refusal; see ``docs/protocol.md``.

        With an audit log the decision is recorded first (and, with ``"sync"`` durability, is
        on disk when this returns); a log that cannot take it yields a 503 refusal.
        """
        root = self.tracer.start("vcgate.check")
        try:
            root.set_attribute("vcgate.step", CHECK)
            decision = self._decide(view)
            if self.audit is not None:
                decision = self._audited(view, decision)
            _traced(root, decision)
            return decision
        finally:
            root.end()

    def _audited(self, view: RequestView, d: Decision) -> Decision:
        """``d`` once its record is in the audit log (durable with ``"sync"``), or a 503 refusal."""
        step = self.tracer.start("vcgate.audit")
        try:
            d, ticket = self._record(view, d)
            return d if ticket is None else self.settle(d, ticket)
        finally:
            step.end()

    def settle(self, decision: Decision, ticket: Ticket) -> Decision:
        """Wait until ``ticket``'s record is durable; the decision, or a 503 if it is not."""
        try:
            ticket.wait(self.audit_timeout)
        except AuditUnavailableError as exc:
            return self._audit_refusal(exc)
        return decision

    @property
    def audit_waits(self) -> bool:
        """True when answering must wait for the audit log's disk (``"sync"`` durability)."""
        return self.audit is not None and self.audit_durability == "sync"

    def _audit_refusal(self, exc: AuditUnavailableError) -> Decision:
        log.error("vcgate: audit log unavailable, refusing the request: %s", exc.message)
        return self._refuse(exc.status, exc.code, exc.message, details=exc.details)

    def _record(self, view: RequestView, d: Decision) -> tuple[Decision, Ticket | None]:
        """Append ``d`` to the audit log; the ticket to wait on (sync) or None."""
        rec: dict[str, Any] = {
            "outcome": "allow" if d.allow else "deny",
            "status": d.status,
            "method": view.method,
            "path": view.path,
        }
        for name in ("subject", "issuer", "rule", "code", "mode"):
            value = getattr(d, name)
            if value is not None:
                rec[name] = value
        if d.metered is not None:
            rec["reserved"] = d.metered.reserved
        chain = d.policy_decision.chain if d.policy_decision is not None else None
        if chain is not None:  # who acts for whom, and every hop's credential (docs/delegation.md)
            rec["principal"] = chain.principal
            rec["actors"] = list(chain.actors)
            rec["hops"] = [h.id or digest_sri(h.token) for h in chain.hops]
        try:
            ticket = self.audit.append(rec)  # type: ignore[union-attr]
        except AuditUnavailableError as exc:
            return self._audit_refusal(exc), None
        except ValueError as exc:  # a record the log cannot carry: never answer unrecorded
            log.error("vcgate: audit record rejected: %s", exc)
            return self._audit_refusal(AuditUnavailableError("the decision could not be recorded", reason="bad_record")), None
        if self.audit_durability == "sync":
            return d, ticket
        return d, None

    def _decide(self, view: RequestView) -> Decision:
        self.reload_if_changed()
        policy = self._policy
        now = self._clock()
        facts = RequestFacts(view.method, view.path, host=view.host, model=view.model, body_available=view.body_available)

        # Without a credential first: public routes, explicit and default denies cost no crypto.
        step = self.tracer.start("vcgate.policy")
        try:
            anonymous = self._anonymous(policy, facts, now)
        finally:
            step.end()
        if anonymous.allow:
            return self._from_policy(anonymous, holder=None, mode="public")
        if anonymous.code != "credential_required" and not _model_pending(anonymous):
            return self._from_policy(anonymous, holder=None, mode=None)

        # One pass over the (already lower-cased) headers for both credentials headers.
        auths: list[str] = []
        dpops: list[str] = []
        for name, value in view.headers:
            if name == "authorization":
                auths.append(value)
            elif name == "dpop":
                dpops.append(value)
        if not auths:
            if _model_pending(anonymous):
                # Denied without a credential, but one could change the answer: challenge.
                anonymous = PolicyDecision(False, 401, "credential_required", "this request needs a verifiable credential",
                                           anonymous.rule, anonymous.reasons)
            return self._from_policy(anonymous, holder=None, mode=None)
        if len(auths) > 1:
            return self._from_error(
                TokenInvalidError("exactly one Authorization header is allowed", reason="multiple_headers")
            )
        scheme, _, credential = auths[0].strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "vp":
            return self._check_direct(view, facts, credential.strip(), policy, now)
        if scheme in ("dpop", "bearer"):
            return self._check_session(view, facts, auths[0], dpops, policy, now)
        return self._from_policy(anonymous, holder=None, mode=None)

    def _anonymous(self, policy: Policy, facts: RequestFacts, now: float) -> PolicyDecision:
        """``policy.decide(facts, None, now=now)``, memoised per policy.

        Without credentials the decision is a pure function of the policy and the request's
        method, path, host, model and ``body_available`` (``now`` only matters for credentials),
        and a :class:`PolicyDecision` is immutable; decisions carrying grant headers (a mutable
        mapping inside) are not kept. Long inputs bypass the memo, which is bounded.
        """
        memo_policy, memo = self._anon_memo
        if memo_policy is not policy:
            memo = {}
            self._anon_memo = (policy, memo)
        method, path, host, model = facts.method, facts.path, facts.host, facts.model
        if (
            type(method) is not str or len(method) > 32 or type(path) is not str or len(path) > 1024
            or (host is not None and (type(host) is not str or len(host) > 256))
            or (model is not None and (type(model) is not str or len(model) > 256))
            or type(facts.body_available) is not bool
        ):
            return policy.decide(facts, None, now=now)
        key = (method, path, host, model, facts.body_available)
        pd = memo.get(key)
        if pd is None:
            pd = policy.decide(facts, None, now=now)
            if not pd.grants.headers:
                if len(memo) >= 4096:
                    memo.clear()
                memo[key] = pd
        return pd

    def _verify_presentation(self, vp: str, policy: Policy, expected_jkt: str | None = None) -> VerifiedPresentation:
        """Signatures, audience, the holder key (token endpoint) and the single-use nonce.

        Raises a :class:`VCGateError`.
        """
        if not vp or len(vp) > _MAX_VP_BYTES:
            raise MalformedError("the presentation is missing or too large")
        # Holder binding is the policy's to decide (per rule), so the verifier does not enforce it.
        pres = self.verifier.verify_presentation(vp, audience=policy.audience, nonce=None, holder_binding=False)
        # Backstop whatever verifier was injected: authorise only on pinned contexts.
        require_pinned_contexts(pres.credentials)
        if expected_jkt is not None and expected_jkt != pres.holder_key.thumbprint():
            # Checked before the nonce is consumed: someone replaying an intercepted
            # presentation with their own DPoP key cannot burn the holder's nonce.
            raise DPoPKeyMismatchError(
                "the DPoP key is not the key that signed the presentation", reason="holder_key_mismatch"
            )
        # The nonce is consumed only after the signature verified: a forged presentation
        # cannot burn a client's nonce.
        if pres.nonce is None or not self.nonce_store.consume(pres.nonce):
            raise NonceMismatchError("the presentation's nonce is unknown, expired or already used")
        return pres

    def _check_direct(self, view: RequestView, facts: RequestFacts, vp: str, policy: Policy, now: float) -> Decision:
        try:
            step = self.tracer.start("vcgate.verify")
            try:
                pres = self._verify_presentation(vp, policy)
            finally:
                step.end()
        except VCGateError as exc:
            return self._from_error(exc)
        return self._decide_with(policy, facts, pres.credentials, holder=pres.holder, now=now, mode="direct")

    def _decide_with(self, policy: Policy, facts: RequestFacts, credentials: Sequence[VerifiedCredential], *,
                     holder: str, now: float, mode: str) -> Decision:
        """The status of the verified credentials, then the policy's decision with them."""
        status = self._status_results(policy, credentials)
        step = self.tracer.start("vcgate.policy")
        try:
            pd = policy.decide(facts, credentials, now=now, holder=holder, status_results=status)
        finally:
            step.end()
        return self._from_policy(pd, holder=holder, mode=mode)

    def _check_session(
        self, view: RequestView, facts: RequestFacts, authorization: str, dpops: list[str], policy: Policy, now: float
    ) -> Decision:
        step = self.tracer.start("vcgate.verify")
        try:
            try:
                session = self.sessions.verify(authorization=authorization, dpop=dpops or None, htm=view.method, htu=view.url)
            except VCGateError as exc:
                return self._from_error(exc, dpop_error=True)
            except ValueError:  # our own URL could not be rebuilt (bad Host)
                return self._refuse(400, "request_invalid", "the request URI is not valid")
            try:
                entry = self.session_records.find(session.token)
            except VCGateError as exc:  # the shared store cannot answer: 503, never a guess
                return self._from_error(exc)
        finally:
            step.end()
        if entry is None:
            return self._from_error(
                TokenInvalidError("this gateway does not know the token's session; present again", reason="session_unknown"),
                dpop_error=True,
            )
        return self._decide_with(policy, facts, entry.credentials, holder=entry.holder, now=now, mode="session")

    # --- the token endpoint ---------------------------------------------------------------------

    def token_endpoint(self, view: RequestView, form: Mapping[str, Any]) -> tuple[int, list[tuple[str, str]], dict[str, Any]]:
        """``POST /.well-known/vcgate/token`` (docs/protocol.md 3.1) -> (status, headers, JSON body).

        ``form`` is the parsed form or JSON body. The DPoP proof's key must be the key that
        signed the presentation; at least one credential must come from a trusted issuer and
        none may be revoked or suspended. Audited like :meth:`check` (a token is returned only
        once its record is durable with ``"sync"`` durability).
        """
        root = self.tracer.start("vcgate.check")
        try:
            root.set_attribute("vcgate.step", TOKEN)
            d = self._token(view, form)
            if self.audit is not None:
                d = self._audited(view, d)
            _traced(root, d)
        finally:
            root.end()
        return d.status, list(d.headers), dict(d.body or {})

    def _token(self, view: RequestView, form: Mapping[str, Any]) -> Decision:
        self.reload_if_changed()
        policy = self._policy
        if view.method.upper() != "POST":
            d = self._refuse(405, "method_not_allowed", "the token endpoint takes POST")
            return d._replace(headers=(*d.headers, ("Allow", "POST")))
        vp = form.get("vp_token") if isinstance(form, Mapping) else None
        if isinstance(vp, list) and len(vp) == 1:
            vp = vp[0]
        if not isinstance(vp, str) or not vp:
            return self._refuse(400, "malformed", "the token request needs one 'vp_token'")
        step = self.tracer.start("vcgate.verify")
        try:
            try:
                # The proof's jti is recorded only once the presentation holds: proofs sent with no
                # valid presentation cannot fill the replay store.
                proof = self.dpop_verifier.verify(view.get_all("dpop") or None, htm="POST", htu=view.url, record=False)
            except VCGateError as exc:
                return self._from_error(exc, dpop_error=True)
            except ValueError:
                return self._refuse(400, "request_invalid", "the request URI is not valid")
            try:
                pres = self._verify_presentation(vp, policy, expected_jkt=proof.jkt)
            except VCGateError as exc:
                return self._from_error(exc)
            try:
                self.dpop_verifier.record(proof)
            except VCGateError as exc:
                return self._from_error(exc, dpop_error=True)
        finally:
            step.end()

        # The policy engine decides admission: the same rules as every call (trusted issuer
        # and types, validity, holder binding, age, claims, status), without the request.
        now = self._clock()
        status = self._status_results(policy, pres.credentials)
        step = self.tracer.start("vcgate.policy")
        try:
            admission = policy.admit(pres.credentials, now=now, holder=pres.holder, status_results=status)
        finally:
            step.end()
        pd = admission.decision
        if not pd.allow:
            d = self._from_policy(pd, holder=pres.holder, mode=None)._replace(subject=pres.holder)
            if d.status != 401 and pd.code in ASK_AGAIN_CODES:  # a 401 carries its challenge already
                # What the closest rule needs (the 401 challenge's DCQL query) and a nonce to present again.
                ch = self._challenge(None, dpop_error=False, rule=pd.rule)
                if ch is not None and "dcql_query" in ch[1]:
                    d = d._replace(body={**(d.body or {}), **ch[1]})
            return d
        creds = admission.credentials
        scopes = list(pd.grants.scopes)
        record = self.session_records.record(pres.holder, creds)
        extra: dict[str, Any] = dict(self.session_records.claims(record))
        chain = pd.chain
        if chain is not None:
            # RFC 8693: the token is about the principal; `act` names the caller outermost and
            # each earlier delegate nested inside; the caller is the client (and holds the key).
            extra["act"] = chain.act
        token = self.token_issuer.issue(
            subject=chain.principal if chain is not None and chain.principal else pres.holder,
            client_id=pres.holder,
            holder_jkt=proof.jkt,
            scopes=scopes,
            audience=self.audience,
            credential_ids=[c.id for c in creds if c.id],
            extra=extra,
        )
        at = self.sessions.tokens.verify(token)  # also warms the token cache
        try:
            self.session_records.keep(at, pres.holder, creds, record)
        except VCGateError as exc:
            return self._from_error(exc)
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "DPoP",
            "expires_in": int(at.expires_at - at.issued_at),
        }
        if scopes:
            body["scope"] = " ".join(scopes)
        return Decision(
            allow=True,
            status=200,
            code=None,
            message="access token issued",
            scopes=tuple(scopes),
            subject=pres.holder,
            issuer=creds[0].issuer,
            holder=pres.holder,
            mode="token",
            headers=(_JSON, _NO_STORE),
            body=body,
            policy_decision=pd,
        )
