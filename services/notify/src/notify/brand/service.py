"""Brands: one per seller (tenant); defaults apply until the seller sets its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing_events import SellerPaymentAccountChanged
from billing_runtime.errors import BillingError
from notify.brand import repository as repo
from notify.brand.models import Brand, PaymentAccount
from notify.brand.schemas import DEFAULT_COLOR, BrandIn, BrandOut

OWNER = "invoicing's seller profile (PUT /v1/seller on invoicing: iban, bic, bank_account_name)"


class BankDetailsOwnedByInvoicing(BillingError):
    status_code = 422
    code = "bank_details_owned_by_invoicing"


@dataclass(frozen=True)
class EffectiveBrand:
    """The brand a message is rendered and sent in, defaults filled in."""

    sender_name: str
    sender_email: str
    logo_url: str | None
    primary_color: str
    footer: str | None
    support_email: str | None = None
    support_phone: str | None = None
    portal_url: str | None = None
    bank_account_name: str | None = None
    iban: str | None = None
    bic: str | None = None

    @property
    def iban_printed(self) -> str | None:
        """The IBAN in groups of four, as printed on paper."""
        return " ".join(self.iban[i : i + 4] for i in range(0, len(self.iban), 4)) if self.iban else None

    @property
    def contact(self) -> str:
        """Whom to ask: the support address (and phone), else the sender's address."""
        address = self.support_email or self.sender_email
        return f"{address} or {self.support_phone}" if self.support_phone else address


def _bank(brand: Brand | None, account: PaymentAccount | None) -> dict[str, str | None]:
    """The bank account the mails show: invoicing's, once it announced one; else the brand's own
    columns from before (legacy, kept as they were)."""
    if account is not None:
        return {"bank_account_name": account.account_name, "iban": account.iban, "bic": account.bic, "bank_details_source": "invoicing"}
    legacy = brand is not None and brand.iban is not None
    return {
        "bank_account_name": brand.bank_account_name if brand else None,
        "iban": brand.iban if brand else None,
        "bic": brand.bic if brand else None,
        "bank_details_source": "brand" if legacy else None,
    }


async def get_brand(session: AsyncSession, tenant: str) -> BrandOut:
    """The seller's brand as stored, or the defaults (sender name = tenant) if unset; the bank
    account as invoicing announced it."""
    brand, account = await repo.get(session, tenant), await repo.get_account(session, tenant)
    if brand is None:
        return BrandOut(
            tenant=tenant,
            sender_name=tenant,
            sender_email=None,
            logo_url=None,
            primary_color=DEFAULT_COLOR,
            footer=None,
            configured=False,
            updated_at=None,
            **_bank(None, account),
        )
    return BrandOut(**(brand.model_dump() | _bank(brand, account)), configured=True)


async def put_brand(session: AsyncSession, tenant: str, brand: BrandIn, at: datetime) -> BrandOut:
    """Replace the seller's brand. Putting the same body again leaves the same brand. The bank
    account is not the brand's: a body may carry it only as GET shows it (unchanged), and the
    columns kept from before are left as they are."""
    current, account = await repo.get(session, tenant), await repo.get_account(session, tenant)
    shown = _bank(current, account)
    given = {"bank_account_name": brand.bank_account_name, "iban": brand.iban, "bic": brand.bic}
    changed = sorted(k for k, v in given.items() if v is not None and v != shown[k])
    if changed:
        raise BankDetailsOwnedByInvoicing(
            f"the bank account ({', '.join(changed)}) is kept in {OWNER}, which the invoice PDF prints and these emails show: change it there",
            field=changed[0],
            owner="invoicing",
        )
    values = brand.model_dump() | {
        "bank_account_name": current.bank_account_name if current else None,
        "iban": current.iban if current else None,
        "bic": current.bic if current else None,
    }
    stored = await repo.put(session, tenant, values, at)
    return BrandOut(**(stored.model_dump() | _bank(stored, account)), configured=True)


async def record_payment_account(session: AsyncSession, tenant: str, changed: SellerPaymentAccountChanged) -> bool:
    """Invoicing's announcement of the seller's bank account (the latest version stays)."""
    if changed.seller_id != tenant:
        return False  # a seller announces its own account only
    account = PaymentAccount(tenant=tenant, account_name=changed.account_name, iban=changed.iban, bic=changed.bic, updated_at=changed.updated_at)
    return await repo.put_account(session, account)


async def effective_brand(session: AsyncSession, tenant: str, *, seller_name: str | None, default_sender_email: str) -> EffectiveBrand:
    """The brand to send in."""
    brand, account = await repo.get(session, tenant), await repo.get_account(session, tenant)
    return effective(brand, tenant, seller_name=seller_name, default_sender_email=default_sender_email, account=account)


def effective(brand: Brand | None, tenant: str, *, seller_name: str | None, default_sender_email: str, account: PaymentAccount | None = None) -> EffectiveBrand:
    """The stored brand with defaults filled in, and the bank account invoicing announced (else
    the brand's own from before). Without a stored brand the seller's own name (from the event)
    reads better in a From header than the tenant slug, so it is preferred when known."""
    bank = _bank(brand, account)
    if brand is None:
        return EffectiveBrand(
            seller_name or tenant,
            default_sender_email,
            None,
            DEFAULT_COLOR,
            None,
            bank_account_name=bank["bank_account_name"],
            iban=bank["iban"],
            bic=bank["bic"],
        )
    return EffectiveBrand(
        sender_name=brand.sender_name,
        sender_email=brand.sender_email or default_sender_email,
        logo_url=brand.logo_url,
        primary_color=brand.primary_color,
        footer=brand.footer,
        support_email=brand.support_email,
        support_phone=brand.support_phone,
        portal_url=brand.portal_url,
        bank_account_name=bank["bank_account_name"],
        iban=bank["iban"],
        bic=bank["bic"],
    )
