"""A partner's comparison report page in Debian's Chromium (headless, through Playwright), from the
template the portal renders, with the portal's own stylesheets: a report invoicing sent ahead of the
invoice (`basis: rated_charges`, no `invoice_number` yet) names the day the invoice is due instead of
linking a statement entry that does not exist yet; once the invoice is issued it links it by number.

The screenshots go to `$PORTAL_SCREENSHOTS` (default: the test's temporary directory)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from portal.brands import Brand
from portal.i18n import Formatter
from portal.partner_pages import LABELS, _counts
from portal.web import ROLE_NAMES, templates

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]
STATIC = Path(__file__).parents[1] / "src" / "portal" / "static"
PORTAL = "http://portal.test"
PARTNER = "acme-it"
FMT = Formatter("en_GB")


def report(**overrides: Any) -> dict[str, Any]:
    row = {
        "end_customer_id": "cust-1",
        "end_customer_name": "Globex",
        "product_code": "M365-BP",
        "description": "Microsoft 365 Business Premium",
        "last_quantity": "10",
        "last_amount": "180.00",
        "this_quantity": "12",
        "this_amount": "216.00",
        "amount_difference": "36.00",
        "change": "changed",
    }
    return {
        "id": "cmp-acme-2026-11",
        "buyer_account_id": "acc-acme",
        "invoice_id": "inv-acme-2026-11",
        "invoice_number": None,
        "previous_invoice_id": "inv-acme-2026-10",
        "previous_invoice_number": "DIST-2026-0041",
        "period_start": "2026-11-01",
        "period_end": "2026-11-30",
        "currency": "EUR",
        "this_period_total": "216.00",
        "last_period_total": "180.00",
        "difference": "36.00",
        "rows": [row],
        "basis": "rated_charges",
        "invoice_expected_on": "2026-12-01",
    } | overrides


def html(r: dict[str, Any]) -> str:
    """report.html as `portal.partner_pages.report_page` renders it (no session: no navigation)."""
    return templates.get_template("report.html").render(
        partner=PARTNER,
        brand=Brand("Acme IT", "#0b5fff", None, None),
        who=None,
        role_names=ROLE_NAMES,
        fmt=FMT,
        _=FMT.gettext,
        csrf=None,
        report=r,
        counts=_counts(r),
        labels=LABELS,
    )


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page()
            pg.set_default_timeout(10_000)
            # The page's stylesheets and script from the portal's static folder; nothing else is reached.
            pg.route(
                f"{PORTAL}/static/*",
                lambda route: route.fulfill(path=str(STATIC / route.request.url.rsplit("/", 1)[1])),
            )
            yield pg
        finally:
            browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("PORTAL_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def show(page: Any, r: dict[str, Any]) -> None:
    page.route(f"{PORTAL}/p/{PARTNER}/reports/{r['id']}", lambda route: route.fulfill(body=html(r), content_type="text/html"))
    page.goto(f"{PORTAL}/p/{PARTNER}/reports/{r['id']}")


def test_a_report_sent_ahead_of_its_invoice_links_no_invoice_and_says_when_it_comes(page: Any, shots: Path) -> None:
    ahead = report()
    show(page, ahead)
    page.screenshot(path=str(shots / "partner-report-ahead.png"), full_page=True)
    assert page.locator(f"a[href*='/statement/{ahead['invoice_id']}']").count() == 0
    assert page.locator("#report-invoice").inner_text() == "To be invoiced on 1 Dec 2026"
    assert page.locator("#download-xlsx").is_visible()
    assert page.locator("#report-difference").inner_text() == FMT.money("36.00", "EUR")


def test_a_report_on_an_issued_invoice_links_it_by_its_number(page: Any, shots: Path) -> None:
    issued = report(id="cmp-acme-2026-10", invoice_number="DIST-2026-0057", basis="invoice", invoice_expected_on=None)
    show(page, issued)
    page.screenshot(path=str(shots / "partner-report-issued.png"), full_page=True)
    link = page.locator("#report-invoice")
    assert link.get_attribute("href") == f"/p/{PARTNER}/statement/{issued['invoice_id']}"
    assert link.inner_text() == "Invoice DIST-2026-0057"
