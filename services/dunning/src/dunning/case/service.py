"""The case rules: a case per issued invoice, its open amount reduced by each payment once,
closed when invoicing says the invoice is settled.

Every fact (issue, payment, settlement) is stored first and the case is then brought in line
with all facts known about its invoice (`reconcile`), so the order in which the facts arrive
does not matter and a replayed fact changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import (
    CloudEvent,
    CreditNoteIssued,
    DunningCaseClosed,
    DunningCaseOpened,
    InvoiceIssued,
    InvoiceSettled,
    Money,
    PaymentFailed,
    PaymentSucceeded,
    derived_event_id,
)
from billing_events.money import open_amount, quantize
from billing_runtime.api import decode_keyset, encode_cursor, page_of
from billing_runtime.issued import check_invoice_currency
from billing_runtime.service import ServiceRuntime
from dunning.account import service as accounts
from dunning.case import repository as repo
from dunning.case.models import CaseStatus
from dunning.case.schemas import AmountOut, CaseOut, PaymentFailureOut, StandingOut
from dunning.db import read_snapshot

tracer = trace.get_tracer(__name__)

CASES_OPENED = Counter("billing_dunning_cases_opened_total", "Dunning cases opened")
CASES_CLOSED = Counter("billing_dunning_cases_closed_total", "Dunning cases closed, by reason", ["reason"])
PAYMENTS_APPLIED = Counter("billing_dunning_payments_applied_total", "Payments taken into account by dunning", ["currency"])
PAYMENT_FAILURES = Counter("billing_dunning_payment_failures_total", "Failed payments taken into account by dunning", ["reason_code"])

# Fixed: changing it would change every case id ever issued.
_CASE_NAMESPACE = uuid.UUID("2f7c1d64-9b1e-5a0c-8e3f-4d6a7b9c0e21")


def case_id(invoice_id: str) -> str:
    """The one case of an invoice, the same in every replay."""
    return str(uuid.uuid5(_CASE_NAMESPACE, f"case:{invoice_id}"))


def amount_paid(currency: str, payments: Iterable[tuple[Decimal, str]]) -> Decimal:
    """The sum of the payments in the invoice's currency. payments refuses a payment in another
    currency, so one here is not ours to convert: it is left out rather than mixed in."""
    return sum((amount for amount, paid_in in payments if paid_in == currency), Decimal(0))


def amount_open(total: Decimal, paid: Decimal, credited: Decimal, currency: str) -> Decimal:
    """What is still owed, in the currency's decimals; an overpayment leaves nothing open, never a
    negative amount."""
    return quantize(max(open_amount(total, paid, credited), Decimal(0)), currency)


def is_overdue(status: str, due_on: date, today: date) -> bool:
    """Overdue from the day after the due date: paying on the due date is on time."""
    return status == CaseStatus.OPEN and today > due_on


def days_overdue(status: str, due_on: date, today: date) -> int:
    return (today - due_on).days if is_overdue(status, due_on, today) else 0


@dataclass
class Standing:
    account_id: str
    open_cases: int = 0
    overdue_cases: int = 0
    amount_open: dict[str, Decimal] = field(default_factory=dict)
    amount_overdue: dict[str, Decimal] = field(default_factory=dict)


def standing(account_id: str, cases: Iterable[Any], today: date) -> Standing:
    """An account's position with one seller: its open cases and what of them is overdue, per currency."""
    result = Standing(account_id)
    for case in cases:
        if case.status != CaseStatus.OPEN:
            continue
        result.open_cases += 1
        result.amount_open[case.currency] = result.amount_open.get(case.currency, Decimal(0)) + case.amount_open
        if is_overdue(case.status, case.due_on, today):
            result.overdue_cases += 1
            result.amount_overdue[case.currency] = result.amount_overdue.get(case.currency, Decimal(0)) + case.amount_open
    return result


def case_row(event: CloudEvent[InvoiceIssued]) -> dict[str, Any]:
    data = event.data
    check_invoice_currency(data)
    return {
        "case_id": case_id(data.invoice_id),
        "invoice_id": data.invoice_id,
        "tenant": event.tenant,
        "seller_id": data.seller.account_id,
        "account_id": data.buyer.account_id,
        "invoice_number": data.number,
        "currency": data.currency,
        "total": data.total.amount,
        "amount_paid": quantize(Decimal(0), data.currency),
        "amount_open": data.total.amount,
        "issued_on": data.issued_on,
        "due_on": data.due_on,
        "status": CaseStatus.OPEN.value,
    }


