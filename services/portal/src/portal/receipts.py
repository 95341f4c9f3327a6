"""Payments received, as an end customer sees them: a receipt per payment
(`/p/<partner>/payments/<id>`) with the invoice it paid, from payments' public API with the
session's restricted key (another account's payment is the service's 404). The billing history
lists them beside the invoices and credit notes (`web.billing_history`)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from portal import web

router = APIRouter(include_in_schema=False)

METHODS = {"card": "Card", "direct_debit": "Direct Debit", "bank_transfer": "Bank transfer"}


def source(payment: dict[str, Any]) -> dict[str, str] | None:
    """Where the money came from, beyond the method: the bank statement line it was matched from
    (`stmt:<statement>:<line>`), or the account's credit."""
    parts = payment["payment_id"].split(":")
    if parts[0] == "stmt" and len(parts) >= 3:
        return {"kind": "statement", "statement": ":".join(parts[1:-1]), "line": parts[-1]}
    if payment.get("provider") == "account_credit":
        return {"kind": "credit"}
    return None


@router.get("/p/{partner}/payments/{payment_id}")
async def receipt(request: Request, partner: str, payment_id: str) -> Response:
    who = await web._signed_in(request, partner)
    web._require(not who.user.is_partner)
    services = web._services(request)
    payment = await services.json("payments", f"/v1/payments/{web._check_id(payment_id)}", who.key)
    invoice_path = f"/v1/invoices/{web._check_id(payment['invoice_id'])}"
    brand, invoice = await asyncio.gather(web._load_brand(request, who), services.json("invoicing", invoice_path, who.key))
    return web.render(request, partner, "receipt.html", who=who, brand=brand, payment=payment, invoice=invoice, methods=METHODS, source=source(payment))
