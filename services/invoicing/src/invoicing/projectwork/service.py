"""Project-work statements (seed 001, BILLING-RULES §7): entering time and materials produces, at
once, a numbered statement of what was done, how long it took and what it will cost. It is
informational: no payment is due, nothing is collected and no VAT is charged on it; the charge is
billed on the seller's next regular invoice to the same buyer, in the end customer's section.

Numbers are gapless per seller in their own series, `{prefix}-PW-{seq:06d}`, taken under the
seller's counter lock in the consumer's transaction; one statement per (seller, entry)."""

from __future__ import annotations

import uuid
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import DocumentLink, Money, Party, ProjectWorkRecorded, ProjectWorkStatementIssued, derived_event_id
from billing_events.money import round_half_up
from billing_runtime.errors import NotFound
from billing_runtime.service import ServiceRuntime
from billing_runtime.tenancy import of_account, select_scoped, tenant_owned
from invoicing.buyer.service import buyer_party
from invoicing.config import Settings
from invoicing.documents import repository as documents
from invoicing.documents.service import in_pool
from invoicing.documents.shares import SharedKind, share, shared_url
from invoicing.numbering import repository as counters
from invoicing.projectwork.models import ProjectWorkStatement, ProjectWorkStatementCounter
from invoicing.projectwork.pdf import StatementContent, render_statement
from invoicing.seller.service import find_seller, get_seller

tracer = trace.get_tracer(__name__)
STATEMENTS = Counter("billing_project_work_statements_issued_total", "Project-work statements issued", ["currency"])
STATEMENT: Table = tenant_owned(ProjectWorkStatement, "seller_id")
COUNTER: Table = tenant_owned(ProjectWorkStatementCounter, "seller_id")
KIND: SharedKind = "project_work_statement"
_NAMESPACE = uuid.UUID("6f1c2b7e-3d4a-5b8c-9e0f-1a2b3c4d5e6f")


def statement_id_for(seller_id: str, entry_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"project_work_statement:{seller_id}:{entry_id}"))


def format_statement_number(prefix: str, seq: int) -> str:
    """`NW`, 1 → `NW-PW-000001`."""
    return f"{prefix}-PW-{seq:06d}"


async def _buyer(session: AsyncSession, recorded: ProjectWorkRecorded) -> Party:
    """The partner from its own seller profile (wholesale, as on its invoice), else the customer."""
    if recorded.tier == "wholesale":
        partner = await find_seller(session, recorded.buyer_account_id)
        if partner is not None:
            return partner.party().model_copy(update={"account_id": recorded.buyer_account_id})
    return await buyer_party(session, recorded.seller_id, recorded.buyer_account_id)


async def issue_statement(runtime: ServiceRuntime[Settings], session: AsyncSession, recorded: ProjectWorkRecorded) -> str | None:
    """The statement of one entry, its shared PDF link and `ProjectWorkStatementIssued`, in the
    caller's transaction; None when the entry has its statement already."""
    with tracer.start_as_current_span("issue_project_work_statement", attributes={"billing.entry_id": recorded.entry_id}) as span:
        last = await counters.lock_counter(session, recorded.seller_id, COUNTER)  # before the check: see every committed statement
        statement_id = statement_id_for(recorded.seller_id, recorded.entry_id)
        known = select_scoped(STATEMENT, recorded.seller_id, STATEMENT.c.statement_id).where(STATEMENT.c.statement_id == statement_id)
        if await session.scalar(known) is not None:
            return None
        seller = await get_seller(runtime, session, recorded.seller_id)
        seq = last + 1
        number = format_statement_number(seller.invoice_prefix, seq)
        currency = recorded.amount.currency
        amount = round_half_up(recorded.amount.amount, currency)
        buyer = await _buyer(session, recorded)
        now = runtime.clock.now()
        row = {
            "statement_id": statement_id,
            "seller_id": recorded.seller_id,
            "buyer_account_id": recorded.buyer_account_id,
            "entry_id": recorded.entry_id,
            "seq": seq,
            "number": number,
            "issued_on": now.date(),
            "tier": recorded.tier,
            "currency": currency,
            "seller": seller.party().model_dump(mode="json"),
            "buyer": buyer.model_dump(mode="json"),
            "end_customer_id": recorded.end_customer_id,
            "end_customer_name": recorded.end_customer_name,
            "product_code": recorded.product_code,
            "description": recorded.description,
            "category": recorded.category,
            "unit": recorded.unit,
            "performed_on": recorded.performed_on,
            "quantity": recorded.quantity,
            "unit_price": recorded.unit_price.amount,
            "amount": amount,
            "billed_with_period_start": recorded.billed_with_period_start,
            "billed_with_period_end": recorded.billed_with_period_end,
            "issued_at": now,
        }
        await session.execute(pg_insert(STATEMENT).values(**row))
        await counters.set_last(session, recorded.seller_id, seq, COUNTER)
        token = await share(session, recorded.seller_id, KIND, statement_id, "pdf", now)
        issued = ProjectWorkStatementIssued(
            statement_id=statement_id,
            number=number,
            entry_id=recorded.entry_id,
            seller=seller.party(),
            buyer=buyer,
            issued_on=now.date(),
            end_customer_id=recorded.end_customer_id,
            end_customer_name=recorded.end_customer_name,
            product_code=recorded.product_code,
            description=recorded.description,
            performed_on=recorded.performed_on,
            quantity=recorded.quantity,
            unit_price=recorded.unit_price,
            amount=Money.of(amount, currency),
            billed_with_period_start=recorded.billed_with_period_start,
            billed_with_period_end=recorded.billed_with_period_end,
            documents=[DocumentLink(kind="pdf", url=f"/v1/project-work-statements/{statement_id}/pdf", shared_url=shared_url(runtime, token))],
        )
        event_id = derived_event_id("project_work_statement_issued", statement_id)
        await runtime.outbox.add(session, runtime.event(issued, tenant=recorded.seller_id, event_id=event_id, subject=statement_id))
        STATEMENTS.labels(currency).inc()
        span.set_attributes({"billing.statement_number": number})
        return statement_id


