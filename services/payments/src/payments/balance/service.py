"""The buyer's balance with a seller, per currency (`account_credit`): what it paid beyond its
invoices, and what credit notes gave back to it (`refund_to` = `buyer_balance`, or a refund the
provider refused). The next invoice of that buyer from that seller consumes it first: a payment
`credit:<invoice>` (provider `account_credit`), and only the rest is collected."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_runtime.service import ServiceRuntime
from payments.collection import repository as collection_repo
from payments.payment.service import record_received

tracer = trace.get_tracer(__name__)

BALANCE_MOVES = Counter("billing_buyer_balance_moves_total", "Buyer balance changes, by what moved it", ["currency", "kind"])
BALANCE_AMOUNT = Counter(
    "billing_buyer_balance_amount_total", "Money moved into (credited) and out of (consumed) buyer balances, in major units", ["currency", "kind"]
)

ACCOUNT_CREDIT = "account_credit"


async def credit_balance(session: AsyncSession, tenant: str, account_id: str, currency: str, amount: Decimal, *, kind: str) -> None:
    """Add `amount` to the buyer's balance (`kind`: credit_note, refund_refused, overpayment) in the caller's transaction."""
    with tracer.start_as_current_span("credit_balance", attributes={"billing.account_id": account_id, "billing.kind": kind, "billing.amount": str(amount)}):
        await collection_repo.add_credit(session, tenant, account_id, currency, amount)
    BALANCE_MOVES.labels(currency, kind).inc()
    BALANCE_AMOUNT.labels(currency, kind).inc(float(amount))  # a metric, not a ledger


async def pay_from_balance(runtime: ServiceRuntime, session: AsyncSession, tenant: str, invoice: Any, open_amount: Decimal, paid_on: date) -> Decimal:
    """Pay what the buyer's balance covers of a newly issued invoice (locked by the caller), before
    anything is collected; returns the amount used (0 without a balance). Once per invoice: the
    payment id is `credit:<invoice>`."""
    with tracer.start_as_current_span("pay_from_balance", attributes={"billing.invoice_id": invoice.invoice_id}) as span:
        balance = await collection_repo.lock_credit(session, tenant, invoice.account_id, invoice.currency)
        use = min(balance, open_amount)
        span.set_attributes({"billing.balance": str(balance), "billing.used": str(max(use, Decimal(0)))})
        if use <= 0:
            return Decimal(0)
        row = await record_received(
            runtime,
            session,
            tenant,
            invoice,
            payment_id=f"credit:{invoice.invoice_id}",
            amount=use,
            method="bank_transfer",
            provider=ACCOUNT_CREDIT,
            paid_on=paid_on,
            reference=invoice.creditor_reference,
        )
        if row is None:
            return Decimal(0)  # used before for this invoice
        await collection_repo.add_credit(session, tenant, invoice.account_id, invoice.currency, -use)
        BALANCE_MOVES.labels(invoice.currency, "consumed").inc()
        BALANCE_AMOUNT.labels(invoice.currency, "consumed").inc(float(use))
        return use
