"""OpenTelemetry tracing of the gate's check: off by default, free when off.

The gate (:class:`~vcgate.gate.Gate`) opens a few spans around each decision::

    vcgate.check          one per request the gate answers (attributes below)
    ├─ vcgate.parse       reading the request body: the OpenAI ``model``, the token form
    ├─ vcgate.verify      signatures, nonce, DPoP proof and access token, session lookup
    ├─ vcgate.status      revocation / suspension of the credentials (mirror, status lists)
    ├─ vcgate.policy      the policy decision (also the credential-free one every request gets)
    └─ vcgate.audit       appending the decision to the audit log (and waiting for the disk)

``vcgate.check`` carries ``vcgate.step`` (check, token, metadata), ``vcgate.decision`` (allow,
deny), ``vcgate.status_code`` (the HTTP status), ``vcgate.code`` (the refusal's error code),
``vcgate.mode`` and ``vcgate.rule`` -- never a token, a presentation, a DID or a claim value.

One switch, read the same way by the library, the middleware, the plugins and ``vcgate
serve`` (each builds its gate with :func:`tracer_from_env`): ``VCGATE_OTEL=1``. Spans then go
to the OpenTelemetry API's global tracer provider, which the application configures as usual
(``opentelemetry-instrument``, or its own ``TracerProvider``). ``vcgate serve`` owns its
process, so it configures one itself (:func:`configure_sdk`) from the standard
``OTEL_TRACES_EXPORTER`` (``otlp``: OTLP over HTTP/protobuf, ``console``, ``none``),
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_SERVICE_NAME`` variables. Needs the ``otel`` extra.

Without ``VCGATE_OTEL`` the gate holds :data:`NO_TRACER`: a span is a method call that returns
one shared, stateless object, and nothing imports ``opentelemetry``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["ENV_VAR", "NO_TRACER", "NoTracer", "OtelTracer", "Span", "Tracer", "configure_sdk", "tracer_from_env"]

#: The one switch: ``1`` / ``true`` / ``yes`` / ``on`` turns tracing on.
ENV_VAR = "VCGATE_OTEL"
_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")
_EXTRA = "pip install 'vcgate[otel]'"


class Span(Protocol):
    def set_attribute(self, key: str, value: Any) -> Any: ...

    def is_recording(self) -> bool: ...

    def end(self) -> None: ...


class Tracer(Protocol):
    """What the gate needs: ``span = tracer.start(name)``, then ``try: ... finally: span.end()``.

    Not a context manager on purpose: a ``with`` costs about 3 us per block on the 2-core
    machines this is measured on (``try``/``finally``: 0.09 us), and the gate runs up to seven
    per call whether tracing is on or not.
    """

    enabled: bool

    def start(self, name: str) -> Span: ...


class _NoSpan:
    """A span that records nothing."""

    __slots__ = ()

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def is_recording(self) -> bool:
        return False

    def end(self) -> None:
        return None


_NO_SPAN = _NoSpan()


class NoTracer:
    """The default tracer: a span costs two calls on a shared, stateless object."""

    __slots__ = ()
    enabled = False

    def start(self, name: str) -> _NoSpan:
        return _NO_SPAN


#: The tracer of a gate without tracing (stateless: safe to share).
NO_TRACER = NoTracer()


class OtelTracer:
    """Spans through the OpenTelemetry API (``opentelemetry-api``).

    ``tracer`` is an OpenTelemetry ``Tracer``; by default the global provider's ``"vcgate"``
    tracer, resolved at each span so a provider configured after the gate was built is used.
    Each span is the current one until it ends, so the spans it encloses are its children.
    """

    enabled = True

    def __init__(self, tracer: Any = None) -> None:
        try:
            from opentelemetry import context, trace
        except ImportError as exc:
            raise ImportError(f"{ENV_VAR}=1 needs OpenTelemetry: {_EXTRA}") from exc
        if tracer is None:
            from . import __version__

            tracer = trace.get_tracer("vcgate", __version__)
        self._tracer = tracer
        self._context = context
        self._in_context = trace.set_span_in_context

    def start(self, name: str) -> _OtelSpan:
        span = self._tracer.start_span(name)
        return _OtelSpan(span, self._context, self._context.attach(self._in_context(span)))


class _OtelSpan:
    """An OpenTelemetry span made current until :meth:`end`."""

    __slots__ = ("_context", "_span", "_token")

    def __init__(self, span: Any, context: Any, token: Any) -> None:
        self._span, self._context, self._token = span, context, token

    def set_attribute(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def is_recording(self) -> bool:
        return bool(self._span.is_recording())

    def end(self) -> None:
        self._context.detach(self._token)
        self._span.end()


def _switch(environ: Mapping[str, str]) -> bool:
    value = environ.get(ENV_VAR, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(f"{ENV_VAR} must be 1 or 0 (true/false, yes/no, on/off), not {value!r}")


def tracer_from_env(environ: Mapping[str, str] | None = None) -> NoTracer | OtelTracer:
    """:data:`NO_TRACER`, or with ``VCGATE_OTEL=1`` an :class:`OtelTracer` (needs the otel extra)."""
    return OtelTracer() if _switch(os.environ if environ is None else environ) else NO_TRACER


def configure_sdk(environ: Mapping[str, str] | None = None, *, check_only: bool = False) -> Any:
    """For a process vcgate owns (``vcgate serve``, each worker after the fork): with
    ``VCGATE_OTEL=1`` and no tracer provider configured yet, install the SDK's with the
    exporters ``OTEL_TRACES_EXPORTER`` names (default ``otlp``). Returns the provider, or None
    when tracing is off or the process already had one (``opentelemetry-instrument``).

    Raises ``ValueError`` for an exporter or OTLP protocol it does not know (naming the
    variable) and ``ImportError`` when the otel extra is missing; ``check_only`` does only
    that (``vcgate serve`` checks before it forks its workers).
    """
    env = os.environ if environ is None else environ
    if not _switch(env):
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as exc:
        raise ImportError(f"{ENV_VAR}=1 needs the OpenTelemetry SDK: {_EXTRA}") from exc
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None  # the application (or opentelemetry-instrument) configured tracing already
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    exporters: list[Any] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
            if protocol != "http/protobuf":
                raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: vcgate serve exports OTLP over http/protobuf, not {protocol!r}")
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError as exc:
                if "InstrumentationScope" in str(exc):  # installed, but its protos were overwritten
                    raise ImportError(
                        "OTEL_TRACES_EXPORTER=otlp: opentelemetry-proto was overwritten by the older copy in "
                        "xds-protos (the server extra); reinstall it last: pip install --force-reinstall "
                        "--no-deps opentelemetry-proto==<the installed version>"
                    ) from exc
                raise ImportError(f"OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: {_EXTRA}") from exc
            exporters.append(OTLPSpanExporter())  # reads OTEL_EXPORTER_OTLP_* itself
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)")
    if check_only:
        return None
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    provider = TracerProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "vcgate"}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider
