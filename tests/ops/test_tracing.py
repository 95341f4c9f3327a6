"""One usage POST is one trace: usage-ingest's HTTP span, its database writes, the Kafka produce
from its outbox, and rating's consumer spans all share a trace id."""

from __future__ import annotations

import uuid

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from billing_runtime.testing import eventually, serve
from billing_runtime.tracing import add_span_processor

EXPORTER = InMemorySpanExporter()


def _service(span: ReadableSpan) -> str:
    return str(span.resource.attributes.get("service.name"))


def _rating_consumed(spans: tuple[ReadableSpan, ...], record_type: str) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == SpanKind.CONSUMER and s.name == f"consume {record_type}" and (s.attributes or {}).get("billing.service") == "rating"]


async def test_usage_post_is_one_trace_across_ingest_kafka_and_rating(migrated: str, kafka_bootstrap: str) -> None:
    add_span_processor(SimpleSpanProcessor(EXPORTER))
    # Built after the processor is added: building is what instruments the apps.
    from rating.config import Settings as RatingSettings
    from rating.main import build as build_rating
    from usage_ingest.config import Settings as IngestSettings
    from usage_ingest.main import build as build_ingest

    ingest_app = build_ingest(IngestSettings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap))
    rating_app = build_rating(RatingSettings(database_url=migrated, kafka_bootstrap_servers=kafka_bootstrap))
    tenant = f"partner-{uuid.uuid4().hex[:8]}"
    record_id = f"u-{uuid.uuid4().hex[:8]}"
    headers = {"X-Tenant-Id": tenant}
    async with serve(rating_app), serve(ingest_app) as ingest:
        r = await ingest.post(
            "/v1/customers",
            headers=headers,
            json={"records": [{"id": "c-1", "name": "Contoso Dental", "billing_email": "ap@contoso.example", "country": "US", "currency": "USD"}]},
        )
        assert r.status_code == 200, r.text
        EXPORTER.clear()
        r = await ingest.post(
            "/v1/usage",
            headers=headers,
            json={"records": [{"id": record_id, "customer_id": "c-1", "product_code": "AZ-VM", "quantity": "2.5", "timestamp": "2026-10-12T10:00:00Z"}]},
        )
        assert r.status_code == 200, r.text
        post = [s for s in EXPORTER.get_finished_spans() if s.kind == SpanKind.SERVER and s.name == "POST /v1/usage"]
        assert len(post) == 1, [s.name for s in EXPORTER.get_finished_spans()]
        trace_id = post[0].context.trace_id
        # Rating applies the event asynchronously; wait for its consumer span (bounded by the test timeout).
        await eventually(
            lambda: [s for s in _rating_consumed(EXPORTER.get_finished_spans(), "billing.usage.recorded.v1") if s.context.trace_id == trace_id],
            "rating's consumer span in the trace",
            interval=0.1,
        )

    in_trace = [s for s in EXPORTER.get_finished_spans() if s.context.trace_id == trace_id]
    assert _service(post[0]) == "usage-ingest"
    # The database writes of the request are in it.
    assert any((s.attributes or {}).get("db.system") == "postgresql" or (s.attributes or {}).get("db.system.name") == "postgresql" for s in in_trace)
    # No span for the statements that only open or close a transaction.
    everything = EXPORTER.get_finished_spans()
    assert not [s.name for s in everything if s.name.rstrip(";").upper() in {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}]
    # The Kafka hop: the outbox relay's produce continues the request's trace...
    produced = [s for s in in_trace if s.kind == SpanKind.PRODUCER and s.name == "billing.usage send"]
    assert produced, sorted(s.name for s in in_trace)
    # ...and rating's receive and consume spans descend from that produce span.
    received = [s for s in in_trace if s.kind == SpanKind.CONSUMER and s.name == "billing.usage receive"]
    consumed = _rating_consumed(tuple(in_trace), "billing.usage.recorded.v1")
    assert received and consumed
    produce_ids = {s.context.span_id for s in produced}
    assert consumed[0].parent is not None and consumed[0].parent.span_id in produce_ids
    assert all(s.parent is not None and s.parent.span_id in produce_ids for s in received)
