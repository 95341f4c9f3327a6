"""Project work (seed 001, BILLING-RULES §7): time and materials arrive as usage of a product of
kind `project_work`. The bill run bills them with the period's other charges; entering them also
announces them at once, priced as that bill run will price them (`ProjectWorkRecorded`), so that
invoicing sends the buyer its informational statement ("no payment is required") the same day.

Seed 001's case is the distributor's technicians working for a partner's end customer: the
statement goes from the distributor to the partner at the wholesale price, and the charge lands in
that end customer's section of the partner's next invoice (the buyer is the partner's billing account
at the distributor, as on that invoice). Work the distributor posts on a partner's own account is the
partner's own project work. A seller without a distributor above it bills its own customer at its
retail price."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import Money, ProjectWorkRecorded, UsageRecorded, account_id
from billing_runtime.telemetry import start_at_zero
from rating.catalogue import repository as catalogue_repo
from rating.catalogue.service import price_book, seller_terms
from rating.period import Period
from rating.subscription import repository as repo

ANNOUNCED = Counter("billing_project_work_recorded_total", "Project-work entries announced for a statement, by outcome", ["outcome"])
start_at_zero(ANNOUNCED, ("announced", "unpriced"))


async def announce(session: AsyncSession, records: Sequence[UsageRecorded], distributor_id: str | None) -> list[ProjectWorkRecorded]:
    """The project-work entries among a batch of usage, priced. One query for any batch (which of
    its products are project work); only a batch that has some reads the price books."""
    sellers = {r.partner_id for r in records} | ({distributor_id} if distributor_id else set())
    product = catalogue_repo.PRODUCT
    query = select(product.c.code).where(product.c.seller_id.in_(sorted(sellers)), product.c.kind == "project_work")
    codes = set((await session.execute(query)).scalars())
    entries = [r for r in records if r.product_code in codes]
    by_seller: dict[str, list[UsageRecorded]] = defaultdict(list)
    for r in {(r.partner_id, r.record_id): r for r in entries}.values():
        by_seller[r.partner_id].append(r)
    announced: list[ProjectWorkRecorded] = []
    for seller_id, mine in by_seller.items():
        book = await price_book(session, seller_id, distributor_id)
        terms = await seller_terms(session, seller_id)
        buyers = {b.account_id: b for b in await repo.buyers(session, seller_id)}
        wholesale = distributor_id is not None and seller_id != distributor_id
        # Wholesale, the statement goes to the partner's billing account at the distributor (the
        # buyer of its wholesale invoice), in that account's currency.
        partner_account = account_id(distributor_id, seller_id) if wholesale and distributor_id else None
        at_distributor = await repo.buyers(session, distributor_id, partner_account) if partner_account and distributor_id else []
        for record in mine:
            info = book.products.get(record.product_code)
            buyer = buyers.get(record.account_id)
            if wholesale:
                currency = at_distributor[0].currency if at_distributor else None
            else:
                currency = (buyer.currency if buyer is not None else None) or terms.currency
            if info is None or info.kind != "project_work" or currency is None:
                ANNOUNCED.labels("unpriced").inc()  # no price, or no account at the distributor: nothing to bill either
                continue
            performed_on = record.occurred_at.astimezone(terms.tz).date()
            period = Period.containing(performed_on, terms.tz)
            price = book.wholesale(record.product_code, period, currency) if wholesale else book.retail(record.product_code, period, currency)
            if price is None or price.currency != currency:
                ANNOUNCED.labels("unpriced").inc()  # the bill run reports it unpriced; no statement of a guess
                continue
            segments = price.model.segments(record.quantity, record.cost.amount if record.cost else None, price.base)
            amount = sum((s.amount for s in segments), Decimal(0))
            unit_price = segments[0].unit_price if len(segments) == 1 else (amount / record.quantity if record.quantity else amount)
            announced.append(
                ProjectWorkRecorded(
                    entry_id=record.record_id,
                    seller_id=distributor_id if wholesale and distributor_id else seller_id,
                    buyer_account_id=partner_account if partner_account else record.account_id,
                    # With a distributor, its invoices are the wholesale ones (also for work it posts on a partner's own account).
                    tier="wholesale" if distributor_id else "retail",
                    end_customer_id=record.account_id,
                    end_customer_name=buyer.name if buyer is not None else None,
                    product_code=record.product_code,
                    description=info.name,
                    category=info.category,
                    unit=info.unit,
                    performed_on=performed_on,
                    quantity=record.quantity,
                    unit_price=Money.of(unit_price, currency),
                    amount=Money.of(amount, currency),
                    billed_with_period_start=period.start,
                    billed_with_period_end=period.end,
                )
            )
            ANNOUNCED.labels("announced").inc()
    return announced