def case_opened(runtime: ServiceRuntime, tenant: str, row: dict[str, Any], open_now: Decimal) -> CloudEvent[Any]:
    """The DunningCaseOpened of a new case (`case_row`), open for `open_now`; its id is derived
    from the case, so a case opened one by one or in a batch, or again, announces the same event."""
    data = DunningCaseOpened(
        case_id=row["case_id"],
        invoice_id=row["invoice_id"],
        seller_id=row["seller_id"],
        account_id=row["account_id"],
        due_on=row["due_on"],
        amount_open=Money.of(open_now, row["currency"]),
    )
    return runtime.event(data, tenant=tenant, event_id=derived_event_id("dunning_case_opened", row["case_id"]), subject=row["case_id"])


async def open_case(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[InvoiceIssued]) -> None:
    """Open the case of an issued invoice (once), taking in payments and a settlement that came first."""
    invoice_id = event.data.invoice_id
    with tracer.start_as_current_span("dunning.open_case", attributes={"billing.invoice_id": invoice_id}):
        await repo.lock_invoice(session, invoice_id)
        row = case_row(event)
        if not await repo.insert_case(session, row):
            return
        await accounts.link_customer(runtime, session, event.tenant, row["account_id"], runtime.clock.today())
        payments = await repo.payments_of_invoice(session, event.tenant, invoice_id)
        credits = await repo.credits_of_invoice(session, event.tenant, invoice_id)
        paid = amount_paid(row["currency"], ((p.amount, p.currency) for p in payments))
        credited = amount_paid(row["currency"], ((c.amount, c.currency) for c in credits))
        await runtime.outbox.add(session, case_opened(runtime, event.tenant, row, amount_open(row["total"], paid, credited, row["currency"])))
        CASES_OPENED.inc()
        await reconcile(runtime, session, invoice_id)


async def open_cases(runtime: ServiceRuntime, session: AsyncSession, events: list[CloudEvent[InvoiceIssued]]) -> list[str]:
    """`open_case` for a polled batch of issued invoices, set-based: the batch's invoices locked in
    one statement, their cases inserted in one, their customers linked in one per seller, their
    DunningCaseOpened in one outbox insert. An invoice with a payment, credit note or settlement
    already on record (it came before the issue) takes `open_case`, one at a time, as before; so
    does a second event for an invoice. Every event must pass `case_row`. Returns the invoice ids
    to evaluate against the policy: every one but the new cases not yet overdue (an evaluation of
    those finds nothing to do)."""
    with tracer.start_as_current_span("dunning.open_cases", attributes={"billing.batch_size": len(events)}) as span:
        today = runtime.clock.today()
        invoice_ids = [event.data.invoice_id for event in events]
        await repo.lock_invoices(session, invoice_ids)
        with_facts = await repo.invoices_with_facts(session, invoice_ids)
        first: dict[str, tuple[CloudEvent[InvoiceIssued], dict[str, Any]]] = {}
        one_by_one: list[CloudEvent[InvoiceIssued]] = []
        for event in events:
            if event.data.invoice_id in with_facts or event.data.invoice_id in first:
                one_by_one.append(event)
                continue
            row = case_row(event)
            # What reconcile makes of a case with no payment, credit or settlement yet.
            row["amount_open"] = amount_open(row["total"], Decimal(0), Decimal(0), row["currency"])
            first[event.data.invoice_id] = (event, row)
        new = await repo.insert_cases(session, [row for _, row in first.values()])
        customers: dict[str, list[str]] = {}
        opened: list[CloudEvent[Any]] = []
        for invoice_id, (event, row) in first.items():
            if invoice_id not in new:
                one_by_one.append(event)  # known before this batch: open_case finds it and does nothing
                continue
            customers.setdefault(event.tenant, []).append(row["account_id"])
            opened.append(case_opened(runtime, event.tenant, row, row["amount_open"]))
        for tenant, account_ids in customers.items():
            await accounts.link_customers(runtime, session, tenant, account_ids, today)
        await runtime.outbox.add_many(session, opened)
        CASES_OPENED.inc(len(opened))
        for event in one_by_one:
            await open_case(runtime, session, event)
        span.set_attributes({"billing.cases_opened": len(opened), "billing.one_by_one": len(one_by_one)})
        evaluate = {event.data.invoice_id for event in one_by_one}
        evaluate.update(invoice_id for invoice_id, (_, row) in first.items() if invoice_id in new and today > row["due_on"])
        return [invoice_id for invoice_id in dict.fromkeys(invoice_ids) if invoice_id in evaluate]


