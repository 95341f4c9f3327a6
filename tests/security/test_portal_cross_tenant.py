"""The portal in the cross-tenant matrix: every page of the portal (read from its routes, so a new
page is attacked without touching this file), run with partner A's staff session and with a
session of A's customer, naming partner B's objects (and, for the customer, those of A's other
customer): its invoices and credit notes with their PDF and XML, its statement from the
distributor with the comparison report, its deliveries, a sign-in link of B's. Each answer is a
refusal (404 for an object, 410 for a link, 403 for a page the role may not open; a page of B's
portal: its sign-in form) and carries none of B's data (names, invoice and credit note numbers,
ids, amounts; HTML, PDF, XML and XLSX bodies are read). Sessions are accepted only on the portal
and at the host where they were opened.

The portal calls the in-process services through their ASGI apps (`wire`), with the session's own
keys, exactly as it calls them over the network; partners[2] is the distributor that bills A and B."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pypdf import PdfReader

from billing_events import PeriodClosed, account_id, new_event, to_kafka
from billing_runtime.testing import eventually
from portal import accounts, hosts
from portal.i18n import Formatter

if TYPE_CHECKING:  # the fixtures give them; conftest is not importable as a module
    from tests.security.conftest import Partner, Platform

pytestmark = pytest.mark.asyncio(loop_scope="module")
FMT = Formatter("en")
SERVICES = ("invoicing", "rating", "dunning", "notify", "usage-ingest", "payments")
PARTNER_PAGES = {"statement", "customers", "users", "margins", "reports", "dunning", "deliveries", "brand"}
CUSTOMER_PAGES = {"payment-methods", "payments", "profile"}  # a partner's staff have no account of their own: 403
PRICES = ("1440.29", "1234.57")  # A's and B's: their amounts differ, so either one found in a page is a leak


@dataclass
class World:
    """One partner's objects as its portal shows them, and every datum that names them."""

    partner: Partner
    distributor: str
    customers: tuple[str, str]
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)  # customer id → invoice
    credit_note: dict[str, Any] = field(default_factory=dict)  # on the second customer's invoice
    wholesale: dict[str, Any] = field(default_factory=dict)  # the distributor's invoice to this partner
    report_id: str = ""
    delivery_id: str = ""
    link_token: str = ""
    method_ids: tuple[str, str] = ("", "")  # a payment method of each customer
    payment_id: str = ""  # a payment received on the second customer's invoice

    @property
    def tenant(self) -> str:
        return self.partner.tenant

    def name(self, customer: str) -> str:
        return f"{self.partner.marker} {customer[-3:]} Dental"

    def data(self) -> set[str]:
        """Everything of this partner's that another partner must never see."""
        found = {self.partner.marker, self.credit_note["id"], self.credit_note["number"], self.report_id, self.delivery_id, self.wholesale["id"]}
        found |= {*self.method_ids, self.payment_id}
        found |= {self.wholesale["number"], FMT.money(self.wholesale["total"], "EUR")}
        for invoice in self.invoices.values():
            found |= {invoice["id"], invoice["number"], FMT.money(invoice["total"], "EUR"), invoice["total"]}
        return found

    def of_second_customer(self) -> set[str]:
        """What a contact of the first customer must never see of the second."""
        second = self.invoices[self.customers[1]]
        found = {self.name(self.customers[1]), second["id"], second["number"], self.credit_note["id"], self.credit_note["number"]}
        return found | {self.method_ids[1], self.payment_id}


def wire(platform: Platform) -> FastAPI:
    """The portal of the security platform, calling the other in-process apps (its distributor: partners[2])."""
    portal = platform.apps["portal"]
    services = portal.state.services
    services.urls = {name: f"http://{name}.internal" for name in SERVICES}
    services.http = httpx.AsyncClient(mounts={f"http://{name}.internal": httpx.ASGITransport(app=platform.apps[name]) for name in SERVICES}, timeout=30)
    portal.state.runtime.settings.distributor_tenant = platform.partners[2].tenant
    return portal


