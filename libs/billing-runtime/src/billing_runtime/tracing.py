"""W3C trace context across HTTP and Kafka hops, and the tracer provider bootstrap.

Tracing is off unless there is somewhere to send spans: `OTEL_EXPORTER_OTLP_ENDPOINT` (the
collector's base URL, e.g. `http://otel-collector:4318`) or a span processor a test added with
`add_span_processor`. Off means no library is instrumented and no span is recorded; on means
FastAPI, httpx, asyncpg and aiokafka are instrumented and one usage POST is one trace: the HTTP
request, its database writes, the outbox row's Kafka produce, and every consumer that applies
the event (the `traceparent` rides in the event's headers and in the outbox row).

Several services may share one process (`billing up` in-process tests): each gets its own tracer
provider (its own `service.name`) for its HTTP spans; the library instrumentations and the
runtime's own spans use the process-wide provider, which is the first service's.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Sequence
from typing import Any

import wrapt
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from billing_events.envelope import CloudEvent

# Every service provider in this process hands its spans to these processors.
_PROCESSORS = SynchronousMultiSpanProcessor()
_added: list[SpanProcessor] = []
_otlp_endpoints: set[str] = set()
_providers: dict[str, TracerProvider] = {}
_instrumented = False
_lock = threading.Lock()

# Spans of HTTP routes nobody needs traced (probes and scrapes every few seconds).
EXCLUDED_URLS = "/healthz,/readyz,/metrics"


def _is_database_span(attributes: Attributes) -> bool:
    """A span of a database statement (the asyncpg instrumentation's, old or new conventions)."""
    return attributes is not None and ("db.system" in attributes or "db.system.name" in attributes)


# Statements that only delimit a transaction: a span each was a third of all spans, and says nothing
# the spans of the statements between them do not.
_TRANSACTION_STATEMENTS = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "START"})
_PARENT_BASED = ParentBased(root=ALWAYS_ON)


class _Sampler(Sampler):
    """Starts a new trace only while spans go somewhere, and never for a bare database query: the
    outbox relay and the consumers poll Postgres many times a second, and those queries are worth
    a span only inside a request or an event's handling. Within a trace, the parent's decision,
    minus the spans of BEGIN, COMMIT, ROLLBACK and savepoints."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        database = _is_database_span(attributes)
        root = not trace.get_current_span(parent_context).get_span_context().is_valid
        if root and (not _added or database):
            return SamplingResult(Decision.DROP)
        if database and name.rstrip(";").upper() in _TRANSACTION_STATEMENTS:
            return SamplingResult(Decision.DROP)
        return _PARENT_BASED.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "BillingSampler"


_SAMPLER = _Sampler()


def add_span_processor(processor: SpanProcessor) -> None:
    """Send every span of every service in this process to `processor` too (tests use an
    in-memory exporter). Turns tracing on for apps built afterwards."""
    with _lock:
        _PROCESSORS.add_span_processor(processor)
        _added.append(processor)


def tracing_enabled() -> bool:
    return bool(_added)


def _traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def setup_tracing(service: str, otlp_endpoint: str | None) -> TracerProvider:
    """The tracer provider of `service`. Spans are exported (OTLP over HTTP) only when an
    endpoint is configured; the first provider also becomes the process-wide one."""
    if otlp_endpoint and otlp_endpoint not in _otlp_endpoints:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        _otlp_endpoints.add(otlp_endpoint)
        add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=_traces_url(otlp_endpoint))))
    with _lock:
        provider = _providers.get(service)
        if provider is None:
            first = not _providers
            provider = TracerProvider(
                resource=Resource.create({"service.name": service, "service.namespace": "billing"}),
                sampler=_SAMPLER,
                active_span_processor=_PROCESSORS,
                shutdown_on_exit=False,
            )
            _providers[service] = provider
            if first:
                trace.set_tracer_provider(provider)
                atexit.register(_PROCESSORS.shutdown)
    if tracing_enabled():
        instrument_libraries()
    return provider


def instrument_libraries() -> None:
    """Instrument httpx, asyncpg and aiokafka once per process, with the process-wide provider."""
    global _instrumented
    with _lock:
        if _instrumented:
            return
        _instrumented = True
    from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument()
    AsyncPGInstrumentor().instrument()
    AIOKafkaInstrumentor().instrument()
    # Outermost, so it runs before the instrumentation's own wrapper (see _continue_event_trace).
    wrapt.wrap_function_wrapper("aiokafka", "AIOKafkaProducer.send", _continue_event_trace)


async def _continue_event_trace(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The outbox relay publishes rows long after (and far from) the request that wrote them.
    A row's headers carry that request's `traceparent`: make the produce span its child, and
    let the instrumentation write the produce span's own `traceparent` in its place, so the
    consumers' spans join the same trace instead of the relay's."""
    headers = kwargs.get("headers")
    if headers is None and len(args) > 5:
        headers = args[5]
    carried = _header(headers, "traceparent")
    if carried is None:
        return await wrapped(*args, **kwargs)
    if len(args) > 5:
        args, kwargs = args[:5], {**kwargs, "headers": args[5]}
    kwargs["headers"] = [(name, value) for name, value in kwargs["headers"] if name not in ("traceparent", "tracestate")]
    token = context.attach(context_from_traceparent(carried))
    try:
        return await wrapped(*args, **kwargs)
    finally:
        context.detach(token)


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name and value:
            return value.decode()
    return None


def instrument_app(app: Any, provider: TracerProvider) -> None:
    """Server spans for every request of `app`, under its service's provider (when tracing is on)."""
    if not tracing_enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS)


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def traced(event: CloudEvent[Any]) -> CloudEvent[Any]:
    """The event carrying the current trace, unless it already carries one (or no span is
    current): its consumers' spans then join the trace of the work that raised it, even when the
    event is written to the outbox later, outside that work's span."""
    if event.traceparent is not None:
        return event
    traceparent = current_traceparent()
    return event if traceparent is None else event.model_copy(update={"traceparent": traceparent})


def context_from_traceparent(traceparent: str | None) -> Context:
    if not traceparent:
        return context.get_current()
    return propagate.extract({"traceparent": traceparent})
