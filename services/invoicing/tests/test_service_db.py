"""Service functions called directly against the real PostgreSQL: concurrency, ordering, edge cases."""

from __future__ import annotations

import asyncio
from datetime import date

from invoicing_testkit import customer, period_closed, rated
from sqlalchemy import text

from billing_events import account_id
from billing_runtime.service import ServiceRuntime
from invoicing.buyer.service import buyer_party, record_customer
from invoicing.config import Settings
from invoicing.invoice.service import issue_invoice


class Abort(Exception):
    """Raised inside a transaction after the invoice was issued, to roll it back."""


async def numbers(runtime: ServiceRuntime[Settings], seller: str) -> list[int]:
    async with runtime.sessions() as session:
        rows = await session.execute(text("SELECT seq FROM invoicing.invoice WHERE seller_id = :s ORDER BY seq"), {"s": seller})
        return [r.seq for r in rows]


async def test_concurrent_issues_never_skip_or_repeat_a_number(runtime: ServiceRuntime[Settings], tenant: str) -> None:
    buyers = [account_id(tenant, f"c-{i}") for i in range(20)]
    aborted = set(buyers[::4])  # 5 of the 20 roll back after taking their number

    async def issue(buyer: str) -> str | None:
        try:
            async with runtime.transaction() as session:
                invoice_id = await issue_invoice(runtime, session, period_closed(tenant, buyer, [rated("l1", "X", "1", "5.00")]))
                assert invoice_id is not None
                if buyer in aborted:
                    raise Abort
                return invoice_id
        except Abort:
            return None

    issued = await asyncio.gather(*(issue(b) for b in buyers))
    assert sum(1 for i in issued if i) == 15
    assert await numbers(runtime, tenant) == list(range(1, 16))

    # The rolled-back ones issue now, continuing the sequence; everyone twice more issues nothing.
    async def issue_again(buyer: str) -> str | None:
        async with runtime.transaction() as session:
            return await issue_invoice(runtime, session, period_closed(tenant, buyer, [rated("l1", "X", "1", "5.00")]))

    again = await asyncio.gather(*(issue_again(b) for b in buyers + buyers))
    assert sum(1 for i in again if i) == 5
    assert await numbers(runtime, tenant) == list(range(1, 21))


async def test_nothing_to_collect_is_settled_on_issue(runtime: ServiceRuntime[Settings], tenant: str) -> None:
    buyer = account_id(tenant, "c-free")
    closed = period_closed(tenant, buyer, [rated("l1", "TRIAL", "1", "0.00")], start=date(2026, 10, 1), end=date(2026, 10, 31))
    async with runtime.transaction() as session:
        invoice_id = await issue_invoice(runtime, session, closed)
    async with runtime.sessions() as session:
        row = (await session.execute(text("SELECT status, paid_on, total FROM invoicing.invoice WHERE invoice_id = :i"), {"i": invoice_id})).one()
        events = (await session.execute(text("SELECT event_type FROM invoicing.outbox WHERE key = :k ORDER BY id"), {"k": buyer.encode()})).scalars().all()
    assert (row.status, row.paid_on, str(row.total)) == ("paid", date(2026, 11, 2), "0.00")
    assert events == ["billing.invoice.issued.v1", "billing.invoice.settled.v1"]


async def test_latest_customer_revision_wins_whatever_the_order(runtime: ServiceRuntime[Settings], tenant: str) -> None:
    newer = customer(tenant, "c-1", "Contoso Dental LLC", country="IE", revision=2)
    older = customer(tenant, "c-1", "Contoso Dental", revision=1)
    async with runtime.transaction() as session:
        assert await record_customer(runtime, session, newer) is True
        assert await record_customer(runtime, session, older) is False
        assert await record_customer(runtime, session, newer) is False
    async with runtime.sessions() as session:
        party = await buyer_party(session, newer.partner_id, newer.account_id)
    assert (party.name, party.country, party.email) == ("Contoso Dental LLC", "IE", "ap@c-1.example")


async def test_two_concurrent_bill_runs_of_one_seller_stay_gapless(runtime: ServiceRuntime[Settings], tenant: str) -> None:
    """Two bill runs (say two consumer replicas after a rebalance, or a re-run) close the same
    periods at the same time, in different orders: every buyer gets one invoice, numbers 1..N."""
    buyers = [account_id(tenant, f"run-{i}") for i in range(24)]
    september = (date(2026, 9, 1), date(2026, 9, 30))

    async def bill_run(order: list[str]) -> int:
        issued = 0
        for buyer in order:
            for start, end in (september, (date(2026, 10, 1), date(2026, 10, 31))):
                async with runtime.transaction() as session:
                    closed = period_closed(tenant, buyer, [rated("l1", "X", "1", "5.00", start=start, end=end)], start=start, end=end)
                    issued += await issue_invoice(runtime, session, closed) is not None
        return issued

    counts = await asyncio.gather(bill_run(buyers), bill_run(list(reversed(buyers))), bill_run(buyers[1::2] + buyers[::2]))
    assert sum(counts) == 48
    assert await numbers(runtime, tenant) == list(range(1, 49))
