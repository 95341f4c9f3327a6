"""The portal in a real browser (Debian's Chromium through Playwright) against the whole platform as
`billing up` runs it: a partner invites people over the API, notify emails the sign-in links through
the SMTP server, and customers and the partner's finance staff sign in and see what they are billed.

One platform and one browser for the module; screenshots of the main pages go to
`$PORTAL_SCREENSHOTS` (default: the test's temporary directory)."""

from __future__ import annotations

import asyncio
import email
import hashlib
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from billing_cli.platform import Platform
from billing_events import account_id
from billing_runtime.auth import issue
from billing_runtime.db import create_engine
from billing_runtime.testing import eventually_sync
from portal.i18n import Formatter

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PARTNER, DISTRIBUTOR = "acme-it", "distributor"
PERIOD = "2026-10"
FMT = Formatter("en_GB")
# The portal holds API keys (restricted ones for customers): the services verify keys, as `billing up`
# runs them, instead of trusting a gateway's X-Tenant-Id as the other e2e tests do.
PLATFORM_ENV = {"AUTH_MODE": "api_key"}


def run_async(coro: Any) -> Any:
    """Run a coroutine to its end from this synchronous test, on a thread of its own (Playwright's
    sync API keeps an event loop running on this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()



class Api:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.keys: dict[str, str] = {}

    def issue(self, name: str, tenant: str, scope: str = "admin", account: str | None = None) -> str:
        async def run() -> str:
            engine = create_engine(self.platform.database_url, pool_size=1)
            try:
                key = await issue(engine, self.platform.bootstrap, tenant, scope, label="portal test", now=datetime.now(UTC), account_id=account)  # type: ignore[arg-type]
                return key.key
            finally:
                await engine.dispose()

        self.keys[name] = run_async(run())
        return self.keys[name]

    def request(self, method: str, service: str, path: str, who: str, body: Any = None) -> httpx.Response:
        deadline = time.monotonic() + 30
        while True:
            r = httpx.request(method, self.platform.url(service) + path, json=body, headers={"Authorization": f"Bearer {self.keys[who]}"}, timeout=60)
            if r.status_code == 401 and r.json().get("code") == "api_key_invalid" and time.monotonic() < deadline:
                time.sleep(0.2)  # the services learn a new key from the key topic within moments
                continue
            return r

    def ok(self, method: str, service: str, path: str, who: str, body: Any = None) -> Any:
        r = self.request(method, service, path, who, body)
        assert r.status_code in (200, 201), f"{method} {service}{path}: {r.status_code} {r.text[:400]}"
        return r.json() if "json" in r.headers.get("content-type", "") else r.content


def mails(platform: Platform) -> list[email.message.Message]:
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(platform.maildir.glob("*.eml"))]


def link_for(platform: Platform, to: str, seen: set[str]) -> str:
    """The newest sign-in link mailed to `to` that the test has not used yet."""

    def found() -> str | None:
        for message in reversed(mails(platform)):
            if message["To"] and to in message["To"]:
                body = next(p for p in message.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
                links = re.findall(r"http://\S+/p/[a-z0-9-]+/sign-in/[A-Za-z0-9_-]+", body)
                if links and links[0] not in seen:
                    seen.add(links[0])
                    return links[0]
        return None

    return str(eventually_sync(found, f"a sign-in link mailed to {to}"))


@pytest.fixture(scope="module")
def billed(platform: Platform) -> dict[str, Any]:
    """A partner with two customers and a month billed, retail and wholesale; the current month
    has usage too (this period's spend)."""
    api = Api(platform)
    api.issue("partner", PARTNER)
    api.issue("distributor", DISTRIBUTOR)
    for tenant, name, prefix in ((PARTNER, "Acme IT", "ACME"), (DISTRIBUTOR, "Big Distribution", "DIST")):
        seller = {"name": name, "country": "IE", "vat_id": None, "invoice_prefix": prefix, "due_rule": {"net_days": 14}}
        api.ok("PUT", "invoicing", "/v1/seller", "partner" if tenant == PARTNER else "distributor", seller)
    brand = {"sender_name": "Acme IT", "sender_email": "billing@acme.example", "logo_url": None, "primary_color": "#0B6E4F", "footer": "Acme IT, Dublin"}
    api.ok("PUT", "notify", "/v1/brand", "partner", brand)
    product = {"name": "Backup per GB", "description": None, "category": None, "quantity_rule": "usage_sum", "currency": "EUR"}
    api.ok("PUT", "rating", "/v1/products/BKP-GB", "partner", {**product, "unit_price": "0.10"})
    api.ok("PUT", "rating", "/v1/products/BKP-GB", "distributor", {**product, "unit_price": "0.06"})
    api.ok("POST", "usage-ingest", "/v1/customers", "distributor",
           {"records": [{"id": PARTNER, "name": "Acme IT", "billing_email": "ap@acme.example", "country": "IE", "currency": "EUR"}]})
    names = (("alpha", "Alpha Dental"), ("beta", "Beta Law"))
    records = [{"id": c, "name": n, "billing_email": f"billing@{c}.example", "country": "IE", "currency": "EUR"} for c, n in names]
    api.ok("POST", "usage-ingest", "/v1/customers", "partner", {"records": records})
    now = datetime.now(UTC) - timedelta(minutes=5)
    usage = [
        {"id": f"{c}-{i}", "customer_id": c, "product_code": "BKP-GB", "quantity": q, "timestamp": f"2026-10-{1 + i:02d}T12:00:00Z"}
        for c, q, n in (("alpha", "12.5", 8), ("beta", "40", 3)) for i in range(n)
    ] + [{"id": "alpha-now", "customer_id": "alpha", "product_code": "BKP-GB", "quantity": "7", "timestamp": now.isoformat()}]
    api.ok("POST", "usage-ingest", "/v1/usage", "partner", {"records": usage})
    accounts = {c: account_id(PARTNER, c) for c in ("alpha", "beta")}

    def rated(c: str, amount: str) -> bool:
        r = api.request("GET", "rating", f"/v1/accounts/{accounts[c]}/charges?period={PERIOD}", "partner")
        return r.status_code == 200 and Decimal(r.json()["total"]["amount"]) == Decimal(amount)

    eventually_sync(lambda: rated("alpha", "10") and rated("beta", "12"), "rating to see October")
    api.ok("POST", "rating", "/v1/bill-runs", "partner", {"period": PERIOD})

    def invoices() -> list[dict[str, Any]] | None:
        items = api.ok("GET", "invoicing", f"/v1/invoices?period={PERIOD}", "partner")["items"]
        return items if len(items) == 2 else None

    by_account = {i["buyer_account_id"]: i for i in eventually_sync(invoices, "the partner's invoices")}
    api.ok("POST", "rating", "/v1/bill-runs", "distributor", {"period": PERIOD})
    wholesale = eventually_sync(lambda: api.ok("GET", "invoicing", f"/v1/invoices?period={PERIOD}", "distributor")["items"], "the distributor's invoice")
    return {"api": api, "accounts": accounts, "invoices": {c: by_account[a] for c, a in accounts.items()}, "wholesale": wholesale[0]}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(os.environ.get("PORTAL_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    where.mkdir(parents=True, exist_ok=True)
    return where


def sign_in(browser: Any, link: str) -> Any:
    context = browser.new_context(locale="en-GB", accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(link)
    page.click("#sign-in")
    page.wait_for_load_state()
    return page


def test_account_restricted_keys_are_enforced_by_the_services(platform: Platform, billed: dict[str, Any]) -> None:
    """The credential a customer's session holds, used directly: whatever the portal asked, the
    services show one account and refuse the rest."""
    api, accounts, invoices = billed["api"], billed["accounts"], billed["invoices"]
    api.issue("alpha-only", PARTNER, "read", account=accounts["alpha"])
    listed = api.ok("GET", "invoicing", "/v1/invoices", "alpha-only")["items"]
    assert [i["id"] for i in listed] == [invoices["alpha"]["id"]]
    asked_for_beta = api.request("GET", "invoicing", f"/v1/invoices?buyer_account_id={accounts['beta']}", "alpha-only")
    assert asked_for_beta.status_code == 404 and asked_for_beta.json()["code"] == "account_not_found"
    beta = invoices["beta"]["id"]
    for service, path in (
        ("invoicing", f"/v1/invoices/{beta}"), ("invoicing", f"/v1/invoices/{beta}/pdf"), ("invoicing", f"/v1/invoices/{beta}/xml"),
        ("invoicing", f"/v1/invoices/{beta}/credit-notes"), ("rating", f"/v1/accounts/{accounts['beta']}/charges"),
        ("dunning", f"/v1/accounts/{accounts['beta']}/standing"),
    ):
        assert api.request("GET", service, path, "alpha-only").status_code == 404, path
    for service, path in (("invoicing", "/v1/seller"), ("usage-ingest", "/v1/customers"), ("rating", "/v1/margins?period=2026-10"), ("dunning", "/v1/cases")):
        r = api.request("GET", service, path, "alpha-only")
        assert (r.status_code, r.json()["code"]) == (403, "account_restricted"), path
    assert api.ok("GET", "invoicing", f"/v1/invoices/{invoices['alpha']['id']}", "alpha-only")["total"] == invoices["alpha"]["total"]


def test_a_customer_signs_in_sees_its_invoices_and_downloads_the_same_pdf(
    platform: Platform, billed: dict[str, Any], browser: Any, shots: Path
) -> None:
    api, invoices = billed["api"], billed["invoices"]
    invited = api.ok("POST", "portal", "/v1/portal/invitations", "partner",
                     {"email": "Ann@Alpha.example", "name": "Ann Alpha", "role": "customer_viewer", "customer_id": "alpha"})
    assert (invited["email"], invited["account_id"]) == ("ann@alpha.example", billed["accounts"]["alpha"])
    seen: set[str] = set()
    link = link_for(platform, "ann@alpha.example", seen)
    invitation = next(m for m in mails(platform) if m["To"] and "ann@alpha.example" in m["To"])
    assert invitation["Subject"] == "You are invited to the billing portal of Acme IT"
    assert "Acme IT" in invitation["From"]
    html = next(p for p in invitation.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    assert "#0B6E4F" in html  # the partner's colour, from notify's brand

    page = sign_in(browser, link)
    assert page.url.endswith(f"/p/{PARTNER}/account")
    page.screenshot(path=str(shots / "customer-account.png"), full_page=True)
    alpha = invoices["alpha"]
    assert page.locator("h1").first.inner_text() == "Alpha Dental"
    assert FMT.money(alpha["total"], "EUR") in page.content()
    cookie = next(c for c in page.context.cookies() if c["name"] == "portal_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == f"/p/{PARTNER}"
    live = api.ok("GET", "rating", f"/v1/accounts/{billed['accounts']['alpha']}/charges", "partner")
    assert page.locator("#period-total").inner_text() == FMT.money(live["total"]["amount"], "EUR", exact=False)

    page.click("text=Billing history")
    rows = page.locator("#history tbody tr")
    assert rows.count() == 1
    row = rows.first
    assert row.locator("td.total").inner_text() == FMT.money(alpha["total"], "EUR") == "€12.30"  # 10.00 + 23 % VAT
    assert alpha["number"] in row.inner_text() and FMT.date(alpha["due_on"]) in row.inner_text()
    page.screenshot(path=str(shots / "customer-history.png"), full_page=True)
    row.locator("a", has_text=alpha["number"]).click()
    page.wait_for_load_state()
    assert page.locator("#invoice-total").inner_text() == "€12.30"
    page.screenshot(path=str(shots / "customer-invoice.png"), full_page=True)
    with page.expect_download() as download:
        page.click("#download-pdf")
    pdf = Path(download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF") and pdf == api.ok("GET", "invoicing", f"/v1/invoices/{alpha['id']}/pdf", "partner")
    with page.expect_download() as download:
        page.click("#download-xml")
    assert Path(download.value.path()).read_bytes() == api.ok("GET", "invoicing", f"/v1/invoices/{alpha['id']}/xml", "partner")

    # Editing the URL to the other customer's invoice: the service itself says 404.
    beta = invoices["beta"]["id"]
    for path in (f"/p/{PARTNER}/invoices/{beta}", f"/p/{PARTNER}/invoices/{beta}/pdf"):
        response = page.goto(platform.url("portal") + path)
        assert response is not None and response.status == 404, path
    page.screenshot(path=str(shots / "customer-other-account-404.png"))
    response = page.goto(platform.url("portal") + f"/p/{PARTNER}/statement")
    assert response is not None and response.status == 403

    # A form posted without its CSRF token is refused (and the session stays).
    refused = page.context.request.post(platform.url("portal") + f"/p/{PARTNER}/sign-out", form={"nothing": "here"})
    assert refused.status == 403
    assert page.goto(platform.url("portal") + f"/p/{PARTNER}/account").status == 200  # type: ignore[union-attr]

    # The link again: used once, refused now.
    page.goto(link)
    assert "expired or was already used" in page.content()
    page.screenshot(path=str(shots / "link-reused.png"))
    page.goto(platform.url("portal") + f"/p/{PARTNER}/account")
    page.click("text=Sign out")
    page.wait_for_load_state()
    assert "Sign in to Acme IT" in page.content()
    page.context.close()


def test_an_expired_link_is_refused_and_a_partner_sees_its_statement_and_customers(
    platform: Platform, billed: dict[str, Any], browser: Any, shots: Path
) -> None:
    api, invoices, wholesale = billed["api"], billed["invoices"], billed["wholesale"]
    api.ok("POST", "portal", "/v1/portal/invitations", "partner", {"email": "fin@acme.example", "name": "Fiona Finance", "role": "partner_finance"})
    seen: set[str] = set()
    first = link_for(platform, "fin@acme.example", seen)

    # Expire the first link (as 15 minutes would) and ask for another from the sign-in page.
    token = first.rsplit("/", 1)[1]

    async def expire() -> None:
        engine = create_engine(platform.database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("UPDATE portal.sign_in_link SET expires_at = now() - interval '1 minute' WHERE token_sha256 = :t"),
                    {"t": hashlib.sha256(token.encode()).hexdigest()},
                )
        finally:
            await engine.dispose()

    run_async(expire())
    context = browser.new_context(locale="en-GB", accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    response = page.goto(first)
    assert response is not None and response.status == 410 and "expired or was already used" in page.content()
    page.screenshot(path=str(shots / "link-expired.png"))
    # Posting the sign-in form of an expired link does not sign in either.
    assert context.request.post(first, form={"csrf_token": page.locator("input[name=csrf_token]").first.input_value()}).status == 410
    page.fill("input[name=email]", "fin@acme.example")
    page.click("text=Send me a link")
    assert "a link is on its way" in page.content()
    context.close()

    page = sign_in(browser, link_for(platform, "fin@acme.example", seen))
    assert page.url.endswith(f"/p/{PARTNER}/statement")
    rows = page.locator("#history tbody tr")
    assert rows.count() == 1
    assert wholesale["number"] in rows.first.inner_text()
    assert rows.first.locator("td.total").inner_text() == FMT.money(wholesale["total"], "EUR")
    page.screenshot(path=str(shots / "partner-statement.png"), full_page=True)
    with page.expect_download() as download:
        rows.first.locator("a", has_text="PDF").click()
    assert Path(download.value.path()).read_bytes() == api.ok("GET", "invoicing", f"/v1/invoices/{wholesale['id']}/pdf", "distributor")

    page.click("text=Customers")
    alpha_row = page.locator("tr[data-customer=alpha]")
    live = api.ok("GET", "rating", f"/v1/accounts/{billed['accounts']['alpha']}/charges", "partner")
    assert alpha_row.locator("td.spend").inner_text() == FMT.money(live["total"]["amount"], "EUR", exact=False) == "€0.70"
    assert "Alpha Dental" in alpha_row.inner_text() and "Beta Law" in page.content()
    page.screenshot(path=str(shots / "partner-customers.png"), full_page=True)

    # The partner's own customers' invoices, through the tenant-wide key.
    page.click("text=Invoices to customers")
    assert page.locator("#history tbody tr").count() == 2
    assert FMT.money(invoices["beta"]["total"], "EUR") in page.content()
    # Finance is not admin: the people page is not for it.
    assert page.goto(platform.url("portal") + f"/p/{PARTNER}/users").status == 403  # type: ignore[union-attr]
    page.context.close()


# --- the partner's pages: margins, comparison reports, dunning cases, delivery log, brand -------

SHOTS_COPY = Path("/tmp/portal-partner-shots")


def shot(page: Any, shots: Path, name: str) -> None:
    """A full-page screenshot into the run's screenshots (and a copy for people to look at)."""
    page.screenshot(path=str(shots / name), full_page=True)
    SHOTS_COPY.mkdir(parents=True, exist_ok=True)
    (SHOTS_COPY / name).write_bytes((shots / name).read_bytes())


def money_sum(values: list[str]) -> Decimal:
    return sum((Decimal(v) for v in values), Decimal(0))


def test_a_partner_sees_its_margins_reports_cases_and_deliveries(platform: Platform, billed: dict[str, Any], browser: Any, shots: Path) -> None:
    api, invoices, wholesale = billed["api"], billed["invoices"], billed["wholesale"]
    api.ok("POST", "portal", "/v1/portal/invitations", "partner", {"email": "fred@acme.example", "name": "Fred Finance", "role": "partner_finance"})
    page = sign_in(browser, link_for(platform, "fred@acme.example", set()))
    base = platform.url("portal") + f"/p/{PARTNER}"

    # Margins: rating's report for October, line by line and in total, as the viewer's locale writes it.
    margins = api.ok("GET", "rating", f"/v1/margins?period={PERIOD}", "partner")
    assert {line["end_customer_id"] for line in margins["lines"]} == set(billed["accounts"].values())
    page.goto(f"{base}/margins?period={PERIOD}")
    for line in margins["lines"]:
        row = page.locator(f"#margins tr[data-customer='{line['end_customer_id']}'][data-product='BKP-GB']")
        assert row.locator("td.margin").inner_text() == FMT.money(line["margin"], "EUR", exact=False)
    total = money_sum([line["margin"] for line in margins["lines"]])
    assert total > 0
    assert page.locator(".margin-total[data-currency=EUR]").inner_text() == FMT.money(total, "EUR", exact=False)
    assert "Alpha Dental" in page.locator("#margins").inner_text()
    shot(page, shots, "partner-margins.png")

    # Comparison reports: the distributor's, about this partner's invoice, with its spreadsheet.
    [report] = api.ok("GET", "invoicing", "/v1/comparison-reports", "distributor")["items"]
    assert report["invoice_id"] == wholesale["id"]
    page.click("nav >> text=Comparison reports")
    rows = page.locator("#reports tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-id") == report["id"]
    assert rows.first.locator("td.difference").inner_text() == FMT.money(report["difference"], "EUR")
    shot(page, shots, "partner-reports.png")
    rows.first.locator("a", has_text="View").click()
    page.wait_for_load_state()
    assert page.locator("#report-difference").inner_text() == FMT.money(report["difference"], "EUR")
    assert page.locator("#report-rows tbody tr").count() == len(report["rows"])
    shot(page, shots, "partner-report.png")
    with page.expect_download() as download:
        page.click("#download-xlsx")
    xlsx = Path(download.value.path()).read_bytes()
    assert xlsx[:2] == b"PK" and xlsx == api.ok("GET", "invoicing", f"/v1/comparison-reports/{report['id']}/xlsx", "distributor")
    assert download.value.suggested_filename.endswith(".xlsx")

    # Dunning: both October invoices are open cases (due in 14 days, not yet overdue).
    def open_cases() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = api.ok("GET", "dunning", "/v1/cases?status=open", "partner")["items"]
        return items if {c["invoice_id"] for c in items} == {i["id"] for i in invoices.values()} else None

    cases = eventually_sync(open_cases, "dunning's cases of the October invoices")
    page.click("nav >> text=Dunning")
    for c in cases:
        row = page.locator(f"#cases tr[data-invoice='{c['invoice_id']}']")
        assert c["invoice_number"] in row.inner_text()
        assert row.locator("td.open").inner_text() == FMT.money(c["amount_open"], "EUR")
    assert "Beta Law" in page.locator("#cases").inner_text()
    shot(page, shots, "partner-dunning.png")
    page.click(".periods >> text=Closed")
    assert "No case here." in page.content()

    # The delivery log: the invoice emails and this user's own sign-in email, whose link is not shown.
    def logged() -> bool:
        recipients = {d["recipient"] for d in api.ok("GET", "notify", "/v1/deliveries?limit=200", "partner")["items"]}
        return {"billing@alpha.example", "fred@acme.example"} <= recipients

    eventually_sync(logged, "notify's log of the invoice and sign-in emails")
    page.click("nav >> text=Delivery log")
    log = page.locator("#deliveries")
    assert "billing@alpha.example" in log.inner_text() and "fred@acme.example" in log.inner_text()
    shot(page, shots, "partner-deliveries.png")
    page.locator("#deliveries tr[data-template=portal_sign_in]", has_text="fred@acme.example").first.locator("a").click()
    page.wait_for_load_state()
    email_html = page.locator("iframe.email").get_attribute("srcdoc") or ""
    assert "/sign-in/…" in email_html and not re.search(r"/sign-in/[A-Za-z0-9_-]{20,}", email_html + page.content())
    assert page.locator("iframe.email").get_attribute("sandbox") == ""
    shot(page, shots, "partner-delivery.png")

    # Another partner's or nobody's ids: the services' 404, as a page.
    for path in ("/reports/nobody-report", "/reports/nobody-report/xlsx", "/deliveries/nobody-delivery"):
        assert page.goto(base + path).status == 404, path  # type: ignore[union-attr]

    # In German: the sign-in page for a browser that asks for it (Accept-Language), and every page
    # for a user invited with the locale `de`, whatever its browser asks; the navigation and headings
    # from the catalogue, the amounts as Germans write them.
    german = browser.new_context(locale="de-DE")
    greeting = german.new_page()
    greeting.goto(f"{base}/")
    assert greeting.locator("h1").inner_text().startswith("Bei ") and greeting.locator("html").get_attribute("lang") == "de"
    german.close()
    api.ok("POST", "portal", "/v1/portal/invitations", "partner", {"email": "fritz@acme.example", "role": "partner_finance", "locale": "de"})
    fritz = sign_in(browser, link_for(platform, "fritz@acme.example", set()))
    fritz.goto(f"{base}/margins?period={PERIOD}")
    assert fritz.locator("h1").first.inner_text().startswith("Margen")
    assert fritz.locator("nav >> text=Vergleichsberichte").count() == 1 and fritz.locator("nav >> text=Kontoauszug").count() == 1
    assert fritz.locator(".margin-total[data-currency=EUR]").inner_text() == Formatter("de").money(total, "EUR", exact=False)
    shot(fritz, shots, "partner-margins-de.png")
    fritz.context.close()

    # Finance may look at the brand but not change it.
    page.goto(f"{base}/brand")
    assert page.locator("#brand-form fieldset").get_attribute("disabled") is not None and page.locator("#save-brand").count() == 0
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    assert page.context.request.post(f"{base}/brand", form={"csrf_token": csrf, "sender_name": "Finance was here"}).status == 403
    assert api.ok("GET", "notify", "/v1/brand", "partner")["sender_name"] == "Acme IT"
    page.context.close()


def registry_rows(platform: Platform, label: str) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_engine(platform.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text("SELECT scope, tenant, revoked_at FROM billing_auth.api_key WHERE label = :l"), {"l": label})).all())
        finally:
            await engine.dispose()

    return list(run_async(run()))


def test_a_partner_admin_previews_and_saves_its_brand(platform: Platform, billed: dict[str, Any], browser: Any, shots: Path) -> None:
    api = billed["api"]
    api.ok("POST", "portal", "/v1/portal/invitations", "partner", {"email": "adam@acme.example", "name": "Adam Admin", "role": "partner_admin"})
    page = sign_in(browser, link_for(platform, "adam@acme.example", set()))
    page.click("nav >> text=Brand")
    assert page.locator("input[name=sender_name]").input_value() == "Acme IT"
    assert page.locator("input[name=primary_color]").input_value() == "#0B6E4F"

    # The preview follows the form as it is typed, before anything is saved.
    page.fill("input[name=sender_name]", "Acme IT Services")
    page.fill("input[name=primary_color]", "#7A1F5C")
    page.fill("textarea[name=footer]", "Acme IT Services Ltd, 1 Quay Street, Dublin")
    assert page.locator("#preview-name").inner_text() == "Acme IT Services"
    assert page.locator("#preview-footer").inner_text() == "Acme IT Services Ltd, 1 Quay Street, Dublin"
    top = page.locator(".preview-top").evaluate("e => getComputedStyle(e).backgroundColor")
    assert top == "rgb(122, 31, 92)"
    assert api.ok("GET", "notify", "/v1/brand", "partner")["sender_name"] == "Acme IT"  # nothing saved yet
    shot(page, shots, "partner-brand-preview.png")

    # A colour notify refuses: the form again, the field marked, nothing saved.
    page.fill("input[name=primary_color]", "#7A1F5")
    page.locator("input[name=primary_color]").evaluate("e => e.removeAttribute('pattern')")
    page.click("#save-brand")
    page.wait_for_load_state()
    assert page.locator("label.invalid input[name=primary_color]").count() == 1
    assert api.ok("GET", "notify", "/v1/brand", "partner")["primary_color"] == "#0B6E4F"

    page.fill("input[name=sender_name]", "Acme IT Services")
    page.fill("input[name=primary_color]", "#7A1F5C")
    page.fill("textarea[name=footer]", "Acme IT Services Ltd, 1 Quay Street, Dublin")
    page.click("#save-brand")
    page.wait_for_load_state()
    assert "Saved" in page.locator("p.ok").inner_text()
    saved = api.ok("GET", "notify", "/v1/brand", "partner")
    assert (saved["sender_name"], saved["primary_color"], saved["footer"], saved["sender_email"]) == (
        "Acme IT Services", "#7A1F5C", "Acme IT Services Ltd, 1 Quay Street, Dublin", "billing@acme.example",
    )
    assert page.locator("header.top").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(122, 31, 92)"
    assert "Acme IT Services Ltd" in page.locator("footer").inner_text()
    shot(page, shots, "partner-brand-saved.png")
    # The write key the save needed exists no more: minted for the one call, then revoked.
    keys = registry_rows(platform, "portal brand edit by adam@acme.example")
    assert [(k.scope, k.tenant) for k in keys] == [("write", PARTNER), ("write", PARTNER)] and all(k.revoked_at is not None for k in keys)
    page.context.close()


def test_a_partner_portal_at_its_own_host_name(platform: Platform, billed: dict[str, Any], browser: Any, shots: Path) -> None:
    """`acme-it.localhost` (Chromium sends *.localhost to this machine) mapped to the partner: the
    sign-in page there wears the brand before anyone signs in, the emailed link names that host,
    and its session works there only."""
    api = billed["api"]
    port = platform.url("portal").rsplit(":", 1)[1]
    host = f"{PARTNER}.localhost"
    try:
        mapped = api.ok("PUT", "portal", "/v1/portal/host", "partner", {"host": host})
        assert mapped == {"host": host, "tenant": PARTNER, "portal_url": f"http://{host}:{port}"}
        assert api.request("PUT", "portal", "/v1/portal/host", "distributor", {"host": host}).status_code == 409
        brand = api.ok("GET", "notify", "/v1/brand", "partner")

        context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
        page = context.new_page()
        assert page.goto(f"http://{host}:{port}/").status == 200  # type: ignore[union-attr]
        assert page.locator("h1").inner_text() == f"Sign in to {brand['sender_name']}"
        color = page.locator("header.top").evaluate("e => getComputedStyle(e).backgroundColor")
        assert color == "rgb({}, {}, {})".format(*(int(brand["primary_color"][i : i + 2], 16) for i in (1, 3, 5)))
        shot(page, shots, "host-sign-in.png")
        # Another partner's portal is not on this host.
        assert page.goto(f"http://{host}:{port}/p/{DISTRIBUTOR}/").status == 404  # type: ignore[union-attr]

        carl = {"email": "carl@beta.example", "name": "Carl Beta", "role": "customer_admin", "customer_id": "beta"}
        api.ok("POST", "portal", "/v1/portal/invitations", "partner", carl)

        def host_link() -> str | None:
            for message in reversed(mails(platform)):
                if message["To"] and "carl@beta.example" in message["To"]:
                    body = next(p for p in message.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
                    found = re.findall(rf"http://{re.escape(host)}:{port}/sign-in/[A-Za-z0-9_-]+", body)
                    return found[0] if found else None
            return None

        link = str(eventually_sync(host_link, "a sign-in link on the partner's host"))
        page.goto(link)
        page.click("#sign-in")
        page.wait_for_load_state()
        assert page.url.startswith(f"http://{host}:{port}/") and page.url.endswith("/account")
        assert page.locator("h1").first.inner_text() == "Beta Law"
        shot(page, shots, "host-account.png")
        cookie = next(c for c in context.cookies() if c["name"] == "portal_session")
        assert (cookie["domain"], cookie["path"], cookie["httpOnly"]) == (host, "/", True)

        # The same cookie on the portal's own address (or another host) signs no one in.
        other = browser.new_context(locale="en-GB")
        other.add_cookies([{"name": "portal_session", "value": cookie["value"], "domain": "127.0.0.1", "path": f"/p/{PARTNER}"}])
        elsewhere = other.new_page()
        elsewhere.goto(platform.url("portal") + f"/p/{PARTNER}/account")
        assert "Sign in to" in elsewhere.locator("h1").inner_text()
        other.close()
        context.close()
    finally:
        api.request("DELETE", "portal", "/v1/portal/host", "partner")
    assert api.request("GET", "portal", "/v1/portal/host", "partner").status_code == 404


def test_api_docs_render_offline(platform: Platform, browser: Any, shots: Path) -> None:
    """invoicing's /docs with every request to anything but this machine refused: Swagger UI comes
    from the service's own assets and renders the operations."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    refused: list[str] = []

    def only_local(route: Any) -> None:
        host = httpx.URL(route.request.url).host
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.goto(platform.url("invoicing") + "/docs")
    page.wait_for_selector(".opblock", timeout=60_000)
    assert page.locator(".opblock").count() >= 10
    assert page.locator(".opblock-summary-path", has_text="/v1/invoices/{invoice_id}/pdf").count() >= 1
    assert refused == []
    shot(page, shots, "docs-offline.png")
    context.close()