async def existing_statement(session: AsyncSession, seller_id: str, statement_id: str, *, buyer_account_id: str | None = None) -> Any:
    """The seller's statement (with `buyer_account_id`: only if it is that buyer's), else 404 `project_work_statement_not_found`."""
    query = of_account(select_scoped(STATEMENT, seller_id).where(STATEMENT.c.statement_id == statement_id), STATEMENT.c.buyer_account_id, buyer_account_id)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"no project-work statement {statement_id!r}", code="project_work_statement_not_found")
    return row


async def list_statements(session: AsyncSession, seller_id: str, buyer_account_id: str | None) -> list[Any]:
    query = of_account(select_scoped(STATEMENT, seller_id).order_by(STATEMENT.c.seq.desc()), STATEMENT.c.buyer_account_id, buyer_account_id)
    return list((await session.execute(query.limit(500))).all())


def content(row: Any, brand_color: str | None) -> StatementContent:
    return StatementContent(
        number=row.number,
        issued_on=row.issued_on,
        seller=row.seller,
        buyer=row.buyer,
        currency=row.currency,
        end_customer_name=row.end_customer_name or row.end_customer_id,
        product_code=row.product_code,
        description=row.description,
        unit=row.unit,
        performed_on=row.performed_on,
        quantity=row.quantity,
        unit_price=row.unit_price,
        amount=row.amount,
        billed_with_period_start=row.billed_with_period_start,
        billed_with_period_end=row.billed_with_period_end,
        brand_color=brand_color or "#1f4e79",
    )


async def statement_pdf(runtime: ServiceRuntime[Settings], seller_id: str, statement_id: str, *, buyer_account_id: str | None = None) -> tuple[str, bytes]:
    """(file name, PDF) of the seller's statement: rendered on its first download (in the rendering
    processes), then kept, so every download gives the same bytes."""
    with tracer.start_as_current_span("document", attributes={"billing.document_kind": KIND, "billing.owner_id": statement_id}):
        async with runtime.sessions() as session:
            row = await existing_statement(session, seller_id, statement_id, buyer_account_id=buyer_account_id)
            kept = await documents.get(session, seller_id, KIND, statement_id, "pdf")
            seller = await find_seller(session, seller_id)
        name = f"{row.number}.pdf"
        if kept is not None:
            return name, kept
        made = await in_pool(runtime.settings, render_statement, content(row, seller.brand_color if seller else None))
        async with runtime.transaction() as session:
            await documents.store(
                session,
                [{"owner_kind": KIND, "owner_id": statement_id, "seller_id": seller_id, "format": "pdf", "content": made, "rendered_at": runtime.clock.now()}],
            )
        async with runtime.sessions() as session:
            return name, (await documents.get(session, seller_id, KIND, statement_id, "pdf")) or made