async def apply_payment(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[PaymentSucceeded]) -> None:
    """Count a payment against its invoice's case, once per payment id; kept for later if the
    invoice is not known yet."""
    data = event.data
    with tracer.start_as_current_span("dunning.apply_payment", attributes={"billing.invoice_id": data.invoice_id, "billing.payment_id": data.payment_id}):
        row = {
            "invoice_id": data.invoice_id,
            "payment_id": data.payment_id,
            "tenant": event.tenant,
            "amount": data.amount.amount,
            "currency": data.amount.currency,
            "paid_on": data.paid_on,
        }
        if not await repo.remember_once(session, repo.PAYMENT, row):
            return
        PAYMENTS_APPLIED.labels(data.amount.currency).inc()
        await reconcile(runtime, session, data.invoice_id)


async def settle_case(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[InvoiceSettled]) -> None:
    """Close the invoice's case as paid; remembered for later if the invoice is not known yet."""
    data = event.data
    with tracer.start_as_current_span("dunning.settle_case", attributes={"billing.invoice_id": data.invoice_id}):
        row = {
            "invoice_id": data.invoice_id,
            "tenant": event.tenant,
            "settled_on": data.settled_on,
            "amount_paid": data.amount_paid.amount,
            "currency": data.amount_paid.currency,
        }
        if not await repo.remember_once(session, repo.SETTLEMENT, row):
            return
        await reconcile(runtime, session, data.invoice_id)


async def reconcile(runtime: ServiceRuntime, session: AsyncSession, invoice_id: str) -> None:
    """Bring the invoice's case (if it is open) in line with every payment, credit note and
    settlement known, closing it when nothing is owed any more. The caller holds the invoice lock."""
    case = await repo.case_of_invoice(session, invoice_id)
    if case is None or case.status != CaseStatus.OPEN:
        return
    payments = await repo.payments_of_invoice(session, case.tenant, invoice_id)
    credits = await repo.credits_of_invoice(session, case.tenant, invoice_id)
    paid = quantize(amount_paid(case.currency, ((p.amount, p.currency) for p in payments)), case.currency)
    credited = amount_paid(case.currency, ((c.amount, c.currency) for c in credits))
    settlement = await repo.settlement_of_invoice(session, case.tenant, invoice_id)
    closing = close_of(case.total, paid, credited, settlement.settled_on if settlement else None, payments, credits)
    if closing is None:
        await repo.update_case(session, case.case_id, amount_paid=paid, amount_open=amount_open(case.total, paid, credited, case.currency))
        return
    reason, closed_on = closing
    # Settled means invoicing holds the invoice fully paid: nothing is open, whatever payments
    # dunning has seen so far (one may still be on its way on the payments topic).
    await repo.update_case(
        session,
        case.case_id,
        amount_paid=paid,
        amount_open=quantize(Decimal(0), case.currency),
        status=CaseStatus.CLOSED.value,
        closed_on=closed_on,
        close_reason=reason,
    )
    closed = DunningCaseClosed(
        case_id=case.case_id, invoice_id=invoice_id, seller_id=case.seller_id, account_id=case.account_id, closed_on=closed_on, reason=reason
    )
    await runtime.outbox.add(
        session, runtime.event(closed, tenant=case.tenant, event_id=derived_event_id("dunning_case_closed", case.case_id), subject=case.case_id)
    )
    CASES_CLOSED.labels(reason).inc()
    await accounts.case_closed(runtime, session, tenant=case.tenant, account=case.account_id, case_id=case.case_id, on=closed_on)


def close_of(
    total: Decimal, paid: Decimal, credited: Decimal, settled_on: date | None, payments: Iterable[Any], credits: Iterable[Any]
) -> tuple[Literal["paid", "credited"], date] | None:
    """(reason, closed_on) when nothing is owed any more, else None. Invoicing's settlement
    decides first; then payments covering the total (paid, on the last payment's date); then
    payments and credit notes together (credited, on the last of their dates)."""
    if settled_on is not None:
        return "paid", settled_on
    if total <= 0:
        return None
    dates = [p.paid_on for p in payments]
    if open_amount(total, paid, Decimal(0)) <= 0:
        return "paid", max(dates)
    if open_amount(total, paid, credited) <= 0:
        return "credited", max([*dates, *(c.issued_on for c in credits)])
    return None


