"""The portal in a real browser (Debian's Chromium through Playwright) against the whole platform as
`billing up` runs it: a partner invites people over the API, notify emails the sign-in links through
the SMTP server, and customers and the partner's finance staff sign in and see what they are billed.

One platform and one browser for the module; screenshots of the main pages go to
`$PORTAL_SCREENSHOTS` (default: the test's temporary directory)."""

from __future__ import annotations

import asyncio
import email
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from billing_cli.platform import Platform
from billing_events import account_id
from billing_runtime.auth import Scope, issue
from billing_runtime.db import create_engine
from billing_runtime.testing import eventually_sync
from portal.i18n import Formatter

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
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

    def issue(self, name: str, tenant: str, scope: Scope = "admin", account: str | None = None) -> str:
        async def run() -> str:
            engine = create_engine(self.platform.database_url, pool_size=1)
            try:
                key = await issue(engine, self.platform.bootstrap, tenant, scope, label="portal test", now=datetime.now(UTC), account_id=account)
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

    def orders(self, who: str, records: list[dict[str, Any]]) -> Any:
        """Orders posted right after their products: usage-ingest hears of rating's catalogue a moment
        later and refuses an order of a product it does not know yet (`unknown_product`, nothing
        stored), so the batch is posted again, as a partner would, until every order is accepted."""

        def accepted() -> Any:
            result = self.ok("POST", "usage-ingest", "/v1/orders", who, {"records": records})
            refused = [r for r in result["results"] if r["status"] not in ("accepted", "duplicate")]
            assert all(r["code"] == "unknown_product" for r in refused), refused
            return None if refused else result

        return eventually_sync(accepted, "usage-ingest to accept the orders", timeout=60)


def text_of(part: email.message.Message) -> str:
    """The decoded text of a (non-multipart) MIME part."""
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes), part.get_content_type()
    return payload.decode()


def mails(platform: Platform) -> list[email.message.Message]:
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(platform.maildir.glob("*.eml"))]


def link_for(platform: Platform, to: str, seen: set[str]) -> str:
    """The newest sign-in link mailed to `to` that the test has not used yet."""

    def found() -> str | None:
        for message in reversed(mails(platform)):
            if message["To"] and to in message["To"]:
                body = text_of(next(p for p in message.walk() if p.get_content_type() == "text/plain"))
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
    api.ok(
        "POST",
        "usage-ingest",
        "/v1/customers",
        "distributor",
        {"records": [{"id": PARTNER, "name": "Acme IT", "billing_email": "ap@acme.example", "country": "IE", "currency": "EUR"}]},
    )
    names = (("alpha", "Alpha Dental"), ("beta", "Beta Law"))
    records = [{"id": c, "name": n, "billing_email": f"billing@{c}.example", "country": "IE", "currency": "EUR"} for c, n in names]
    api.ok("POST", "usage-ingest", "/v1/customers", "partner", {"records": records})
    now = datetime.now(UTC) - timedelta(minutes=5)
    usage = [
        {"id": f"{c}-{i}", "customer_id": c, "product_code": "BKP-GB", "quantity": q, "timestamp": f"2026-10-{1 + i:02d}T12:00:00Z"}
        for c, q, n in (("alpha", "12.5", 8), ("beta", "40", 3))
        for i in range(n)
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
        ("invoicing", f"/v1/invoices/{beta}"),
        ("invoicing", f"/v1/invoices/{beta}/pdf"),
        ("invoicing", f"/v1/invoices/{beta}/xml"),
        ("invoicing", f"/v1/invoices/{beta}/credit-notes"),
        ("rating", f"/v1/accounts/{accounts['beta']}/charges"),
        ("dunning", f"/v1/accounts/{accounts['beta']}/standing"),
    ):
        assert api.request("GET", service, path, "alpha-only").status_code == 404, path
    for service, path in (("invoicing", "/v1/seller"), ("usage-ingest", "/v1/customers"), ("rating", "/v1/margins?period=2026-10"), ("dunning", "/v1/cases")):
        r = api.request("GET", service, path, "alpha-only")
        assert (r.status_code, r.json()["code"]) == (403, "account_restricted"), path
    assert api.ok("GET", "invoicing", f"/v1/invoices/{invoices['alpha']['id']}", "alpha-only")["total"] == invoices["alpha"]["total"]