def period_closed(seller: str, buyer: str, price: str, marker: str, tier: str) -> PeriodClosed:
    line = {
        "line_id": str(uuid.uuid4()),
        "product_code": "SUP",
        "description": f"Support, {marker}",
        "category": None,
        "service_period_start": "2026-10-01",
        "service_period_end": "2026-10-31",
        "quantity": "3",
        "unit_price": {"amount": price, "currency": "EUR"},
        "amount": {"amount": str(Decimal(price) * 3), "currency": "EUR"},
        "quantity_rule": "contracted",
        "end_customer_id": None,
    }
    closed = {"bill_run_id": str(uuid.uuid4()), "seller_id": seller, "buyer_account_id": buyer, "period_start": "2026-10-01", "period_end": "2026-10-31"}
    return PeriodClosed.model_validate({**closed, "currency": "EUR", "tier": tier, "lines": [line]})


async def publish(platform: Platform, *events: tuple[str, PeriodClosed]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=platform.bootstrap)
    await producer.start()
    try:
        for tenant, closed in events:
            message = to_kafka(new_event(closed, source="/services/rating", tenant=tenant, subject=closed.buyer_account_id))
            await producer.send_and_wait(message.topic, message.value, key=message.key, headers=message.headers)
    finally:
        await producer.stop()


