"""The billing profile an end customer keeps itself (the customer portal, with a key restricted to
its account): contact person and phone, billing email, postal address and VAT id. Saved as a new
revision of the customer the partner posted, through the same upsert, so `CustomerUpserted` tells
every consumer, the partner's system of record included (notify's webhooks). The customer's name,
country, currency and tax exemption stay the partner's to change; the address stays in the
customer's country. Refusals are 422 with a stable code and the field, and change nothing."""

from __future__ import annotations

import re
from typing import Any

from opentelemetry import trace
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum import get_cc_module
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError as StdnumError

from billing_runtime.errors import BillingError, NotFound
from billing_runtime.service import ServiceRuntime
from billing_runtime.telemetry import start_at_zero
from usage_ingest.ingest import repository as repo
from usage_ingest.ingest.service import upsert_customers

tracer = trace.get_tracer(__name__)
PROFILE_UPDATES = Counter("billing_customer_profile_updates_total", "Billing profiles saved by end customers, by outcome", ["outcome"])
start_at_zero(PROFILE_UPDATES, ("changed", "unchanged", "refused"))

EU = frozenset("AT BE BG CY CZ DE DK EE ES FI FR GR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK".split())
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ()./-]{3,28}[0-9]$")


class CustomerNotFound(NotFound):
    code = "customer_not_found"


class InvalidProfile(BillingError):
    status_code = 422
    code = "invalid_profile"


class BillingProfileIn(BaseModel):
    """The whole profile (a field left out or empty is cleared, the billing email excepted)."""

    model_config = ConfigDict(extra="forbid")

    billing_email: str = Field(max_length=254)
    contact_name: str | None = Field(default=None, max_length=200)
    contact_phone: str | None = Field(default=None, max_length=40)
    address_lines: list[str] = Field(default_factory=list, max_length=3)
    city: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, max_length=40)
    region: str | None = Field(default=None, max_length=200)
    vat_id: str | None = Field(default=None, max_length=40)


def _blank(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def check_vat_id(vat_id: str, country: str) -> str:
    """The VAT id in its compact form, if valid for the customer's country (python-stdnum: syntax
    and check digits, offline); else `invalid_vat_id`."""
    try:
        if country in EU or country == "EL":
            compact = eu_vat.compact(vat_id)
            prefix = "EL" if country == "GR" else country
            if not compact.startswith(prefix):
                compact = prefix + compact
            eu_vat.validate(compact)
            return str(compact)
        module = get_cc_module(country.lower(), "vat")
        if module is None:
            compact = re.sub(r"[\s.-]", "", vat_id).upper()
            if not re.fullmatch(r"[A-Z0-9]{4,20}", compact):
                raise InvalidProfile("a VAT id is 4 to 20 letters and digits", code="invalid_vat_id", field="vat_id")
            return compact
        return str(module.validate(vat_id))
    except StdnumError as exc:
        raise InvalidProfile(f"{vat_id!r} is not a valid VAT id for {country}: {exc}", code="invalid_vat_id", field="vat_id") from exc


def profile_view(row: Any) -> dict[str, Any]:
    address = row.address or {}
    return {
        "account_id": row.account_id,
        "customer_id": row.external_id,
        "name": row.name,
        "country": row.country,
        "currency": row.currency,
        "billing_email": row.billing_email,
        "contact_name": row.contact_name,
        "contact_phone": row.contact_phone,
        "address_lines": list(address.get("lines") or []),
        "city": address.get("city"),
        "postal_code": address.get("postal_code"),
        "region": address.get("region"),
        "vat_id": row.vat_id,
        "revision": row.revision,
        "updated_at": row.updated_at,
    }


async def get_profile(session: AsyncSession, tenant: str, account_id: str) -> dict[str, Any]:
    row = await repo.customer_by_account(session, tenant, account_id)
    if row is None:
        raise CustomerNotFound(f"no customer with account {account_id!r}")
    return profile_view(row)


async def save_profile(runtime: ServiceRuntime, session: AsyncSession, tenant: str, account_id: str, body: BillingProfileIn) -> dict[str, Any]:
    """Save the profile as the customer's next revision; the same profile again changes nothing
    (no new revision, no event)."""
    with tracer.start_as_current_span("save_billing_profile", attributes={"billing.tenant": tenant}):
        try:
            return await _save(runtime, session, tenant, account_id, body)
        except InvalidProfile:
            PROFILE_UPDATES.labels("refused").inc()
            raise


async def _save(runtime: ServiceRuntime, session: AsyncSession, tenant: str, account_id: str, body: BillingProfileIn) -> dict[str, Any]:
    row = await repo.customer_by_account(session, tenant, account_id, lock=True)
    if row is None:
        raise CustomerNotFound(f"no customer with account {account_id!r}")
    email = body.billing_email.strip()
    if not _EMAIL.match(email):
        raise InvalidProfile("the billing email needs to be an address like name@example.com", code="invalid_email", field="billing_email")
    phone = _blank(body.contact_phone)
    if phone is not None and not _PHONE.match(phone):
        raise InvalidProfile("a phone number is digits, spaces and + ( ) . / -", code="invalid_phone", field="contact_phone")
    vat_id = _blank(body.vat_id)
    if vat_id is not None:
        vat_id = check_vat_id(vat_id, row.country)
    lines = [line.strip() for line in body.address_lines if line.strip()]
    address_given = lines or _blank(body.city) or _blank(body.postal_code) or _blank(body.region)
    address = (
        {"lines": lines, "city": _blank(body.city), "postal_code": _blank(body.postal_code), "region": _blank(body.region), "country": row.country}
        if address_given
        else None
    )
    if address is not None and (not lines or address["city"] is None):
        raise InvalidProfile("an address needs a street line and a city", code="incomplete_address", field="address_lines" if not lines else "city")
    record = {
        "id": row.external_id,
        "name": row.name,
        "billing_email": email,
        "country": row.country,
        "currency": row.currency,
        "business": row.business,
        "vat_id": vat_id,
        "address": address,
        "tax_exempt": row.tax_exempt,
        "contact_name": _blank(body.contact_name),
        "contact_phone": phone,
    }
    result = (await upsert_customers(runtime, session, tenant, [record])).results[0]
    if result.status == "rejected":
        raise InvalidProfile(result.message or "the profile was refused", code=result.code or "invalid_profile", field=result.field)
    PROFILE_UPDATES.labels("changed" if result.status == "accepted" else "unchanged").inc()
    saved = await repo.customer_by_account(session, tenant, account_id)
    return {**profile_view(saved), "changed": result.status == "accepted"}