def test_a_customer_signs_in_sees_its_invoices_and_downloads_the_same_pdf(platform: Platform, billed: dict[str, Any], browser: Any, shots: Path) -> None:
    api, invoices = billed["api"], billed["invoices"]
    invited = api.ok(
        "POST",
        "portal",
        "/v1/portal/invitations",
        "partner",
        {"email": "Ann@Alpha.example", "name": "Ann Alpha", "role": "customer_viewer", "customer_id": "alpha"},
    )
    assert (invited["email"], invited["account_id"]) == ("ann@alpha.example", billed["accounts"]["alpha"])
    seen: set[str] = set()
    link = link_for(platform, "ann@alpha.example", seen)
    invitation = next(m for m in mails(platform) if m["To"] and "ann@alpha.example" in m["To"])
    assert invitation["Subject"] == "You are invited to the billing portal of Acme IT"
    assert "Acme IT" in invitation["From"]
    html = text_of(next(p for p in invitation.walk() if p.get_content_type() == "text/html"))
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
    page.wait_for_url(f"**/p/{PARTNER}/invoices")  # count() does not wait for the page it counts on
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
    assert page.goto(platform.url("portal") + f"/p/{PARTNER}/account").status == 200

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
    assert page.goto(platform.url("portal") + f"/p/{PARTNER}/users").status == 403
    page.context.close()


# --- an end customer's payment methods, billing profile, subscriptions and payments received ----------
# (portal-pay) Screenshots of these pages go to a folder of their own under the test's temporary
# directory and are copied to /tmp/portal-pay-shots/ for a person to look at.

PAY_SHOTS_COPY = Path("/tmp/portal-pay-shots")


@pytest.fixture(scope="module")
def pay_shots(tmp_path_factory: pytest.TempPathFactory) -> Any:
    where = tmp_path_factory.mktemp("portal-pay-screenshots")
    PAY_SHOTS_COPY.mkdir(parents=True, exist_ok=True)

    def snap(page: Any, name: str) -> None:
        page.screenshot(path=str(where / f"{name}.png"), full_page=True)
        (PAY_SHOTS_COPY / f"{name}.png").write_bytes((where / f"{name}.png").read_bytes())

    return snap


def open_page(page: Any, label: str, path: str) -> None:
    """Follow a link of the top navigation and wait for its page (a locator's count() does not wait)."""
    page.click(f"nav >> text={label}")
    page.wait_for_url(f"**/p/{PARTNER}/{path}")


def invite(api: Api, email_: str, name: str, role: str, customer: str) -> None:
    api.ok("POST", "portal", "/v1/portal/invitations", "partner", {"email": email_, "name": name, "role": role, "customer_id": customer})


@dataclass
class Hooks:
    """A partner system's webhook receiver (notify posts to it)."""

    received: list[dict[str, Any]] = field(default_factory=list)

    async def hook(self, request: Any) -> Any:
        from starlette.responses import Response

        self.received.append(json.loads(await request.body()))
        return Response(status_code=204)


