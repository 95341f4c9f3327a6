"""Credit notes as the API reads and shows them. Shown amounts are negative (they reduce what is owed)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from billing_events import DecimalStr
from billing_events.events.invoicing import RefundDestination
from billing_events.money import money_str


class CreditLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: str
    amount: DecimalStr = Field(description="Net amount of the line to credit, positive, at most what is not yet credited.")


class CreditNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] | None = None
    lines: list[CreditLineIn] | None = Field(
        default=None, min_length=1, description="Omitted with amount: credit everything not yet credited (a full credit note)."
    )
    amount: DecimalStr | None = Field(
        default=None, description="Net amount to credit, spread over the lines in proportion to what is left of each; not with lines."
    )
    refund_to: RefundDestination | None = Field(
        default=None,
        description="Where money already paid beyond what the invoice asks after this credit note goes: original_method (card or direct "
        "debit refund, SEPA credit transfer file for a bank transfer; the default) or buyer_balance (consumed by the buyer's next invoices).",
    )


class CreditNoteLineOut(BaseModel):
    line_id: str
    product_code: str
    description: str
    service_period_start: date
    service_period_end: date
    quantity: str
    unit_price: str
    net: str
    tax_rate: str
    tax_category: str


class CreditNoteOut(BaseModel):
    id: str
    number: str
    invoice_id: str
    buyer_account_id: str
    issued_on: date
    currency: str
    reason: str | None
    net_total: str
    tax_total: str
    total: str
    tax_breakdown: list[dict[str, Any]]
    lines: list[CreditNoteLineOut]
    refund_to: RefundDestination | None = None
    amount_to_return: str | None = Field(default=None, description="Money paid that this credit note gave back, as invoicing knew it when issuing.")

    @classmethod
    def from_rows(cls, row: Any, lines: list[Any]) -> CreditNoteOut:
        c = row.currency
        return cls(
            id=row.credit_note_id,
            number=row.number,
            invoice_id=row.invoice_id,
            buyer_account_id=row.buyer_account_id,
            issued_on=row.issued_on,
            currency=c,
            reason=row.reason,
            refund_to=row.refund_to,
            amount_to_return=money_str(row.amount_to_return, c) if row.amount_to_return is not None else None,
            net_total=money_str(-row.net_total, c),
            tax_total=money_str(-row.tax_total, c),
            total=money_str(-row.total, c),
            tax_breakdown=[
                {
                    "tax_category": t["tax_category"],
                    "rate": t["rate"],
                    "taxable": money_str(-Decimal(t["taxable"]["amount"]), c),
                    "tax": money_str(-Decimal(t["tax"]["amount"]), c),
                    "note": t.get("note"),
                }
                for t in row.tax_breakdown
            ],
            lines=[
                CreditNoteLineOut(
                    line_id=li.line_id,
                    product_code=li.product_code,
                    description=li.description,
                    service_period_start=li.service_period_start,
                    service_period_end=li.service_period_end,
                    quantity=format(li.quantity, "f"),
                    unit_price=format(li.unit_price, "f"),
                    net=money_str(-li.net, c),
                    tax_rate=format(li.tax_rate, "f"),
                    tax_category=li.tax_category,
                )
                for li in lines
            ],
        )


class CreditNoteList(BaseModel):
    """The credit notes issued against one invoice, oldest first."""

    items: list[CreditNoteOut]
