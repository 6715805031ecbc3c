"""Tracing set-up and W3C trace-context helpers shared by every service.

No global tracer provider is installed: :func:`setup_tracing` returns a provider
(or ``None`` when tracing is off) and callers pass it to :class:`Spans`, so a
process (or a test session) may build many apps.

With tracing off the no-op tracer still carries an incoming parent span context,
so an event logged under a client's ``traceparent`` header keeps that trace id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from prometheus_client import CollectorRegistry, start_http_server

from learnloop import __version__
from learnloop.errors import ConfigurationError
from learnloop.settings import Settings

TRACER_NAME = "learnloop"
_PROPAGATOR = TraceContextTextMapPropagator()


def setup_tracing(settings: Settings, service_name: str = "learnloop") -> TracerProvider | None:
    """A tracer provider exporting as ``settings.tracing`` says, or ``None`` for ``none``.

    ``otlp`` needs the optional extra ``learnloop[otlp]``; without it this raises
    :class:`~learnloop.errors.ConfigurationError` at start-up rather than dropping spans.
    """
    if settings.tracing == "none":
        return None
    exporter: SpanExporter
    if settings.tracing == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigurationError(
                "LEARNLOOP_TRACING=otlp needs the OTLP exporter: "
                "pip install 'learnloop[otlp]' (or set LEARNLOOP_TRACING=none/console)"
            ) from exc
        exporter = (
            OTLPSpanExporter(endpoint=settings.otlp_endpoint)
            if settings.otlp_endpoint
            else OTLPSpanExporter()
        )
    resource = Resource.create({"service.name": service_name, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class Spans:
    """Start spans under a parent trace, or with tracing off only make the parent current.

    With tracing off no span objects are made at all (the no-op tracer still costs
    several microseconds per span on the decision path), yet
    :func:`current_traceparent` inside still names the caller's trace.
    """

    def __init__(self, provider: TracerProvider | None) -> None:
        self.tracer: trace.Tracer | None = (
            None if provider is None else provider.get_tracer(TRACER_NAME, __version__)
        )

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        parent: Context | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> Iterator[None]:
        """A span named ``name`` as the current span, child of ``parent`` if given."""
        if self.tracer is not None:
            with self.tracer.start_as_current_span(name, context=parent, attributes=attributes):
                yield
        elif parent is not None:
            token = otel_context.attach(parent)
            try:
                yield
            finally:
                otel_context.detach(token)
        else:
            yield


def extract_parent(headers: Mapping[str, str]) -> Context:
    """The trace context of an incoming request's W3C ``traceparent`` header (if any)."""
    return _PROPAGATOR.extract(carrier=headers)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or ``None`` outside any valid trace."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def metrics_endpoint(settings: Settings, registry: CollectorRegistry) -> Iterator[int | None]:
    """Serve ``registry`` at ``http://{host}:{metrics_port}/metrics`` while the block runs
    (the join and learner workers have no HTTP API of their own); without
    ``LEARNLOOP_METRICS_PORT`` nothing is served. Yields the port."""
    if settings.metrics_port is None:
        yield None
        return
    try:
        server, thread = start_http_server(
            settings.metrics_port, addr=settings.host, registry=registry
        )
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {settings.host}:{settings.metrics_port} ({exc}): "
            "set LEARNLOOP_METRICS_PORT to a free port"
        ) from exc
    try:
        yield settings.metrics_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