@pytest.fixture(scope="module")
def collecting(platform: Platform, billed: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The partner collects into its own Stripe and GoCardless accounts (the sandboxes), with
    their webhooks pointed at payments; beta has subscriptions (one annual); the partner's system
    of record subscribes to customer changes."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from provider_sandboxes import running

    api = billed["api"]
    stripe_url, gocardless_url = platform.provider_url("stripe"), platform.provider_url("gocardless")
    stripe_key, gc_token, gc_secret = f"sk_test_{PARTNER}-portal", f"sandbox_{PARTNER}-portal", "gc-portal-" + "s" * 32
    hook = httpx.post(
        f"{stripe_url}/v1/webhook_endpoints",
        data={"url": f"{platform.url('payments')}/v1/webhooks/stripe/{PARTNER}"},
        headers={"Authorization": f"Bearer {stripe_key}"},
    )
    api.ok("PUT", "payments", "/v1/providers/stripe", "partner", {"api_key": stripe_key, "webhook_secret": hook.json()["secret"]})
    gc_hook = {"url": f"{platform.url('payments')}/v1/webhooks/gocardless/{PARTNER}", "secret": gc_secret}
    httpx.post(f"{gocardless_url}/_sandbox/webhook_endpoints", json=gc_hook, headers={"Authorization": f"Bearer {gc_token}"})
    api.ok("PUT", "payments", "/v1/providers/gocardless", "partner", {"api_key": gc_token, "webhook_secret": gc_secret})

    monthly = {"name": "Microsoft 365 Business", "quantity_rule": "contracted", "unit_price": "11.70", "currency": "EUR", "unit": "user"}
    annual = {**monthly, "name": "Firewall licence", "unit_price": "240.00", "unit": "device", "policy": {"interval": "year", "timing": "advance"}}
    api.ok("PUT", "rating", "/v1/products/M365-BP", "partner", monthly)
    api.ok("PUT", "rating", "/v1/products/FW-YEAR", "partner", annual)
    today = datetime.now(UTC).date().isoformat()
    orders = [
        {"id": "beta-m365", "customer_id": "beta", "product_code": "M365-BP", "quantity": "12", "start_date": today},
        {"id": "beta-fw", "customer_id": "beta", "product_code": "FW-YEAR", "quantity": "2", "start_date": today},
    ]
    api.orders("partner", orders)
    hooks = Hooks()
    with running(Starlette(routes=[Route("/hook", hooks.hook, methods=["POST"])])) as receiver:
        api.ok("POST", "notify", "/v1/webhook-endpoints", "partner", {"url": f"{receiver.url}/hook", "event_types": ["billing.customer.upserted.v1"]})
        yield {"stripe": stripe_url, "stripe_key": stripe_key, "gocardless": gocardless_url, "gc_token": gc_token, "hooks": hooks}


def test_a_customer_adds_a_card_and_a_mandate_at_the_providers_pages_and_chooses_the_default(
    platform: Platform, billed: dict[str, Any], collecting: dict[str, Any], browser: Any, pay_shots: Any
) -> None:
    api, accounts = billed["api"], billed["accounts"]
    invite(api, "bob@beta.example", "Bob Beta", "customer_admin", "beta")
    page = sign_in(browser, link_for(platform, "bob@beta.example", set()))
    open_page(page, "Payment methods", "payment-methods")
    assert page.locator("#no-methods").is_visible()
    pay_shots(page, "payment-methods-empty")

    # The card: the portal sends the browser to the provider's page, the card number is typed there.
    page.click("#add-card")
    page.wait_for_url(f"{collecting['stripe']}/checkout/**")
    assert "Set up a card" in page.content() and "Beta Law" in page.content()
    page.fill("input[name=cardnumber]", "4000 0000 0000 0002")
    page.fill("input[name=exp]", "12 / 34")
    page.fill("input[name=cvc]", "123")
    page.fill("input[name=name]", "Bob Beta")
    page.click("#submit")
    assert "Your card was declined." in page.content()  # the provider's page says so; nothing is saved
    page.fill("input[name=cardnumber]", "4242 4242 4242 4242")
    page.fill("input[name=exp]", "12 / 34")
    page.fill("input[name=cvc]", "123")
    page.fill("input[name=name]", "Bob Beta")
    pay_shots(page, "stripe-checkout-sandbox")
    page.click("#submit")
    page.wait_for_url(f"{platform.url('portal')}/p/{PARTNER}/payment-methods?added=*")
    assert "saved and is now the default" in page.locator("#flash").inner_text()
    row = page.locator("#methods tbody tr").first
    assert "Visa •••• 4242" in row.inner_text() and row.locator(".default").inner_text() == "Default"
    assert "Expires 12/2034" in row.inner_text()
    pay_shots(page, "payment-methods-card-default")

    # What payments and Stripe hold: the card is the buyer's default, saved to its Stripe customer.
    methods = api.ok("GET", "payments", f"/v1/accounts/{accounts['beta']}/payment-methods", "partner")["items"]
    [card] = methods
    assert (card["type"], card["status"], card["is_default"], card["details"]["last4"]) == ("card", "active", True, "4242")
    pm = httpx.get(f"{collecting['stripe']}/v1/payment_methods/{card['method_ref']}", headers={"Authorization": f"Bearer {collecting['stripe_key']}"}).json()
    assert pm["customer"] and pm["card"]["last4"] == "4242"

    def summary_with_both_subscriptions() -> bool:  # rating learns the orders from usage-ingest's events
        page.goto(platform.url("portal") + f"/p/{PARTNER}/account")
        return page.locator("#subscriptions tbody tr").count() == 2

    eventually_sync(summary_with_both_subscriptions, "beta's two subscriptions on its account summary")
    assert page.locator("#default-method").inner_text() == "Visa •••• 4242"
    subscriptions = {r.get_attribute("data-subscription"): r.inner_text() for r in page.locator("#subscriptions tbody tr").all()}
    assert len(subscriptions) == 2
    annual, monthly = (next(t for t in subscriptions.values() if name in t) for name in ("Firewall licence", "Microsoft 365 Business"))
    assert "2 device" in annual and "Annual" in annual and "12 user" in monthly and "Monthly" in monthly
    pay_shots(page, "account-summary-subscriptions")

    # A Direct Debit mandate on GoCardless's page: the newest method becomes the default.
    open_page(page, "Payment methods", "payment-methods")
    page.click("#add-direct-debit")
    page.wait_for_url(f"{collecting['gocardless']}/_sandbox/flows/**")
    page.fill("input[name=account_holder_name]", "Beta Law")
    page.fill("input[name=iban]", "DE89 3704 0044 0532 0130 00")
    pay_shots(page, "gocardless-flow-sandbox")
    page.click("#submit")
    page.wait_for_url(f"{platform.url('portal')}/p/{PARTNER}/payment-methods?added=*")
    rows = {r.get_attribute("data-method"): r for r in page.locator("#methods tbody tr").all()}
    mandate_id = next(m for m in rows if m != card["method_id"])
    assert "Direct Debit · MD" in rows[mandate_id].inner_text() and rows[mandate_id].locator(".default").count() == 1
    assert rows[card["method_id"]].locator(".default").count() == 0
    pay_shots(page, "payment-methods-card-and-mandate")

    # Back to the card as the default, then the mandate removed (cancelled at GoCardless).
    rows[card["method_id"]].locator("text=Make default").click()
    page.wait_for_url("**?default=*")
    assert page.locator(f"tr[data-method='{card['method_id']}'] .default").count() == 1
    page.locator(f"tr[data-method='{mandate_id}']").locator("text=Remove").click()
    page.wait_for_url("**?removed=*")
    assert page.locator("#methods tbody tr").count() == 1
    pay_shots(page, "payment-methods-after-remove")
    mandate = api.ok("GET", "payments", f"/v1/accounts/{accounts['beta']}/payment-methods/{mandate_id}", "partner")
    assert mandate["removed_at"] and mandate["status"] == "cancelled"
    gc_mandate = httpx.get(f"{collecting['gocardless']}/mandates/{mandate['method_ref']}", headers={"Authorization": f"Bearer {collecting['gc_token']}"}).json()
    assert gc_mandate["mandates"]["status"] == "cancelled"
    # A form without its CSRF token changes nothing.
    refused = page.context.request.post(platform.url("portal") + f"/p/{PARTNER}/payment-methods/{card['method_id']}/remove", form={"x": "y"})
    assert refused.status == 403
    page.context.close()

    # Another customer's session edits the URL to beta's card: the service says 404, and a
    # removal posted with a good CSRF token finds nothing either.
    invite(api, "carl@alpha.example", "Carl Alpha", "customer_admin", "alpha")
    page = sign_in(browser, link_for(platform, "carl@alpha.example", set()))
    response = page.goto(platform.url("portal") + f"/p/{PARTNER}/payment-methods/{card['method_id']}")
    assert response is not None and response.status == 404
    pay_shots(page, "payment-method-other-account-404")
    page.goto(platform.url("portal") + f"/p/{PARTNER}/payment-methods")
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    removal = page.context.request.post(platform.url("portal") + f"/p/{PARTNER}/payment-methods/{card['method_id']}/remove", form={"csrf_token": csrf})
    assert removal.status == 404
    assert api.ok("GET", "payments", f"/v1/accounts/{accounts['beta']}/payment-methods/{card['method_id']}", "partner")["removed_at"] is None
    page.context.close()


def test_a_customer_edits_its_billing_profile_and_the_partner_system_receives_it(
    platform: Platform, billed: dict[str, Any], collecting: dict[str, Any], browser: Any, pay_shots: Any
) -> None:
    api, accounts = billed["api"], billed["accounts"]
    invite(api, "bea@beta.example", "Bea Beta", "customer_admin", "beta")
    page = sign_in(browser, link_for(platform, "bea@beta.example", set()))
    open_page(page, "Billing profile", "profile")
    assert page.locator("#billing_email").input_value() == "billing@beta.example"
    page.fill("#contact_name", "Bea Beta")
    page.fill("#contact_phone", "+353 1 555 0100")
    page.fill("#billing_email", "accounts@beta.example")
    page.fill("#address_line1", "7 Merrion Square")
    page.fill("#postal_code", "D02 X285")
    page.fill("#city", "Dublin")
    page.fill("#vat_id", "IE1234567X")  # a wrong check letter
    page.click("#save-profile")
    assert page.locator("#vat_id-error").inner_text() == "This is not a valid VAT number for your country. Check the digits, or leave it empty."
    assert page.locator("#city").input_value() == "Dublin"  # what was typed stays on the form
    pay_shots(page, "billing-profile-invalid-vat")
    assert api.ok("GET", "usage-ingest", "/v1/customers/beta", "partner")["revision"] == 1  # nothing saved
    page.fill("#vat_id", "IE 6388047 V")
    page.click("#save-profile")
    page.wait_for_url("**/profile?saved=1")
    assert page.locator("#vat_id").input_value() == "IE6388047V"
    pay_shots(page, "billing-profile-saved")

    customer = api.ok("GET", "usage-ingest", "/v1/customers/beta", "partner")
    assert (customer["billing_email"], customer["contact_name"], customer["vat_id"]) == ("accounts@beta.example", "Bea Beta", "IE6388047V")
    assert customer["revision"] == 2
    assert customer["address"] == {"lines": ["7 Merrion Square"], "city": "Dublin", "postal_code": "D02 X285", "region": None, "country": "IE"}

    def delivered() -> dict[str, Any] | None:
        return next((h["data"] for h in collecting["hooks"].received if h["data"]["revision"] == 2 and h["data"]["external_id"] == "beta"), None)

    data = eventually_sync(delivered, "CustomerUpserted at the partner's webhook")
    assert (data["billing_email"], data["contact_phone"], data["address"]["city"]) == ("accounts@beta.example", "+353 1 555 0100", "Dublin")
    refused = page.context.request.post(platform.url("portal") + f"/p/{PARTNER}/profile", form={"billing_email": "x@y.example"})
    assert refused.status == 403
    # Another account's profile through the session's key: the service's 404.
    api.issue("alpha-writer", PARTNER, "write", account=accounts["alpha"])
    other = api.request("PUT", "usage-ingest", f"/v1/accounts/{accounts['beta']}/billing-profile", "alpha-writer", {"billing_email": "evil@x.example"})
    assert (other.status_code, other.json()["code"]) == (404, "account_not_found")
    page.context.close()


def test_a_customer_sees_its_payments_received_with_their_receipts(
    platform: Platform, billed: dict[str, Any], collecting: dict[str, Any], browser: Any, pay_shots: Any
) -> None:
    api, invoices = billed["api"], billed["invoices"]
    beta = invoices["beta"]
    eventually_sync(lambda: api.request("GET", "payments", f"/v1/invoices/{beta['id']}", "partner").status_code == 200, "payments to know beta's invoice")
    transfer = {"id": "bank-beta-1", "invoice_id": beta["id"], "amount": "10.00", "currency": "EUR", "received_on": "2026-11-12", "reference": beta["number"]}
    api.ok("POST", "payments", "/v1/payments", "partner", transfer)
    invite(api, "vic@beta.example", "Vic Viewer", "customer_viewer", "beta")
    page = sign_in(browser, link_for(platform, "vic@beta.example", set()))
    open_page(page, "Billing history", "invoices")
    row = page.locator("#payments tr[data-payment='bank-beta-1']")
    assert row.locator("td.amount").inner_text() == FMT.money("10.00", "EUR") == "€10.00"
    assert beta["number"] in row.inner_text() and FMT.date("2026-11-12") in row.inner_text()
    assert page.locator("#payments tbody tr").count() == 1  # alpha's payments are not beta's
    pay_shots(page, "billing-history-payments")
    row.locator("text=Receipt").click()
    page.wait_for_url("**/payments/bank-beta-1")
    assert page.locator("#receipt-amount").inner_text() == "€10.00"
    assert "Acme IT" in page.content() and FMT.money(Decimal(beta["total"]) - Decimal("10.00"), "EUR") in page.content()
    pay_shots(page, "payment-receipt")
    # A viewer sees the payment methods and the profile, and may change neither.
    # (The module's tests run in order on one worker, `--dist loadscope`: beta's card is on file.)
    [card] = api.ok("GET", "payments", f"/v1/accounts/{billed['accounts']['beta']}/payment-methods", "partner")["items"]
    open_page(page, "Payment methods", "payment-methods")
    assert page.locator("#add-card").count() == 0 and page.locator("#methods tbody tr").count() == 1
    page.locator(f"tr[data-method='{card['method_id']}'] a").click()
    page.wait_for_url(f"**/payment-methods/{card['method_id']}")
    assert page.locator("h1").inner_text().startswith("Visa •••• 4242") and page.locator("#method-status").inner_text() == "Active"
    pay_shots(page, "payment-method-viewer")
    open_page(page, "Billing profile", "profile")
    billing_email = api.ok("GET", "usage-ingest", "/v1/customers/beta", "partner")["billing_email"]
    assert page.locator("#save-profile").count() == 0 and page.locator("#billing_email").input_value() == billing_email
    pay_shots(page, "billing-profile-viewer")
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
        assert page.goto(base + path).status == 404, path

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
        "Acme IT Services",
        "#7A1F5C",
        "Acme IT Services Ltd, 1 Quay Street, Dublin",
        "billing@acme.example",
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
        assert page.goto(f"http://{host}:{port}/").status == 200
        assert page.locator("h1").inner_text() == f"Sign in to {brand['sender_name']}"
        color = page.locator("header.top").evaluate("e => getComputedStyle(e).backgroundColor")
        assert color == "rgb({}, {}, {})".format(*(int(brand["primary_color"][i : i + 2], 16) for i in (1, 3, 5)))
        shot(page, shots, "host-sign-in.png")
        # Another partner's portal is not on this host.
        assert page.goto(f"http://{host}:{port}/p/{DISTRIBUTOR}/").status == 404

        carl = {"email": "carl@beta.example", "name": "Carl Beta", "role": "customer_admin", "customer_id": "beta"}
        api.ok("POST", "portal", "/v1/portal/invitations", "partner", carl)

        def host_link() -> str | None:
            for message in reversed(mails(platform)):
                if message["To"] and "carl@beta.example" in message["To"]:
                    body = text_of(next(p for p in message.walk() if p.get_content_type() == "text/plain"))
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
