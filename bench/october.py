"""What the invoicing benchmarks bill: October 2026's closed periods, as rating would publish them.

Not a benchmark: `bill_run.py` and `mail.py` import it (a script's own folder is on its path).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billing_events import Money, PeriodClosed, RatedLine, account_id

OCT_START, OCT_END = date(2026, 10, 1), date(2026, 10, 31)


def closed_period(bill_run_id: str, seller: str, i: int, lines: int) -> PeriodClosed:
    """Customer `c{i}` of `seller`: `lines` EUR subscriptions in advance, 1 to 7 of each at 20.60."""
    return PeriodClosed(
        bill_run_id=bill_run_id,
        seller_id=seller,
        buyer_account_id=account_id(seller, f"c{i}"),
        period_start=OCT_START,
        period_end=OCT_END,
        currency="EUR",
        lines=[
            RatedLine(
                line_id=f"c{i}-s{j}",
                product_code=f"SKU-{j:02d}",
                description=f"Subscription {j}",
                service_period_start=OCT_START,
                service_period_end=OCT_END,
                quantity=Decimal(1 + (i + j) % 7),
                unit_price=Money.of("20.60", "EUR"),
                amount=Money.of(Decimal(1 + (i + j) % 7) * Decimal("20.60"), "EUR"),
                quantity_rule="contracted",
                timing="advance",
            )
            for j in range(lines)
        ],
    )
