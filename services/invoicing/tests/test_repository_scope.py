"""Every invoicing repository read or write by id is scoped to the seller asking: called with
another seller's tenant and the victim's ids (invoice, payment, refund, credit note, document,
shared link, counter), it finds nothing and changes nothing; the victim still finds its own rows.
Without a tenant, the query refuses to run (`TenantRequired`)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from invoicing_testkit import OCT_END, OCT_START, customer, payment, period_closed, rated
from sqlalchemy import text
from sqlalchemy.exc import NoResultFound

from billing_events import Money, PaymentRefunded
from billing_runtime.service import ServiceRuntime
from billing_runtime.tenancy import TenantRequired
from invoicing.buyer.service import record_customer
from invoicing.comparison import repository as comparison_repo
from invoicing.config import Settings
from invoicing.creditnote import repository as credit_repo
from invoicing.creditnote.service import issue_credit_note
from invoicing.documents import repository as documents_repo
from invoicing.documents.shares import rotate, share, tokens_of
from invoicing.invoice import repository as invoice_repo
from invoicing.invoice.service import apply_payment, apply_refund, issue_invoice
from invoicing.numbering import repository as numbering_repo
from invoicing.seller import repository as seller_repo
from invoicing.seller.schemas import NetDays, SellerSettingsIn
from invoicing.seller.service import put_seller
from invoicing.tax import repository as tax_repo


async def test_another_sellers_ids_find_nothing_and_change_nothing(runtime: ServiceRuntime[Settings], tenant: str) -> None:
    attacker, victim = tenant, f"{tenant}-victim"
    buyer = customer(victim, "dental", "Victim Dental", currency="EUR")
    now = runtime.clock.now()
    async with runtime.transaction() as session:
        await put_seller(runtime, session, victim, SellerSettingsIn(name="Victim Seller", country="IE", invoice_prefix="VS", due_rule=NetDays(net_days=14)))
        await record_customer(runtime, session, buyer)
        invoice_id = await issue_invoice(runtime, session, period_closed(victim, buyer.account_id, [rated("l1", "X", "2", "50.00", "EUR")], currency="EUR"))
        assert invoice_id is not None
        total = (await invoice_repo.get_invoice(session, victim, invoice_id)).total
    invoice = {"id": invoice_id, "buyer_account_id": buyer.account_id, "currency": "EUR"}
    paid = payment(victim, invoice, str(total), date(2026, 11, 3))
    async with runtime.transaction() as session:
        await apply_payment(runtime, session, paid)
    refund = PaymentRefunded(
        refund_id="rf-1", payment_id=paid.payment_id, invoice_id=invoice_id, seller_id=victim,
        account_id=buyer.account_id, amount=Money.of("10.00", "EUR"), refunded_on=date(2026, 11, 4),
    )  # fmt: skip
    async with runtime.transaction() as session:
        await apply_refund(runtime, session, refund)
        credit_note_id = await issue_credit_note(runtime, session, victim, invoice_id, "key-1", reason="goodwill", lines=None, amount=Decimal("5.00"))
        await documents_repo.store(
            session, [{"owner_kind": "invoice", "owner_id": invoice_id, "seller_id": victim, "rendered_at": now, "format": "pdf", "content": b"%PDF-victim"}]
        )
        token = await share(session, victim, "invoice", invoice_id, "pdf", now)
    before = await victims_rows(runtime, victim, invoice_id)
    assert before["invoice"][0]["amount_paid"] == total - Decimal("10.00") and before["credit_note"] != [] and before["document_share"] != []

    async with runtime.transaction() as session:
        # Reads with the attacker's tenant and the victim's ids: nothing.
        assert await invoice_repo.get_invoice(session, attacker, invoice_id) is None
        assert await invoice_repo.lock_invoice(session, attacker, invoice_id) is None
        assert await invoice_repo.find_for_period(session, attacker, buyer.account_id, OCT_START, OCT_END) is None
        listed = await invoice_repo.list_invoices(
            session, attacker, buyer_account_id=buyer.account_id, status=None, period_from=None, period_until=None, before_seq=None, limit=10
        )
        assert listed == []
        assert await invoice_repo.issued_among(session, [attacker, victim], [invoice_id, "in-nobody"]) == set()
        assert await invoice_repo.get_payment(session, attacker, paid.payment_id) is None
        assert await invoice_repo.refund_recorded(session, attacker, "rf-1") is False
        assert await invoice_repo.refunded_on_payment(session, attacker, paid.payment_id) == 0
        assert await credit_repo.get(session, attacker, credit_note_id) is None
        assert await credit_repo.find_by_key(session, attacker, "key-1") is None
        assert await credit_repo.for_invoice(session, attacker, invoice_id) == []
        assert await credit_repo.credited_per_line(session, attacker, invoice_id) == {}
        assert await documents_repo.get(session, attacker, "invoice", invoice_id, "pdf") is None
        assert await documents_repo.stored(session, attacker, "invoice", invoice_id, "pdf") is None
        assert await tokens_of(session, attacker, "invoice", invoice_id) == {}
        assert await seller_repo.get(session, attacker) is None
        assert await comparison_repo.previous_invoice(session, attacker, buyer.account_id, date(2026, 12, 1)) is None
        assert await tax_repo.oss_bases(session, attacker, date(2026, 1, 1), date(2027, 1, 1)) == []
        # Writes with the attacker's tenant and the victim's ids: no row of the victim's changes.
        await invoice_repo.record_paid(session, attacker, invoice_id, Decimal("0"), paid_on=date(2026, 11, 5))
        await invoice_repo.record_credit(session, attacker, invoice_id, Decimal("0"), status="void", paid_on=None, voided_on=date(2026, 11, 5))
        await invoice_repo.record_refund(session, attacker, invoice_id, Decimal("0"), reopen=True)
        await numbering_repo.set_last(session, attacker, 999)
        with pytest.raises(NoResultFound):  # the victim's link is neither deleted nor handed out
            await rotate(session, attacker, "invoice", invoice_id, ("pdf",), now)
        # Without a tenant the queries refuse to run.
        for empty in ("", None):
            with pytest.raises(TenantRequired):
                await invoice_repo.get_payment(session, empty, paid.payment_id)  # type: ignore[arg-type]  # no tenant, on purpose
            with pytest.raises(TenantRequired):
                await tokens_of(session, empty, "invoice", invoice_id)  # type: ignore[arg-type]  # no tenant, on purpose

    assert await victims_rows(runtime, victim, invoice_id) == before
    async with runtime.sessions() as session:
        assert (await invoice_repo.get_invoice(session, victim, invoice_id)).amount_paid == total - Decimal("10.00")
        assert (await invoice_repo.get_payment(session, victim, paid.payment_id)).invoice_id == invoice_id
        assert await invoice_repo.refund_recorded(session, victim, "rf-1") is True
        assert await invoice_repo.refunded_on_payment(session, victim, paid.payment_id) == Decimal("10.00")
        assert await invoice_repo.issued_among(session, [attacker, victim], [invoice_id, invoice_id]) == {invoice_id}
        assert [r.credit_note_id for r in await credit_repo.for_invoice(session, victim, invoice_id)] == [credit_note_id]
        assert sum((await credit_repo.credited_per_line(session, victim, invoice_id)).values()) == Decimal("5.00")
        assert await documents_repo.stored(session, victim, "invoice", invoice_id, "pdf") == (before["invoice"][0]["number"], b"%PDF-victim")
        assert await documents_repo.get(session, victim, "invoice", invoice_id, "pdf") == b"%PDF-victim"
        links = {r["format"]: r["token"] for r in before["document_share"] if r["owner_id"] == invoice_id}
        assert links["pdf"] == token
        assert await tokens_of(session, victim, "invoice", invoice_id) == links
        assert (await seller_repo.get(session, victim)).name == "Victim Seller"


async def victims_rows(runtime: ServiceRuntime[Settings], victim: str, invoice_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the victim's in the tables the attacker's calls above touch."""
    rows: dict[str, list[dict[str, Any]]] = {}
    async with runtime.sessions() as session:
        for table in ("invoice", "payment", "refund", "credit_note", "document", "document_share", "invoice_number_counter", "seller_settings"):
            result = await session.execute(text(f"SELECT * FROM invoicing.{table} WHERE seller_id = :s ORDER BY 1"), {"s": victim})
            rows[table] = [dict(r._mapping) for r in result]
    assert [r["invoice_id"] for r in rows["invoice"]] == [invoice_id]
    return rows
