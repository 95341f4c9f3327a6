"""Tax HTTP: the seller's OSS return per quarter, and the evidence of a buyer's VAT number checks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from billing_events.money import money_str
from billing_runtime.api import Read, Runtime, Tenant
from billing_runtime.errors import NotFound
from invoicing.buyer import repository as buyer_repo
from invoicing.buyer.service import vat_checks
from invoicing.tax.schemas import OssReport, VatChecks
from invoicing.tax.service import oss_report, quarter_bounds

router = APIRouter(prefix="/v1", tags=["tax"])


@router.get("/tax/oss-report", dependencies=[Read], response_model=OssReport)
async def get_oss_report(
    tenant: Tenant,
    runtime: Runtime,
    quarter: str = Query(pattern=r"^[0-9]{4}-Q[1-4]$", description="e.g. 2026-Q4"),
) -> dict[str, Any]:
    """Taxable amount and VAT per member state and rate of the B2C supplies declared through the OSS."""
    year, q = int(quarter[:4]), int(quarter[-1])
    async with runtime.sessions() as session:
        rows = await oss_report(session, tenant, year, q)
    start, until = quarter_bounds(year, q)
    return {
        "seller_id": tenant,
        "quarter": quarter,
        "issued_from": start.isoformat(),
        "issued_until": until.isoformat(),
        "rows": [
            {
                "country": r.country,
                "rate": format(r.rate, "f"),
                "currency": r.currency,
                "taxable": money_str(r.taxable, r.currency),
                "tax": money_str(r.tax, r.currency),
                "invoices": r.invoices,
            }
            for r in rows
        ],
    }


@router.get("/buyers/{account_id}/vat-checks", dependencies=[Read], response_model=VatChecks)
async def get_vat_checks(account_id: str, tenant: Tenant, runtime: Runtime) -> dict[str, Any]:
    """Every check made of this buyer's VAT numbers: the checksum outcome and VIES's answer, kept as evidence."""
    async with runtime.sessions() as session:
        buyer = await buyer_repo.get(session, tenant, account_id)
        if buyer is None:
            raise NotFound(f"no buyer {account_id!r}", code="buyer_not_found")
        checks = await vat_checks(session, tenant, account_id)
    return {"account_id": account_id, "vat_id": buyer.vat_id, "vat_id_valid": buyer.vat_id_valid, "note": buyer.vat_id_note, "checks": checks}
