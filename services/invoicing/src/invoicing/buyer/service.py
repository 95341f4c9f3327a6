"""Buyer details for invoices: the latest revision of each customer wins, whatever the arrival order.

A buyer's VAT number is checked when it arrives (python-stdnum offline; VIES over HTTP when
`INVOICING_VIES_URL` is set), and the outcome is stored as evidence beside the buyer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import Address, CustomerUpserted, Party
from billing_runtime.service import ServiceRuntime
from invoicing.buyer import repository as repo
from invoicing.config import Settings
from invoicing.tax.engine import BuyerTax
from invoicing.tax.rates import EU_MEMBER_STATES
from invoicing.tax.vat_id import check_vat_id
from invoicing.tax.vies import check_vies

_CHECK_NAMESPACE = uuid.UUID("5b7f3f0e-4f52-5d2b-9d0c-2a1c7f6e9b11")


@dataclass(frozen=True)
class BuyerInfo:
    """A buyer as invoicing needs it: the party printed on the invoice and the facts that decide its tax."""

    party: Party
    tax: BuyerTax
    flags: tuple[str, ...] = ()


async def record_customer(runtime: ServiceRuntime, session: AsyncSession, customer: CustomerUpserted) -> bool:
    """Keep the customer's details if this revision is newer than the stored one, with the outcome
    of its VAT number check."""
    stored = await repo.get(session, customer.partner_id, customer.account_id)
    if stored is not None and stored.revision >= customer.revision:
        return False
    vat_id, vat_valid, vat_note = customer.vat_id, False, None
    if customer.vat_id:
        vat_id, vat_valid, vat_note = await _check_vat(runtime, session, customer)
    return await repo.upsert_if_newer(
        session,
        {
            "account_id": customer.account_id,
            "partner_id": customer.partner_id,
            "external_id": customer.external_id,
            "name": customer.name,
            "billing_email": customer.billing_email,
            "country": customer.country,
            "currency": customer.currency,
            "business": customer.business,
            "vat_id": vat_id,
            "revision": customer.revision,
            "address": customer.address.model_dump(mode="json") if customer.address else None,
            "tax_exempt": customer.tax_exempt,
            "vat_id_valid": vat_valid,
            "vat_id_note": vat_note,
        },
    )


async def _check_vat(runtime: ServiceRuntime, session: AsyncSession, customer: CustomerUpserted) -> tuple[str, bool, str | None]:
    """(the VAT id as printed: normalised when it is well formed, its validity, why not)."""
    assert customer.vat_id is not None
    checked = check_vat_id(customer.vat_id, customer.country)
    settings = runtime.settings if isinstance(runtime.settings, Settings) else None
    vies = None
    if checked.valid and settings is not None and settings.vies_url and customer.country in EU_MEMBER_STATES:
        vies = await check_vies(settings.vies_url, checked.vat_id, timeout=settings.vies_timeout_seconds, requester_vat_id=settings.vies_requester_vat_id)
    valid = checked.valid and (vies is None or vies.outcome != "invalid")
    note = checked.reason if not checked.valid else ("VIES: not a valid VAT number" if vies is not None and vies.outcome == "invalid" else None)
    if vies is not None and vies.outcome == "unavailable":
        note = "VIES unavailable: accepted on its checksum"
    check_id = str(uuid.uuid5(_CHECK_NAMESPACE, f"{customer.account_id}:{customer.revision}:{checked.vat_id}"))
    await repo.insert_vat_check(
        session,
        {
            "check_id": check_id,
            "account_id": customer.account_id,
            "revision": customer.revision,
            "vat_id": checked.vat_id,
            "checksum_valid": checked.valid,
            "checksum_reason": checked.reason,
            "vies_outcome": vies.outcome if vies else None,
            "vies_request_identifier": vies.request_identifier if vies else None,
            "vies_response": vies.response if vies else None,
            "checked_at": runtime.clock.now(),
        },
    )
    return (checked.vat_id if checked.valid else customer.vat_id), valid, note


def _party(row: Any) -> Party:
    address = Address.model_validate(row.address) if row.address else None
    return Party(
        account_id=row.account_id, name=row.name, country=row.country, vat_id=row.vat_id, email=row.billing_email, address=address, business=row.business
    )


async def buyer_info(session: AsyncSession, tenant: str, account_id: str) -> BuyerInfo | None:
    """What we know of `tenant`'s customer announced by CustomerUpserted, or None (another tenant's too)."""
    row = await repo.get(session, tenant, account_id)
    return _info(row) if row is not None else None


async def buyer_infos(session: AsyncSession, keys: list[tuple[str, str]]) -> dict[tuple[str, str], BuyerInfo]:
    """What we know of each of these customers, by (tenant, account id) (those never announced, or
    another tenant's, are missing): one query."""
    return {(row.partner_id, row.account_id): _info(row) for row in await repo.get_many(session, sorted(set(keys)))}


def _info(row: Any) -> BuyerInfo:
    flags = ("buyer_vat_id_invalid",) if row.vat_id and not row.vat_id_valid and row.vat_id_note and not row.vat_id_note.startswith("VIES unavailable") else ()
    tax = BuyerTax(country=row.country, business=row.business, vat_id_valid=bool(row.vat_id and row.vat_id_valid), tax_exempt=row.tax_exempt)
    return BuyerInfo(_party(row), tax, flags)


async def buyer_party(session: AsyncSession, tenant: str, account_id: str) -> Party:
    """The buyer as it appears on `tenant`'s invoice. A buyer never announced (a customer event
    still in flight) is named by its account id, country unknown."""
    info = await buyer_info(session, tenant, account_id)
    return info.party if info else Party(account_id=account_id, name=account_id)


async def vat_checks(session: AsyncSession, tenant: str, account_id: str) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in await repo.vat_checks(session, tenant, account_id)]