async def build_world(platform: Platform, p: Partner, price: str) -> World:
    c, t, m = platform.clients, p.tenant, p.marker
    distributor = platform.partners[2]
    w = World(p, distributor.tenant, (f"{t}-c01", f"{t}-c02"))

    async def ok(service: str, method: str, path: str, body: Any = None, who: Partner = p) -> Any:
        r = await c[service].request(method, path, json=body, headers={**who.headers("admin"), "Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code in (200, 201), f"building {t}'s world: {service} {method} {path} → {r.status_code} {r.text[:300]}"
        return r.json() if r.content else None

    records = [{"id": cust, "name": w.name(cust), "billing_email": f"ap@{cust}.example", "country": "IE", "currency": "EUR"} for cust in w.customers]
    await ok("usage-ingest", "POST", "/v1/customers", {"records": records})
    letters = "".join(ch for ch in t.upper() if ch.isalnum())[-8:]
    seller = {"name": f"{m} Seller", "country": "IE", "vat_id": None, "invoice_prefix": letters, "due_rule": {"net_days": 14}}
    await ok("invoicing", "PUT", "/v1/seller", seller)
    await ok("notify", "PUT", "/v1/brand", {"sender_name": f"Portal {letters}", "sender_email": f"billing@{t}.example", "primary_color": "#0B5394"})
    # The distributor knows the partner as its customer, and bills it wholesale.
    partner_record = {"id": t, "name": f"{m} Partner", "billing_email": f"ap@{t}.example", "country": "IE", "currency": "EUR"}
    await ok("usage-ingest", "POST", "/v1/customers", {"records": [partner_record]}, who=distributor)
    # Invoicing learns buyers from CustomerUpserted, another topic than the periods': wait for them,
    # or a period could reach it first and be refused for a buyer without a country.
    buyers = [(p, account_id(t, cust)) for cust in w.customers] + [(distributor, account_id(distributor.tenant, t))]

    async def buyers_known() -> bool:
        for seller, buyer in buyers:
            if (await c["invoicing"].get(f"/v1/buyers/{buyer}/vat-checks", headers=seller.headers("read"))).status_code != 200:
                return False
        return True

    await eventually(buyers_known, f"invoicing to know {t}'s buyers", timeout=90)
    retail = [(t, period_closed(t, account_id(t, cust), price, m, "retail")) for cust in w.customers]
    await publish(platform, *retail, (distributor.tenant, period_closed(distributor.tenant, account_id(distributor.tenant, t), price, m, "wholesale")))

    async def invoiced() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = (await c["invoicing"].get("/v1/invoices", headers=p.headers("admin"))).json()["items"]
        return items if len(items) == 2 else None

    by_account = {i["buyer_account_id"]: i for i in await eventually(invoiced, f"{t}'s invoices", timeout=90)}
    w.invoices = {cust: by_account[account_id(t, cust)] for cust in w.customers}

    async def billed_wholesale() -> dict[str, Any] | None:
        params = {"buyer_account_id": account_id(distributor.tenant, t)}
        items = (await c["invoicing"].get("/v1/invoices", params=params, headers=distributor.headers("admin"))).json()["items"]
        return items[0] if items else None

    w.wholesale = await eventually(billed_wholesale, f"the distributor's invoice to {t}", timeout=90)

    async def reported() -> str | None:
        params = {"buyer_account_id": account_id(distributor.tenant, t)}
        items = (await c["invoicing"].get("/v1/comparison-reports", params=params, headers=distributor.headers("admin"))).json()["items"]
        return str(items[0]["id"]) if items else None

    w.report_id = await eventually(reported, f"the comparison report on {t}'s invoice", timeout=90)
    second = w.invoices[w.customers[1]]["id"]

    async def known_to_payments() -> bool:
        return (await c["payments"].get(f"/v1/invoices/{second}", headers=p.headers("admin"))).status_code == 200

    await eventually(known_to_payments, "payments to learn the invoice", timeout=90)
    w.credit_note = await ok("invoicing", "POST", f"/v1/invoices/{second}/credit-notes", {"amount": "100.00", "reason": f"{m} goodwill"})
    for n, cust in enumerate(w.customers):
        method = {"id": f"{t}-pm{n}", "type": "bank_transfer", "name": w.name(cust)}
        await ok("payments", "POST", f"/v1/accounts/{account_id(t, cust)}/payment-methods", method)
    w.method_ids = (f"{t}-pm0", f"{t}-pm1")
    transfer = {"id": f"{t}-pay", "invoice_id": second, "amount": "500.00", "currency": "EUR", "received_on": "2026-11-15", "reference": m}
    w.payment_id = (await ok("payments", "POST", "/v1/payments", transfer))["payment_id"]

    async def delivered() -> str | None:
        items = (await c["notify"].get("/v1/deliveries", headers=p.headers("admin"))).json()["items"]
        return str(items[0]["delivery_id"]) if items else None

    w.delivery_id = await eventually(delivered, f"an email to {t}'s customer", timeout=90)
    return w


@dataclass
class Browser:
    """The portal as a browser reaches it, one request at a time, carrying only the cookie given."""

    client: httpx.AsyncClient

    async def get(self, path: str, cookie: str | None = None, host: str | None = None) -> httpx.Response:
        self.client.cookies.clear()
        headers = {"cookie": f"portal_session={cookie}"} if cookie else {}
        if host:
            headers["host"] = host
        return await self.client.get(path, headers=headers)

    async def post(self, path: str, form: dict[str, str], cookies: dict[str, str], host: str | None = None) -> httpx.Response:
        self.client.cookies.clear()
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} | ({"host": host} if host else {})
        return await self.client.post(path, data=form, headers=headers)

    async def sign_in(self, link: str, host: str | None = None) -> str:
        """Open the emailed link and press Sign in; the session cookie."""
        path = urlsplit(link).path
        page = await self.get(path, host=host)
        assert page.status_code == 200, page.text[:300]
        pre = page.cookies["portal_pre"]
        csrf = csrf_of(page.text)
        signed = await self.post(path, {"csrf_token": csrf}, {"portal_pre": pre}, host=host)
        assert signed.status_code == 303, signed.text[:300]
        return str(signed.cookies["portal_session"])


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def readable(r: httpx.Response) -> str:
    if r.headers.get("content-type", "").startswith("application/pdf"):
        return "\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(r.content)).pages)
    if r.content[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
            return "\n".join(archive.read(n).decode("utf-8", "replace") for n in archive.namelist() if n.endswith(".xml"))
    return r.content.decode("utf-8", "replace")


async def invite(portal: FastAPI, tenant: str, email: str, role: str, customer: str | None = None, host: bool = False) -> str:
    """A user and its sign-in link, as `POST /v1/portal/invitations` makes them (the link straight from the call)."""
    runtime = portal.state.runtime
    url = await hosts.portal_url(portal, tenant) if host else f"{runtime.settings.public_base_url}/p/{tenant}"
    async with runtime.transaction() as session:
        _, link = await accounts.invite(
            runtime,
            session,
            tenant=tenant,
            email=email,
            name=None,
            role=role,
            customer_id=customer,
            invited_by="security test",
            portal_url=url,
            link_minutes=15,
        )
    return link


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def worlds(platform: Platform) -> tuple[World, World]:
    wire(platform)
    distributor = platform.partners[2]
    seller = {"name": f"{distributor.marker} Distribution", "country": "IE", "vat_id": None, "invoice_prefix": "DIST", "due_rule": {"net_days": 30}}
    r = await platform.clients["invoicing"].put("/v1/seller", json=seller, headers=distributor.headers("admin"))
    assert r.status_code == 200, r.text
    a, b = await asyncio.gather(*(build_world(platform, p, price) for p, price in zip(platform.partners[:2], PRICES, strict=True)))
    b.link_token = (await invite(platform.apps["portal"], b.tenant, f"staff@{b.tenant}.example", "partner_admin")).rsplit("/", 1)[1]
    return a, b


def page_routes(portal: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every page of the portal (`/p/{partner}/…`)."""
    found = [
        (method, context.path)
        for context in iter_route_contexts(portal.routes)
        if isinstance(context.original_route, APIRoute) and context.path is not None and context.path.startswith("/p/{partner}")
        for method in sorted(set(context.methods or ()) - {"HEAD"})
    ]
    assert len(found) >= 25, f"only {len(found)} portal pages found"
    return found


def ids_for(path: str, victim: World, customer_view: World | None) -> list[str]:
    """The path with the victim's objects named in it, every way the route takes them."""
    choices: dict[str, list[str]] = {
        "invoice_id": [victim.invoices[victim.customers[0]]["id"], victim.wholesale["id"]],
        "credit_note_id": [victim.credit_note["id"]],
        "report_id": [victim.report_id],
        "delivery_id": [victim.delivery_id],
        "method_id": [*victim.method_ids],
        "payment_id": [victim.payment_id],
        "token": [victim.link_token],
        "fmt": ["pdf", "xml"],
    }
    if customer_view is not None:  # the customer also tries its own partner's other customer
        choices["invoice_id"].append(customer_view.invoices[customer_view.customers[1]]["id"])
        choices["credit_note_id"].append(customer_view.credit_note["id"])
        choices["method_id"].append(customer_view.method_ids[1])
        choices["payment_id"].append(customer_view.payment_id)
    paths = [path]
    for name in re.findall(r"{([^}]+)}", path):
        if name == "partner":
            continue
        assert name in choices, f"{path}: no object of the victim's for {name!r}; add it to ids_for"
        paths = [p.replace(f"{{{name}}}", value) for p in paths for value in choices[name]]
    return paths


async def test_every_page_refuses_another_partners_and_another_accounts_objects(platform: Platform, worlds: tuple[World, World]) -> None:
    a, b = worlds
    portal = platform.apps["portal"]
    browser = Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app=portal), base_url="http://portal.internal"))
    staff = await browser.sign_in(await invite(portal, a.tenant, f"admin@{a.tenant}.example", "partner_admin"))
    contact = await browser.sign_in(await invite(portal, a.tenant, f"ann@{a.customers[0]}.example", "customer_admin", a.customers[0]))
    # Both sessions work on their own portal (so a refusal below is the object's, not the session's).
    assert "Sign out" in (await browser.get(f"/p/{a.tenant}/statement", staff)).text
    assert "Sign out" in (await browser.get(f"/p/{a.tenant}/account", contact)).text

    failures: list[str] = []
    requests = 0
    for method, route in page_routes(portal):
        if method != "GET":
            continue
        for who, cookie, forbidden in (("staff", staff, b.data()), ("customer", contact, b.data() | a.of_second_customer())):
            for path in ids_for(route, b, a if who == "customer" else None):
                own = path.replace("{partner}", a.tenant)
                r = await browser.get(own, cookie)
                requests += 1
                page = own.split("/")[3]
                if re.search(r"{(?!partner})", route):  # the route names an object
                    not_for_role = (who == "customer" and page in PARTNER_PAGES) or (who == "staff" and page in CUSTOMER_PAGES)
                    expected = {410} if "{token}" in route else ({403} if not_for_role else {404})
                    if r.status_code not in expected:
                        failures.append(f"{who} GET {own} → {r.status_code}, expected {sorted(expected)}")
                elif r.status_code >= 500:
                    failures.append(f"{who} GET {own} → {r.status_code}")
                if found := sorted(d for d in forbidden if d in readable(r) and d not in own):
                    failures.append(f"{who} GET {own} → {r.status_code} shows {found}")
                # The victim's own portal, with this session's cookie: not signed in there.
                theirs = path.replace("{partner}", b.tenant)
                r = await browser.get(theirs, cookie)
                requests += 1
                if r.status_code >= 500 or "Sign out" in r.text:
                    failures.append(f"{who} GET {theirs} (B's portal) → {r.status_code}, signed in: {'Sign out' in r.text}")
                if found := sorted(d for d in forbidden if d in readable(r) and d not in theirs):
                    failures.append(f"{who} GET {theirs} (B's portal) → {r.status_code} shows {found}")
    assert not failures, "\n".join(failures)
    print(f"portal cross-tenant: {len(page_routes(portal))} pages, {requests} requests")

    # Forms of B's portal with A's session and A's CSRF token: refused, nothing of B's changes.
    csrf = csrf_of((await browser.get(f"/p/{a.tenant}/brand", staff)).text)
    posted = await browser.post(f"/p/{b.tenant}/brand", {"csrf_token": csrf, "sender_name": "Spy", "primary_color": "#000000"}, {"portal_session": staff})
    assert "Sign out" not in posted.text
    brand = (await platform.clients["notify"].get("/v1/brand", headers=b.partner.headers("read"))).json()
    assert brand["sender_name"].startswith("Portal ")
    signed = await browser.post(f"/p/{a.tenant}/sign-in/{b.link_token}", {"csrf_token": csrf}, {"portal_session": staff})
    assert signed.status_code in (403, 410) and "portal_session" not in signed.cookies
    # B's link was not used up by the attempt: it still opens B's sign-in page.
    assert (await browser.get(f"/p/{b.tenant}/sign-in/{b.link_token}")).status_code == 200
    # A's sessions still work (an attacker's request in B's portal ended nothing).
    assert "Sign out" in (await browser.get(f"/p/{a.tenant}/statement", staff)).text


