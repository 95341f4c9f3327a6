"""Brands: one per seller (tenant); defaults apply until the seller sets its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from notify.brand import repository as repo
from notify.brand.models import Brand
from notify.brand.schemas import DEFAULT_COLOR, BrandIn, BrandOut


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


async def get_brand(session: AsyncSession, tenant: str) -> BrandOut:
    """The seller's brand as stored, or the defaults (sender name = tenant) if unset."""
    brand = await repo.get(session, tenant)
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
        )
    return BrandOut(**brand.model_dump(), configured=True)


async def put_brand(session: AsyncSession, tenant: str, brand: BrandIn, at: datetime) -> BrandOut:
    """Replace the seller's brand. Putting the same body again leaves the same brand."""
    stored = await repo.put(session, tenant, brand.model_dump(), at)
    return BrandOut(**stored.model_dump(), configured=True)


async def effective_brand(session: AsyncSession, tenant: str, *, seller_name: str | None, default_sender_email: str) -> EffectiveBrand:
    """The brand to send in."""
    return effective(await repo.get(session, tenant), tenant, seller_name=seller_name, default_sender_email=default_sender_email)


def effective(brand: Brand | None, tenant: str, *, seller_name: str | None, default_sender_email: str) -> EffectiveBrand:
    """The stored brand with defaults filled in. Without a stored brand the seller's own name
    (from the event) reads better in a From header than the tenant slug, so it is preferred when known."""
    if brand is None:
        return EffectiveBrand(seller_name or tenant, default_sender_email, None, DEFAULT_COLOR, None)
    return EffectiveBrand(
        sender_name=brand.sender_name,
        sender_email=brand.sender_email or default_sender_email,
        logo_url=brand.logo_url,
        primary_color=brand.primary_color,
        footer=brand.footer,
        support_email=brand.support_email,
        support_phone=brand.support_phone,
        portal_url=brand.portal_url,
        bank_account_name=brand.bank_account_name,
        iban=brand.iban,
        bic=brand.bic,
    )
