"""Reading bank statements: camt.053 (ISO 20022 XML) and MT940 (SWIFT), credit lines only."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

import mt940


class StatementUnreadable(ValueError):
    pass


@dataclass(frozen=True)
class Line:
    booked_on: date
    amount: Decimal
    currency: str
    remittance: str | None
    counterparty: str | None
    counterparty_iban: str | None = None  # the payer's account (camt.053 DbtrAcct), where a refund goes back


@dataclass(frozen=True)
class ParsedStatement:
    statement_id: str
    format: str
    account: str | None
    lines: list[Line]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(node: ET.Element, path: str) -> ET.Element | None:
    """First descendant along `path` (slash-separated local names), whatever the namespace."""
    current: list[ET.Element] = [node]
    for name in path.split("/"):
        current = [child for parent in current for child in parent if _local(child.tag) == name]
        if not current:
            return None
    return current[0]


def _text(node: ET.Element, path: str) -> str | None:
    found = _find(node, path)
    return found.text.strip() if found is not None and found.text else None


def parse_camt053(data: bytes) -> ParsedStatement:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise StatementUnreadable(f"not XML: {exc}") from exc
    report = _find(root, "BkToCstmrStmt")
    statement = _find(report, "Stmt") if report is not None else None
    if report is None or statement is None:
        raise StatementUnreadable("not a camt.053 statement (no BkToCstmrStmt/Stmt)")
    message_id = _text(report, "GrpHdr/MsgId") or ""
    statement_id = f"{message_id}/{_text(statement, 'Id') or ''}".strip("/")
    if not statement_id:
        raise StatementUnreadable("camt.053 statement without MsgId or Stmt/Id")
    lines = []
    for entry in (e for e in statement if _local(e.tag) == "Ntry"):
        if _text(entry, "CdtDbtInd") != "CRDT":
            continue
        amount_node = _find(entry, "Amt")
        booked = _text(entry, "BookgDt/Dt") or (_text(entry, "BookgDt/DtTm") or "")[:10]
        try:
            amount = Decimal((amount_node.text or "").strip()) if amount_node is not None else None
            booked_on = date.fromisoformat(booked)
        except (InvalidOperation, ValueError) as exc:
            raise StatementUnreadable(f"entry with an unreadable amount or booking date: {exc}") from exc
        if amount is None or amount_node is None:
            raise StatementUnreadable("entry without an amount")
        details = _find(entry, "NtryDtls/TxDtls")
        remittance_parts = []
        counterparty = counterparty_iban = None
        if details is not None:
            remittance_parts = [t for t in (_text(details, "RmtInf/Strd/CdtrRefInf/Ref"), _text(details, "RmtInf/Ustrd")) if t]
            counterparty = _text(details, "RltdPties/Dbtr/Nm") or _text(details, "RltdPties/Dbtr/Pty/Nm")
            counterparty_iban = _text(details, "RltdPties/DbtrAcct/Id/IBAN")
        remittance_parts.append(_text(entry, "AddtlNtryInf") or "")
        remittance = " ".join(p for p in remittance_parts if p) or None
        lines.append(Line(booked_on, amount, amount_node.get("Ccy", ""), remittance, counterparty, counterparty_iban))
    return ParsedStatement(statement_id, "camt.053", _text(statement, "Acct/Id/IBAN"), lines)


_NAME = re.compile(r"/NAME/([^/]+)")


def parse_mt940(data: bytes) -> ParsedStatement:
    transactions = mt940.models.Transactions()
    try:
        transactions.parse(data.decode("utf-8", errors="replace"))
    except Exception as exc:  # the parser raises many kinds of errors on malformed input
        raise StatementUnreadable(f"not an MT940 statement: {exc}") from exc
    reference = transactions.data.get("transaction_reference")
    if not reference:
        raise StatementUnreadable("MT940 statement without :20: transaction reference")
    number = f"{transactions.data.get('statement_number') or ''}/{transactions.data.get('sequence_number') or ''}".strip("/")
    lines = []
    for transaction in transactions:
        found = transaction.data
        if found.get("status") not in {"C", "RD"}:  # credits, and reversals of debits
            continue
        details = " ".join(str(found.get(k) or "") for k in ("transaction_details", "extra_details")).strip() or None
        name = _NAME.search(details or "")
        lines.append(Line(found["date"], Decimal(found["amount"].amount), found["amount"].currency, details, name.group(1).strip() if name else None))
    statement_id = f"{reference}/{number}".strip("/")
    return ParsedStatement(statement_id, "mt940", transactions.data.get("account_identification"), lines)


def parse(data: bytes, format: str | None) -> ParsedStatement:
    """A statement in camt.053 or MT940; the format is given or recognised from the content."""
    kind = format or ("camt.053" if data.lstrip().startswith(b"<") else "mt940")
    if kind in {"camt.053", "camt053"}:
        return parse_camt053(data)
    if kind == "mt940":
        return parse_mt940(data)
    raise StatementUnreadable(f"unknown statement format {format!r}: camt.053 or mt940")
