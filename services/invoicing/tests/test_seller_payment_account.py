"""The seller profile is the one place of a seller's bank account: a change is announced to notify
(SellerPaymentAccountChanged, in the PUT's transaction), so the emails show what the PDF prints."""

from __future__ import annotations

import json
from typing import Any

import httpx
from invoicing_testkit import put_seller
from sqlalchemy import text

from billing_runtime.service import ServiceRuntime


async def announced(runtime: ServiceRuntime, tenant: str) -> list[dict[str, Any]]:
    async with runtime.sessions() as session:
        rows = await session.execute(
            text("SELECT value FROM invoicing.outbox WHERE event_type = 'billing.seller.payment_account_changed.v1' AND key = :k ORDER BY id"),
            {"k": tenant.encode()},
        )
        return [json.loads(v) for (v,) in rows]


async def test_a_changed_bank_account_is_announced_once(client: httpx.AsyncClient, runtime: ServiceRuntime, tenant: str) -> None:
    await put_seller(client, tenant, name="Cloudy Ltd")
    assert await announced(runtime, tenant) == []  # no account: nothing to tell
    saved = await put_seller(client, tenant, name="Cloudy Ltd", iban="IE29 AIBK 9311 5212 3456 78", bic="AIBKIE2D")
    assert (saved["iban"], saved["bank_account_name"]) == ("IE29AIBK93115212345678", None)
    await put_seller(client, tenant, name="Cloudy Ltd", iban="IE29AIBK93115212345678", bic="AIBKIE2D", email="ap@cloudy.example")  # the same account
    await put_seller(client, tenant, name="Cloudy Ltd", iban="IE29AIBK93115212345678", bic="AIBKIE2D", bank_account_name="Cloudy Ltd Client Account")
    await put_seller(client, tenant, name="Cloudy Ltd")  # no more bank transfers
    events = await announced(runtime, tenant)
    assert [(e["seller_id"], e["account_name"], e["iban"], e["bic"]) for e in events] == [
        (tenant, "Cloudy Ltd", "IE29AIBK93115212345678", "AIBKIE2D"),
        (tenant, "Cloudy Ltd Client Account", "IE29AIBK93115212345678", "AIBKIE2D"),
        (tenant, None, None, None),
    ]
