"""Seller settings and the due-date rule (BILLING-RULES §1)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import Address, CloudEvent, Party, SellerPaymentAccountChanged, derived_event_id, new_event
from billing_runtime.service import ServiceRuntime
from invoicing.config import Settings
from invoicing.seller import repository as repo
from invoicing.seller.schemas import DayOfNextMonth, DueRule, NetDays, SellerSettingsIn, SellerSettingsOut

PAYMENT_ACCOUNTS_ANNOUNCED = Counter(
    "billing_seller_payment_accounts_announced_total", "Changes of a seller's bank account announced to notify (SellerPaymentAccountChanged)"
)


@dataclass(frozen=True)
class Seller:
    seller_id: str
    name: str
    country: str | None
    vat_id: str | None
    invoice_prefix: str
    due_rule: DueRule
    email: str | None
    configured: bool
    address: Address | None = None
    registration: str | None = None
    brand_color: str | None = None
    logo: str | None = None
    iban: str | None = None
    bic: str | None = None
    sepa_creditor_id: str | None = None
    bank_account_name: str | None = None

    def party(self) -> Party:
        return Party(
            account_id=self.seller_id,
            name=self.name,
            country=self.country,
            vat_id=self.vat_id,
            email=self.email,
            address=self.address,
            business=True if self.configured else None,
            registration=self.registration,
        )

    def out(self) -> SellerSettingsOut:
        return SellerSettingsOut.model_validate(self, from_attributes=True)


def default_prefix(seller_id: str) -> str:
    """The seller id's letters and digits, upper-cased, at most 10 ("northwind-it" → "NORTHWINDI")."""
    return re.sub(r"[^A-Z0-9]", "", seller_id.upper())[:10] or "INV"


def due_date(issued_on: date, rule: DueRule) -> date:
    """The due date of an invoice dated `issued_on`.

    `net_days` N: N days after the invoice date. `day_of_next_month` D: day D of the month after
    the invoice month, or that month's last day when it is shorter (D = 31 in February).
    """
    if isinstance(rule, NetDays):
        return issued_on + timedelta(days=rule.net_days)
    year, month = (issued_on.year + 1, 1) if issued_on.month == 12 else (issued_on.year, issued_on.month + 1)
    return date(year, month, min(rule.day_of_next_month, calendar.monthrange(year, month)[1]))


def _default_net_days(runtime: ServiceRuntime) -> int:
    settings = runtime.settings
    return settings.default_due_net_days if isinstance(settings, Settings) else 30


def _rule_from_row(kind: str, value: int) -> DueRule:
    return NetDays(net_days=value) if kind == "net_days" else DayOfNextMonth(day_of_next_month=value)


def _from_row(row: Any) -> Seller:
    return Seller(
        seller_id=row.seller_id,
        name=row.name,
        country=row.country,
        vat_id=row.vat_id,
        invoice_prefix=row.invoice_prefix,
        due_rule=_rule_from_row(row.due_rule_kind, row.due_rule_value),
        email=row.email,
        configured=True,
        address=Address.model_validate(row.address) if row.address else None,
        registration=row.registration,
        brand_color=row.brand_color,
        logo=row.logo,
        iban=row.iban,
        bic=row.bic,
        sepa_creditor_id=row.sepa_creditor_id,
        bank_account_name=row.bank_account_name,
    )


async def find_seller(session: AsyncSession, seller_id: str) -> Seller | None:
    """The seller's saved settings, or None while it has never saved any."""
    row = await repo.get(session, seller_id)
    return _from_row(row) if row is not None else None


async def find_sellers(session: AsyncSession, seller_ids: list[str]) -> dict[str, Seller]:
    """The saved settings of those of `seller_ids` that have any, by seller id: one query."""
    return {row.seller_id: _from_row(row) for row in await repo.get_many(session, sorted(set(seller_ids)))}


async def get_seller(runtime: ServiceRuntime, session: AsyncSession, seller_id: str) -> Seller:
    """The seller's settings, or the defaults while it has never saved any."""
    row = await repo.get(session, seller_id)
    if row is not None:
        return _from_row(row)
    return default_seller(runtime, seller_id)


def default_seller(runtime: ServiceRuntime, seller_id: str) -> Seller:
    """A seller that has never saved settings: named by its id, no country, default prefix and due rule."""
    return Seller(
        seller_id=seller_id,
        name=seller_id,
        country=None,
        vat_id=None,
        invoice_prefix=default_prefix(seller_id),
        due_rule=NetDays(net_days=_default_net_days(runtime)),
        email=None,
        configured=False,
    )


def payment_account_changed(row: Any, source: str, *, derived: bool = False) -> CloudEvent[SellerPaymentAccountChanged]:
    """The seller's bank account as its profile row has it, for notify's how-to-pay. `derived`:
    the event id from the seller and the row's `updated_at` (the migration that announces the
    profiles stored before the event existed, run again, adds nothing); else a new id, as each
    change is one (a PUT that changes nothing announces nothing)."""
    data = SellerPaymentAccountChanged(
        seller_id=row.seller_id,
        account_name=(row.bank_account_name or row.name) if row.iban else None,
        iban=row.iban,
        bic=row.bic if row.iban else None,
        updated_at=row.updated_at,
    )
    event_id = derived_event_id("seller_payment_account", row.seller_id, row.updated_at.isoformat()) if derived else None
    return new_event(data, source=source, tenant=row.seller_id, event_id=event_id, subject=row.seller_id, time=row.updated_at)


def _payment_account(row: Any) -> tuple[str | None, str | None, str | None]:
    return ((row.bank_account_name or row.name) if row.iban else None, row.iban, row.bic if row.iban else None)


async def put_seller(runtime: ServiceRuntime, session: AsyncSession, seller_id: str, body: SellerSettingsIn) -> Seller:
    """Replace the seller's settings. They apply to invoices issued from now on; issued ones keep
    theirs. A changed bank account (holder, IBAN, BIC) is announced in the same transaction
    (SellerPaymentAccountChanged), so the emails' how-to-pay shows what the PDF prints."""
    kind, value = ("net_days", body.due_rule.net_days) if isinstance(body.due_rule, NetDays) else ("day_of_next_month", body.due_rule.day_of_next_month)
    before = await repo.get(session, seller_id)
    row = await repo.upsert(
        session,
        {
            "seller_id": seller_id,
            "name": body.name,
            "country": body.country,
            "vat_id": body.vat_id,
            "invoice_prefix": body.invoice_prefix,
            "due_rule_kind": kind,
            "due_rule_value": value,
            "email": body.email,
            "address": body.address.model_dump(mode="json") if body.address else None,
            "registration": body.registration,
            "brand_color": body.brand_color,
            "logo": body.logo,
            "iban": body.iban,
            "bic": body.bic,
            "bank_account_name": body.bank_account_name,
            "sepa_creditor_id": body.sepa_creditor_id,
            "updated_at": runtime.clock.now(),
        },
    )
    if _payment_account(row) != (_payment_account(before) if before is not None else (None, None, None)):
        await runtime.outbox.add(session, payment_account_changed(row, runtime.name))
        PAYMENT_ACCOUNTS_ANNOUNCED.inc()
    return _from_row(row)
