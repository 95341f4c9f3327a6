"""The bill-run scheduler: on each seller's issue day (BILLING-RULES §1: by default the first
business day after the period, in the seller's country and time zone) it closes the period that
just ended, for every seller that asked for scheduled runs. Before that, on the first business day
after the period, it announces the distributor's period as rated so far (ChargesRated per partner
account), from which invoicing sends each partner its comparison report ahead of the invoice
(seed 001), whenever the bill run itself comes. `now()` is the runtime's injectable
clock, so tests move time instead of waiting for it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from opentelemetry import trace
from prometheus_client import Counter, Gauge

from billing_runtime.service import ServiceRuntime
from rating.billrun import repository as repo
from rating.billrun.service import announce_charges, bill_run_id, close_period
from rating.catalogue import repository as catalogue
from rating.catalogue.service import seller_terms
from rating.period import Period

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)
SCHEDULED = Counter("billing_scheduled_bill_runs_total", "Bill runs the scheduler started, by outcome", ["outcome"])
OVERDUE = Gauge("billing_bill_runs_overdue", "Scheduled sellers past their issue day whose last period has no bill run (at the last pass)")
ANNOUNCED = Counter("billing_scheduled_charge_announcements_total", "Periods the scheduler announced ahead of their bill run, by outcome", ["outcome"])
for _outcome in ("created", "failed"):
    SCHEDULED.labels(_outcome)
    ANNOUNCED.labels(_outcome)


async def announce_due(runtime: ServiceRuntime, distributor_id: str, now: datetime) -> int:
    """From the first business day after the distributor's last period (its country's calendar, its
    time zone) to the day its bill run is due, while the run has not come: announce the period's wholesale charges, once.
    Returns the partner accounts announced now."""
    async with runtime.transaction() as session:
        terms = await seller_terms(session, distributor_id)
        period = Period.of_instant(now, terms.tz).previous()
        today = now.astimezone(terms.tz).date()
        # The window is the first business day up to the run's own day (the run closes right after,
        # in the same pass): a scheduler started late does not announce a period long past.
        if not terms.calendar.first_business_day_after(period.end) <= today <= terms.issue_date(period):
            return 0
        if await repo.get_run(session, distributor_id, bill_run_id(distributor_id, period)) is not None:
            return 0  # the run came first: the report goes with the invoice
        return await announce_charges(runtime, session, distributor_id, period, terms, today)


async def run_due(runtime: ServiceRuntime, distributor_id: str | None, now: datetime | None = None) -> list[str]:
    """Close every scheduled seller's last period whose issue day has come. Returns the run ids
    created now (a run already there is left alone: its identity is (seller, period))."""
    now = now or runtime.clock.now()
    created: list[str] = []
    overdue = 0
    with tracer.start_as_current_span("scheduled_bill_runs") as span:
        if distributor_id is not None:
            # Ahead of the closes below: a run due today too comes after the announcement.
            try:
                if await announce_due(runtime, distributor_id, now):
                    ANNOUNCED.labels("created").inc()
            except Exception:
                ANNOUNCED.labels("failed").inc()
                log.exception("announcing the charges of %s failed", distributor_id)
        async with runtime.sessions() as session:
            sellers = [row.seller_id for row in await catalogue.scheduled_sellers(session)]
        for seller_id in sellers:
            # One seller's failure (logged, counted, overdue) does not hold back the others.
            try:
                async with runtime.transaction() as session:
                    terms = await seller_terms(session, seller_id)
                    period = Period.of_instant(now, terms.tz).previous()
                    if now.astimezone(terms.tz).date() < terms.issue_date(period):
                        continue
                    if await repo.get_run(session, seller_id, bill_run_id(seller_id, period)) is not None:
                        continue
                    run = await close_period(runtime, session, seller_id, period.label, distributor_id)
            except Exception:
                overdue += 1
                SCHEDULED.labels("failed").inc()
                log.exception("scheduled bill run of %s failed", seller_id)
                continue
            if run.created:
                created.append(run.bill_run_id)
                SCHEDULED.labels("created").inc()
        OVERDUE.set(overdue)
        span.set_attributes({"billing.sellers": len(sellers), "billing.runs_created": len(created), "billing.runs_overdue": overdue})
    return created


def scheduled_runs(runtime: ServiceRuntime, distributor_id: str | None) -> Callable[[], Awaitable[None]]:
    """One pass of the scheduler, for `runtime.every`: a failed pass (logged and counted by the
    runtime) is also a failed scheduled run here, and retried on the next tick."""

    async def run() -> None:
        try:
            await run_due(runtime, distributor_id)
        except Exception:
            SCHEDULED.labels("failed").inc()
            raise

    return run
