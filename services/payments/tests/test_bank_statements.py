"""Bank transfers: RF references on invoices, camt.053 and MT940 statements matched to them,
partial and over payments, credit carried to the next invoice, unmatched lines for finance."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from stdnum import iso11649

from billing_events import CloudEvent
from billing_events.topics import PAYMENTS
from billing_runtime.testing import publish_events, read_events, tenant_headers
from payments.banking.reference import creditor_reference, references_in
from payments.banking.statements import parse

from .conftest import Live
from .test_payments_api import invoice_issued, known_invoice


def camt053(message_id: str, entries: list[tuple[str, str, str, str | None, str | None]]) -> bytes:
    """entries: (amount, CRDT|DBIT, booking date, remittance, debtor name)."""
    rows = []
    for amount, direction, booked, remittance, debtor in entries:
        party = f"<RltdPties><Dbtr><Nm>{debtor}</Nm></Dbtr></RltdPties>" if debtor else ""
        info = f"<RmtInf><Ustrd>{remittance}</Ustrd></RmtInf>" if remittance else ""
        rows.append(
            f'<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>{direction}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>'
            f"<BookgDt><Dt>{booked}</Dt></BookgDt><NtryDtls><TxDtls>{party}{info}</TxDtls></NtryDtls></Ntry>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>{message_id}</MsgId><CreDtTm>2026-11-20T18:00:00</CreDtTm></GrpHdr>"
        f"<Stmt><Id>{message_id}-1</Id><Acct><Id><IBAN>IE29AIBK93115212345678</IBAN></Id></Acct>{''.join(rows)}</Stmt>"
        "</BkToCstmrStmt></Document>"
    ).encode()


def mt940(reference: str, lines: list[tuple[str, str]]) -> bytes:
    """lines: (amount with a comma, :86: text), all credits on 2026-11-21."""
    body = [f":20:{reference}", ":25:IE29AIBK93115212345678", ":28C:00042/001", ":60F:C261120EUR0,00"]
    for amount, details in lines:
        body += [f":61:2611211121C{amount}NTRFNONREF//B{len(body)}", f":86:{details}"]
    body.append(":62F:C261121EUR0,00")
    return ("\r\n".join(body) + "\r\n").encode()


def test_rf_reference_is_valid_and_found_in_remittance_text() -> None:
    reference = creditor_reference("BT-2026/0001")
    assert iso11649.is_valid(reference) and reference.endswith("BT20260001")
    assert references_in(f"Invoice {iso11649.format(reference)} thank you") == [reference]
    assert references_in("RF00 1234 no reference here") == []


def test_both_formats_read_credit_lines_only() -> None:
    camt = parse(camt053("M1", [("10.00", "CRDT", "2026-11-20", "hello", "Payer"), ("5.00", "DBIT", "2026-11-20", None, None)]), None)
    assert (camt.format, camt.statement_id, [(str(line.amount), line.counterparty) for line in camt.lines]) == ("camt.053", "M1/M1-1", [("10.00", "Payer")])
    swift = parse(mt940("S1", [("12,50", "/NAME/Acme GmbH/REMI/x")]), None)
    assert (swift.format, [(str(line.amount), line.counterparty) for line in swift.lines]) == ("mt940", [("12.50", "Acme GmbH")])


async def payments_of(bootstrap: str, tenant: str, count: int) -> list[CloudEvent[Any]]:
    return await read_events(
        bootstrap, PAYMENTS.name, until=lambda s: len(s) >= count, match=lambda e: e.tenant == tenant and e.type == "billing.payment.succeeded.v1", timeout=60
    )


@pytest.mark.asyncio(loop_scope="module")
async def test_statements_match_by_reference_then_amount_and_buyer_with_partial_and_over_payment(live: Live, kafka_bootstrap: str) -> None:
    tenant = f"partner-{uuid.uuid4().hex[:8]}"
    client = live.client
    first = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, first, "BT-0001", total="126.69", currency="EUR"))
    await known_invoice(client, tenant, first)
    reference = (await client.get(f"/v1/invoices/{first}", headers=tenant_headers(tenant))).json()["creditor_reference"]
    assert reference == creditor_reference("BT-0001")

    statement = camt053(
        "CAMT-20261120",
        [
            ("100.00", "CRDT", "2026-11-20", f"Payment {iso11649.format(reference)}", "Contoso Dental"),
            ("999.99", "CRDT", "2026-11-20", "no idea", "Someone Else"),
            ("40.00", "DBIT", "2026-11-20", "bank fee", None),
        ],
    )
    r = await client.post("/v1/bank-statements", headers={**tenant_headers(tenant), "Content-Type": "application/xml"}, content=statement)
    assert r.status_code == 201, r.text
    result = r.json()
    assert (result["matched"], result["unmatched"]) == (1, 1)
    assert [(line["status"], line["matched_by"], line["invoice_id"]) for line in result["lines"]] == [
        ("matched", "reference", first),
        ("unmatched", None, None),
    ]
    assert (await client.get(f"/v1/invoices/{first}", headers=tenant_headers(tenant))).json()["amount_open"] == "26.69"

    again = await client.post("/v1/bank-statements", headers=tenant_headers(tenant), content=statement)
    assert (again.status_code, again.json()) == (200, result)
    other = await client.post("/v1/bank-statements", headers=tenant_headers(tenant), content=statement.replace(b"999.99", b"999.98"))
    assert (other.status_code, other.json()["code"]) == (409, "statement_id_conflict")
    bad = await client.post("/v1/bank-statements", headers=tenant_headers(tenant), content=b"<Document><nothing/></Document>")
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_statement")

    # The rest and 10.00 too much, by MT940: the surplus is kept as the buyer's credit.
    r = await client.post("/v1/bank-statements", headers=tenant_headers(tenant), content=mt940("MT-20261121", [("36,69", f"{reference} rest")]))
    assert r.status_code == 201 and r.json()["lines"][0]["matched_by"] == "reference"
    paid = (await client.get(f"/v1/invoices/{first}", headers=tenant_headers(tenant))).json()
    assert (paid["amount_open"], paid["overpaid"]) == ("0.00", "10.00")
    buyer = paid["account_id"]
    credit = (await client.get(f"/v1/accounts/{buyer}/credit", headers=tenant_headers(tenant))).json()
    assert credit["credit"] == [{"amount": "10.00", "currency": "EUR"}]

    # The next invoice is paid from the credit first, the rest by a transfer without reference,
    # matched by its amount and the buyer's name.
    second = str(uuid.uuid4())
    await publish_events(kafka_bootstrap, invoice_issued(tenant, second, "BT-0002", total="50.00", currency="EUR"))
    await known_invoice(client, tenant, second)
    assert (await client.get(f"/v1/invoices/{second}", headers=tenant_headers(tenant))).json()["amount_open"] == "40.00"
    assert (await client.get(f"/v1/accounts/{buyer}/credit", headers=tenant_headers(tenant))).json()["credit"] == []
    r = await client.post(
        "/v1/bank-statements",
        headers=tenant_headers(tenant),
        content=camt053("CAMT-20261122", [("40.00", "CRDT", "2026-11-22", "November", "CONTOSO DENTAL LTD")]),
    )
    assert r.json()["lines"][0]["matched_by"] == "amount_and_buyer" and r.json()["lines"][0]["invoice_id"] == second
    assert (await client.get(f"/v1/invoices/{second}", headers=tenant_headers(tenant))).json()["amount_open"] == "0.00"

    unmatched = (await client.get("/v1/bank-statements/unmatched", headers=tenant_headers(tenant))).json()["items"]
    assert [(u["amount"], u["counterparty"]) for u in unmatched] == [("999.99", "Someone Else")]

    events = await payments_of(kafka_bootstrap, tenant, 4)
    assert [(e.data.invoice_id, str(e.data.amount.amount), e.data.provider) for e in events] == [
        (first, "100.00", "bank_transfer"),
        (first, "36.69", "bank_transfer"),
        (second, "10.00", "account_credit"),
        (second, "40.00", "bank_transfer"),
    ]
