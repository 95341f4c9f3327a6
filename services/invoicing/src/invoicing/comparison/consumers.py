"""Events in: rating's ChargesRated of the wholesale tier (a partner's period as rated on the first
business day after it, ahead of the bill run) becomes the partner's comparison report, sent then."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import ChargesRated, CloudEvent
from billing_runtime.service import Handlers, ServiceRuntime
from invoicing.comparison.service import create_report_ahead
from invoicing.config import Settings
from invoicing.invoice.service import invoice_id_for


async def on_charges_rated(runtime: ServiceRuntime[Settings], session: AsyncSession, event: CloudEvent[ChargesRated]) -> None:
    charges = event.data
    if charges.tier != "wholesale":
        return  # a retail buyer gets no comparison report (seed 001's is the partner's)
    invoice_id = invoice_id_for(charges.seller_id, charges.account_id, charges.period_start, charges.period_end)
    await create_report_ahead(runtime, session, charges, invoice_id)


HANDLERS: Handlers = {ChargesRated: on_charges_rated}