async def test_a_session_works_only_where_it_was_opened(platform: Platform, worlds: tuple[World, World]) -> None:
    a, b = worlds
    portal = platform.apps["portal"]
    browser = Browser(httpx.AsyncClient(transport=httpx.ASGITransport(app=portal), base_url="http://portal.internal"))
    host_a, host_b = f"{a.tenant}.portal.test", f"{b.tenant}.portal.test"
    for world, host in ((a, host_a), (b, host_b)):
        r = await platform.clients["portal"].put("/v1/portal/host", json={"host": host}, headers=world.partner.headers("admin"))
        assert r.status_code == 200 and r.json()["host"] == host, r.text
    taken = await platform.clients["portal"].put("/v1/portal/host", json={"host": host_a}, headers=b.partner.headers("admin"))
    assert (taken.status_code, taken.json()["code"]) == (409, "host_taken")
    mine = await platform.clients["portal"].get("/v1/portal/host", headers=b.partner.headers("read"))
    assert mine.json()["host"] == host_b
    try:
        link = await invite(portal, a.tenant, f"host-admin@{a.tenant}.example", "partner_admin", host=True)
        assert urlsplit(link).hostname == host_a and urlsplit(link).path.startswith("/sign-in/")
        on_host = await browser.sign_in(link, host=host_a)
        plain = await browser.sign_in(await invite(portal, a.tenant, f"plain@{a.tenant}.example", "partner_finance"))

        assert "Sign out" in (await browser.get("/statement", on_host, host=host_a)).text
        assert "Sign out" in (await browser.get(f"/p/{a.tenant}/statement", on_host, host=host_a)).text
        # Not on the portal's own address, not on B's host, and the plain session not on A's host.
        visits: tuple[tuple[str, Any, str | None], ...] = (
            (f"/p/{a.tenant}/statement", on_host, None),
            ("/statement", on_host, host_b),
            ("/statement", plain, host_a),
        )
        for path, cookie, visited in visits:
            r = await browser.get(path, cookie, host=visited)
            assert r.status_code < 500 and "Sign out" not in r.text, (path, visited)
            assert not {d for d in a.data() | b.data() if d in r.text}, (path, host)
        # A's host shows no other partner's portal, whatever the path.
        for path in (f"/p/{b.tenant}/", f"/p/{b.tenant}/statement", f"/p/{b.tenant}/invoices/{b.invoices[b.customers[0]]['id']}"):
            r = await browser.get(path, on_host, host=host_a)
            assert r.status_code == 404 and not {d for d in b.data() if d in r.text}, path
        # B's host: B's sign-in page, in B's brand, whoever's cookie comes along.
        r = await browser.get("/", on_host, host=host_b)
        assert r.status_code == 200 and "Sign out" not in r.text and f"Portal {''.join(ch for ch in b.tenant.upper() if ch.isalnum())[-8:]}" in r.text
    finally:
        for world in (a, b):
            await platform.clients["portal"].delete("/v1/portal/host", headers=world.partner.headers("admin"))
    # Without the mapping the host serves no portal of A's, and its session signs no one in.
    r = await browser.get("/statement", on_host, host=host_a)
    assert r.status_code == 404 or "Sign out" not in r.text
