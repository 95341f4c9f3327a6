"""Importing bank statements and matching their credit lines to open invoices.

A line is matched by the RF creditor reference in its remittance text, else by its amount being
exactly the open amount of one open invoice of a buyer whose name the payer's name contains.
A matched line is recorded as a bank transfer (partial and over payments included: a surplus
becomes the buyer's credit), and the payer's account on a camt.053 line is kept as where the
buyer's bank-transfer refunds go (unless the seller set one); the rest are listed for finance. A statement is imported once:
the same statement again returns the first result; other content under its id is refused.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events.money import fits_minor_units, open_amount
from billing_runtime.errors import BillingError, Conflict
from billing_runtime.service import ServiceRuntime
from payments.banking import repository as repo
from payments.banking.reference import references_in
from payments.banking.schemas import StatementLineOut, StatementOut
from payments.banking.statements import Line, ParsedStatement, StatementUnreadable, parse
from payments.invoice import repository as invoice_repo
from payments.payment.service import record_received
from payments.refund.service import remember_payer_account

tracer = trace.get_tracer(__name__)
STATEMENT_LINES = Counter("billing_statement_lines_total", "Bank statement credit lines imported, by how they matched", ["matched_by"])


class InvalidStatement(BillingError):
    status_code = 422
    code = "invalid_statement"


class StatementConflict(Conflict):
    code = "statement_id_conflict"


def _words(name: str | None) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", (name or "").lower()))


async def _match(session: AsyncSession, tenant: str, line: Line) -> tuple[Any, str | None]:
    for reference in references_in(line.remittance):
        invoice = await invoice_repo.by_reference(session, tenant, reference)
        if invoice is not None and invoice.currency == line.currency:
            return invoice, "reference"
    payer = _words(line.counterparty)
    if not payer:
        return None, None
    candidates = [
        i
        for i in await invoice_repo.open_invoices_of(session, tenant)
        if i.currency == line.currency
        and open_amount(i.total, i.amount_received, i.amount_credited) == line.amount
        and _words(i.buyer_name)
        and _words(i.buyer_name) in payer
    ]
    if len(candidates) == 1:
        return await invoice_repo.lock_invoice(session, tenant, invoice_id=candidates[0].invoice_id, number=None), "amount_and_buyer"
    return None, None


async def import_statement(runtime: ServiceRuntime, session: AsyncSession, tenant: str, data: bytes, format: str | None) -> tuple[StatementOut, bool]:
    """Import a statement; returns (result, newly imported)."""
    with tracer.start_as_current_span("import_statement", attributes={"billing.tenant": tenant}):
        try:
            parsed: ParsedStatement = parse(data, format)
        except StatementUnreadable as exc:
            raise InvalidStatement(str(exc), field="body") from exc
        digest = hashlib.sha256(data).hexdigest()
        created = await repo.insert_statement(
            session,
            {
                "tenant": tenant,
                "statement_id": parsed.statement_id,
                "format": parsed.format,
                "account": parsed.account,
                "digest": digest,
                "imported_at": runtime.clock.now(),
            },
        )
        if not created:
            stored = await repo.get_statement(session, tenant, parsed.statement_id)
            if stored.digest != digest:
                raise StatementConflict(f"statement {parsed.statement_id!r} was imported with other content; nothing was changed", field="body")
            return await statement_out(session, tenant, stored), False
        for line_no, line in enumerate(parsed.lines, start=1):
            if line.amount <= 0 or not fits_minor_units(line.amount, line.currency):
                raise InvalidStatement(f"line {line_no}: amount {line.amount} {line.currency} is not a positive amount in that currency")
            invoice, matched_by = await _match(session, tenant, line)
            payment_id = f"stmt:{parsed.statement_id}:{line_no}" if invoice is not None else None
            if invoice is not None:
                await record_received(
                    runtime,
                    session,
                    tenant,
                    invoice,
                    payment_id=payment_id or "",
                    amount=line.amount,
                    method="bank_transfer",
                    provider="bank_transfer",
                    paid_on=line.booked_on,
                    reference=(line.remittance or "")[:140] or None,
                )
                await remember_payer_account(runtime, session, tenant, invoice.account_id, line.counterparty, line.counterparty_iban)
            await repo.insert_line(
                session,
                {
                    "tenant": tenant,
                    "statement_id": parsed.statement_id,
                    "line_no": line_no,
                    "booked_on": line.booked_on,
                    "amount": line.amount,
                    "currency": line.currency,
                    "remittance": line.remittance,
                    "counterparty": line.counterparty,
                    "status": "matched" if invoice is not None else "unmatched",
                    "matched_by": matched_by,
                    "invoice_id": invoice.invoice_id if invoice is not None else None,
                    "payment_id": payment_id,
                },
            )
            STATEMENT_LINES.labels(matched_by or "unmatched").inc()
        return await statement_out(session, tenant, await repo.get_statement(session, tenant, parsed.statement_id)), True


def line_out(row: Any) -> StatementLineOut:
    return StatementLineOut.model_validate(dict(row._mapping))


async def statement_out(session: AsyncSession, tenant: str, stored: Any) -> StatementOut:
    lines = [line_out(r) for r in await repo.lines_of(session, tenant, stored.statement_id)]
    matched = sum(1 for line in lines if line.status == "matched")
    return StatementOut(
        statement_id=stored.statement_id, format=stored.format, account=stored.account, matched=matched, unmatched=len(lines) - matched, lines=lines
    )


async def unmatched_lines(session: AsyncSession, tenant: str) -> list[StatementLineOut]:
    return [line_out(r) for r in await repo.unmatched(session, tenant)]