async def apply_payment_failure(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[PaymentFailed]) -> bool:
    """Remember a failed payment (once per payment id); True if it is new. The caller then
    evaluates the case, so a failure after the due date advances it at once."""
    data = event.data
    attributes = {"billing.invoice_id": data.invoice_id, "billing.payment_id": data.payment_id}
    with tracer.start_as_current_span("dunning.apply_payment_failure", attributes=attributes):
        row = {
            "invoice_id": data.invoice_id,
            "payment_id": data.payment_id,
            "tenant": event.tenant,
            "amount": data.amount.amount,
            "currency": data.amount.currency,
            "failed_on": data.failed_on,
            "reason_code": data.reason_code,
            "reason": data.reason,
        }
        inserted = await repo.remember_once(session, repo.FAILURE, row)
        if inserted:
            PAYMENT_FAILURES.labels(data.reason_code).inc()
        return inserted


async def apply_credit_note(runtime: ServiceRuntime, session: AsyncSession, event: CloudEvent[CreditNoteIssued]) -> None:
    """Count a credit note against its invoice's case, once per credit note; a credit note
    clearing what is left closes the case (`credited`)."""
    data = event.data
    attributes = {"billing.invoice_id": data.invoice_id, "billing.credit_note_id": data.credit_note_id}
    with tracer.start_as_current_span("dunning.apply_credit_note", attributes=attributes):
        row = {
            "invoice_id": data.invoice_id,
            "credit_note_id": data.credit_note_id,
            "tenant": event.tenant,
            "amount": abs(data.total.amount),
            "currency": data.total.currency,
            "issued_on": data.issued_on,
        }
        if not await repo.remember_once(session, repo.CREDIT, row):
            return
        await reconcile(runtime, session, data.invoice_id)


def case_out(case: Any, today: date) -> CaseOut:
    return CaseOut(
        case_id=case.case_id,
        invoice_id=case.invoice_id,
        invoice_number=case.invoice_number,
        account_id=case.account_id,
        currency=case.currency,
        total=case.total,
        amount_paid=case.amount_paid,
        amount_open=case.amount_open,
        issued_on=case.issued_on,
        due_on=case.due_on,
        status=case.status,
        days_overdue=days_overdue(case.status, case.due_on, today),
        closed_on=case.closed_on,
        close_reason=case.close_reason,
        step=case.step,
        step_action=case.step_action,
        step_reached_on=case.step_reached_on,
    )


async def list_cases(
    session: AsyncSession, tenant: str, today: date, *, status: str | None, account_id: str | None, limit: int, cursor: str | None
) -> tuple[list[CaseOut], str | None]:
    """A page of the seller's cases, the earliest due first, and the next cursor."""
    after = decode_keyset(cursor, date.fromisoformat)
    rows = await repo.list_cases(session, tenant, status=status, account_id=account_id, after=after, limit=limit + 1)
    page, next_cursor = page_of(rows, limit, lambda r: encode_cursor(r.due_on.isoformat(), r.case_id))
    return [case_out(r, today) for r in page], next_cursor


async def account_standing(session: AsyncSession, tenant: str, account_id: str, today: date) -> StandingOut:
    """The account's standing with the seller `tenant`: open and overdue amounts, the current
    case (the furthest along, then the earliest due), its step, and whether the account is
    suspended. An account with no case stands clear.

    Read in one snapshot (`read_snapshot`; `session` has not begun its transaction): a payment
    closes its case and reinstates the account in one transaction, and the standing shows both or
    neither, never an open case on an account already reinstated."""
    await read_snapshot(session)
    open_cases = await repo.open_cases_of_account(session, tenant, account_id)
    result = standing(account_id, open_cases, today)
    current = max(open_cases, key=lambda c: (c.step or 0, -c.due_on.toordinal(), c.case_id), default=None)
    suspension = await accounts.suspension_of(session, tenant, account_id)
    failure = await repo.last_failure_of_account(session, tenant, account_id)
    return StandingOut(
        account_id=account_id,
        open_cases=result.open_cases,
        overdue_cases=result.overdue_cases,
        amount_open=_amounts(result.amount_open),
        amount_overdue=_amounts(result.amount_overdue),
        suspended=suspension is not None,
        step=current.step if current is not None else None,
        step_action=current.step_action if current is not None else None,
        current_case=case_out(current, today) if current is not None else None,
        suspended_on=suspension.suspended_on if suspension is not None else None,
        suspended_by_case=suspension.case_id if suspension is not None else None,
        cascaded_from=suspension.cascaded_from if suspension is not None else None,
        last_payment_failure=(
            PaymentFailureOut(payment_id=failure.payment_id, failed_on=failure.failed_on, reason_code=failure.reason_code, reason=failure.reason)
            if failure is not None
            else None
        ),
    )


def _amounts(by_currency: dict[str, Decimal]) -> list[AmountOut]:
    return [AmountOut(amount=amount, currency=currency) for currency, amount in sorted(by_currency.items())]
