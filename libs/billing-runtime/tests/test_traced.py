"""`traced`: an event takes the current span's trace when it carries none, and keeps its own."""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from billing_events import new_event
from billing_runtime.tracing import traced

from .conftest import customer

OWN = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_an_event_takes_the_current_trace_unless_it_carries_its_own() -> None:
    bare = new_event(customer("t"), source="toy", tenant="t")
    own = new_event(customer("t"), source="toy", tenant="t", traceparent=OWN)
    assert traced(bare).traceparent is None  # no span: nothing to carry
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    with trace.get_tracer("test").start_as_current_span("send") as span:
        stamped, kept = traced(bare), traced(own)
    assert stamped.traceparent is not None
    assert stamped.traceparent.split("-")[1] == format(span.get_span_context().trace_id, "032x")
    assert stamped.model_dump(exclude={"traceparent"}) == bare.model_dump(exclude={"traceparent"})
    assert kept.traceparent == OWN
