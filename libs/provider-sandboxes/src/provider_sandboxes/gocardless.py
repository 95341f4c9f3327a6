"""A local GoCardless: customers, billing requests and their hosted flow, mandates, payments,
refunds, events and the scenario simulators, with idempotency keys answered as GoCardless answers
them (409 `idempotent_creation_conflict` naming the resource first created) and signed webhooks.

Each access token is an account (a creditor) of its own. The payer's side of a billing request
flow (the hosted page where they give their bank details) is `POST /_sandbox/flows/{id}/complete`.
Webhook endpoints are set with `POST /_sandbox/webhook_endpoints` `{"url", "secret"}`, as one
would in GoCardless's dashboard.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from provider_sandboxes import hosted
from provider_sandboxes.common import Sandbox, apply_fault_after, bearer, new_id
from provider_sandboxes.signing import gocardless_signature

# Why a payment fails, as GoCardless reports it in an event's details.
FAILURE_DETAILS: dict[str, dict[str, str]] = {
    "payment_failed": {
        "origin": "bank",
        "cause": "insufficient_funds",
        "scheme": "sepa_core",
        "reason_code": "AM04",
        "description": "The customer's account had insufficient funds to make this payment.",
    },
    "payment_late_failure": {
        "origin": "bank",
        "cause": "refer_to_payer",
        "scheme": "sepa_core",
        "reason_code": "MS03",
        "description": "The customer's bank returned this payment after it was collected.",
    },
    "payment_charged_back": {
        "origin": "bank",
        "cause": "payment_chargeback",
        "scheme": "sepa_core",
        "reason_code": "MD06",
        "description": "The customer disputed this payment with their bank.",
    },
    "mandate_failed": {
        "origin": "bank",
        "cause": "invalid_bank_details",
        "scheme": "sepa_core",
        "reason_code": "AC01",
        "description": "The bank account details are invalid.",
    },
}

# scenario → (resource type, states it may start from, the actions it walks through)
SCENARIOS: dict[str, tuple[str, set[str], list[str]]] = {
    "payment_submitted": ("payments", {"pending_submission"}, ["submitted"]),
    "payment_confirmed": ("payments", {"pending_submission", "submitted"}, ["submitted", "confirmed"]),
    "payment_paid_out": ("payments", {"pending_submission", "submitted"}, ["submitted", "confirmed", "paid_out"]),
    "payment_failed": ("payments", {"pending_submission", "submitted"}, ["submitted", "failed"]),
    "payment_late_failure": ("payments", {"pending_submission", "submitted", "confirmed", "paid_out"}, ["submitted", "confirmed", "paid_out", "late_failure"]),
    "payment_charged_back": ("payments", {"pending_submission", "submitted", "confirmed", "paid_out"}, ["submitted", "confirmed", "paid_out", "charged_back"]),
    "mandate_activated": ("mandates", {"pending_customer_approval", "pending_submission", "submitted"}, ["submitted", "active"]),
    "mandate_failed": ("mandates", {"pending_customer_approval", "pending_submission", "submitted"}, ["submitted", "failed"]),
    "mandate_expired": ("mandates", {"pending_submission", "submitted", "active"}, ["expired"]),
}
_STATUS_OF_ACTION = {"paid_out": "paid_out", "late_failure": "failed", "charged_back": "charged_back", "active": "active"}
_PREFIX = {
    "customers": "CU",
    "billing_requests": "BRQ",
    "billing_request_flows": "BRF",
    "mandates": "MD",
    "payments": "PM",
    "refunds": "RF",
    "customer_bank_accounts": "BA",
    "events": "EV",
}


class GoCardlessError(Exception):
    def __init__(self, status: int, type_: str, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {
                "message": message,
                "type": type_,
                "code": status,
                "request_id": new_id("", 20),
                "documentation_url": f"https://developer.gocardless.com/api-reference#{type_}",
                "errors": errors or [{"message": message, "reason": type_}],
            }
        }


_LOST = GoCardlessError(500, "gocardless", "sandbox: injected failure")


def _state(reason: str, message: str) -> GoCardlessError:
    return GoCardlessError(422, "invalid_state", message, [{"reason": reason, "message": message}])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class GoCardlessAccount:
    token: str
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    idempotent: dict[tuple[str, str], str] = field(default_factory=dict)  # (resource type, key) → id
    webhooks: list[dict[str, str]] = field(default_factory=list)
    creditor_id: str = field(default_factory=lambda: new_id("CR", 12).upper())

    def table(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.resources.setdefault(kind, {})


@dataclass
class GoCardlessSandbox(Sandbox):
    accounts: dict[str, GoCardlessAccount] = field(default_factory=dict)
    flows: dict[str, tuple[str, str]] = field(default_factory=dict)  # flow id → (token, billing request id)

    def app(self) -> Starlette:
        create = self._create
        routes = [
            Route("/customers", create("customers", self.create_customer), methods=["POST"]),
            Route("/billing_requests", create("billing_requests", self.create_billing_request), methods=["POST"]),
            Route("/billing_request_flows", create("billing_request_flows", self.create_flow), methods=["POST"]),
            Route("/payments", create("payments", self.create_payment), methods=["POST"]),
            Route("/refunds", create("refunds", self.create_refund), methods=["POST"]),
            Route("/mandates/{id}/actions/cancel", self._action("mandates", self.cancel_mandate), methods=["POST"]),
            Route("/payments/{id}/actions/cancel", self._action("payments", self.cancel_payment), methods=["POST"]),
            Route("/scenario_simulators/{id}/actions/run", self._action("scenario_simulators", self.run_scenario), methods=["POST"]),
            Route("/_sandbox/flows/{id}/complete", self.complete_flow, methods=["GET", "POST"]),
            Route("/_sandbox/webhook_endpoints", self.add_webhook_endpoint, methods=["POST"]),
            Route("/_sandbox/webhook_endpoints", self.remove_webhook_endpoints, methods=["DELETE"]),
            Route("/_sandbox/faults", self.add_fault, methods=["POST"]),
            Route("/_sandbox/faults", self.clear_faults, methods=["DELETE"]),
            Route("/_sandbox/deliveries", self.list_deliveries, methods=["GET"]),
            # Last: the generic reads would otherwise take /_sandbox/deliveries.
            Route("/{kind}", self._list, methods=["GET"]),
            Route("/{kind}/{id}", self._get, methods=["GET"]),
        ]
        return Starlette(routes=routes)

    # --- plumbing -------------------------------------------------------------------------

    def _account(self, request: Request) -> tuple[str, GoCardlessAccount]:
        token = bearer(request)
        if not token:
            raise GoCardlessError(401, "invalid_api_usage", "Authentication failed: give an access token as a Bearer header.")
        return token, self.accounts.setdefault(token, GoCardlessAccount(token))

    async def _body(self, request: Request, envelope: str) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise GoCardlessError(400, "invalid_api_usage", "The request body is not valid JSON.") from exc
        inner = body.get(envelope, body) if isinstance(body, dict) else None
        if inner is None:
            return {}
        if not isinstance(inner, dict):
            raise GoCardlessError(400, "invalid_api_usage", f"Expected an object under {envelope!r}.")
        return inner

    def _create(self, kind: str, handler: Callable[[GoCardlessAccount, dict[str, Any], Request], dict[str, Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                _, account = self._account(request)
                params = await self._body(request, kind)
                key = request.headers.get("idempotency-key")
                if key and (kind, key) in account.idempotent:
                    raise GoCardlessError(
                        409,
                        "invalid_state",
                        "A resource has already been created with this idempotency key",
                        [
                            {
                                "reason": "idempotent_creation_conflict",
                                "message": "A resource has already been created with this idempotency key",
                                "links": {"conflicting_resource_id": account.idempotent[(kind, key)]},
                            }
                        ],
                    )
                fault = self.take_fault(request)
                if fault is not None and fault.mode == "error_before":
                    return JSONResponse(_LOST.body, status_code=500)
                resource = handler(account, params, request)
                if key:
                    account.idempotent[(kind, key)] = resource["id"]
                return await apply_fault_after(fault, JSONResponse({kind: resource}, status_code=201), _LOST.body)
            except GoCardlessError as exc:
                return JSONResponse(exc.body, status_code=exc.status)

        return endpoint

    def _action(
        self, kind: str, handler: Callable[[GoCardlessAccount, str, dict[str, Any], Request], tuple[str, dict[str, Any]]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                _, account = self._account(request)
                params = await self._body(request, "data")
                params = params.get(kind, params)
                envelope, resource = handler(account, request.path_params["id"], params, request)
                return JSONResponse({envelope: resource})
            except GoCardlessError as exc:
                return JSONResponse(exc.body, status_code=exc.status)

        return endpoint

    async def _get(self, request: Request) -> Response:
        try:
            _, account = self._account(request)
            fault = self.take_fault(request)
            if fault is not None and fault.mode == "error_before":
                return JSONResponse(_LOST.body, status_code=500)
            found = {request.path_params["kind"]: self._find(account, request.path_params["kind"], request.path_params["id"])}
            return await apply_fault_after(fault, JSONResponse(found), _LOST.body)
        except GoCardlessError as exc:
            return JSONResponse(exc.body, status_code=exc.status)

    async def _list(self, request: Request) -> Response:
        try:
            _, account = self._account(request)
        except GoCardlessError as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        fault = self.take_fault(request)
        if fault is not None and fault.mode == "error_before":
            return JSONResponse(_LOST.body, status_code=500)
        kind = request.path_params["kind"]
        items = account.events if kind == "events" else list(account.table(kind).values())
        for name, value in request.query_params.items():
            if name in {"limit", "after", "before"}:
                continue
            items = [i for i in items if i.get(name, i.get("links", {}).get(name)) == value]
        return await apply_fault_after(fault, JSONResponse({kind: items, "meta": {"cursors": {"before": None, "after": None}, "limit": 50}}), _LOST.body)

    @staticmethod
    def _find(account: GoCardlessAccount, kind: str, resource_id: str) -> dict[str, Any]:
        found = next((e for e in account.events if e["id"] == resource_id), None) if kind == "events" else account.table(kind).get(resource_id)
        if found is None:
            raise GoCardlessError(404, "invalid_api_usage", "Resource not found", [{"reason": "resource_not_found", "message": "Resource not found"}])
        return found

    def _new(self, account: GoCardlessAccount, kind: str, **fields: Any) -> dict[str, Any]:
        resource = {"id": new_id(_PREFIX[kind], 10).upper(), "created_at": _now(), **fields}
        account.table(kind)[resource["id"]] = resource
        return resource

    def _emit(
        self,
        account: GoCardlessAccount,
        resource_type: str,
        action: str,
        links: dict[str, str],
        details: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        event: dict[str, Any] = {
            "id": new_id("EV", 12).upper(),
            "created_at": _now(),
            "resource_type": resource_type,
            "action": action,
            "links": links,
            "details": details or {"origin": "gocardless", "cause": action, "description": f"{resource_type} {action}"},
            "metadata": metadata or {},
        }
        account.events.append(event)
        for endpoint in account.webhooks:
            body = json.dumps({"events": [event], "meta": {"webhook_id": new_id("WB", 12).upper()}}).encode()
            self.send_webhook(
                endpoint["url"],
                body,
                {"Webhook-Signature": gocardless_signature(body, endpoint["secret"])},
                [event["id"]],
                f"{resource_type}.{action}",
                account.token,
            )

    # --- resources ------------------------------------------------------------------------

    def create_customer(self, account: GoCardlessAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        if not params.get("email") and not params.get("company_name") and not params.get("family_name"):
            raise GoCardlessError(422, "validation_failed", "Validation failed", [{"field": "email", "message": "is required"}])
        keep = ("email", "given_name", "family_name", "company_name", "country_code", "language")
        return self._new(account, "customers", **{k: params.get(k) for k in keep}, metadata=params.get("metadata", {}))

    def create_billing_request(self, account: GoCardlessAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        links = params.get("links", {})
        if links.get("customer"):
            self._find(account, "customers", links["customer"])
        mandate_request = params.get("mandate_request")
        if not mandate_request:
            raise GoCardlessError(422, "validation_failed", "Validation failed", [{"field": "mandate_request", "message": "is required"}])
        brq = self._new(
            account,
            "billing_requests",
            status="pending",
            metadata=params.get("metadata", {}),
            mandate_request={"scheme": mandate_request.get("scheme", "sepa_core"), "currency": mandate_request.get("currency", "EUR")},
            links={"customer": links.get("customer"), "creditor": account.creditor_id},
        )
        self._emit(account, "billing_requests", "created", {"billing_request": brq["id"], "customer": links.get("customer") or ""})
        return brq

    def create_flow(self, account: GoCardlessAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        brq = self._find(account, "billing_requests", params.get("links", {}).get("billing_request", ""))
        token = bearer(request) or ""
        flow = self._new(
            account,
            "billing_request_flows",
            redirect_uri=params.get("redirect_uri"),
            links={"billing_request": brq["id"]},
            expires_at=(datetime.now(UTC) + timedelta(days=7)).isoformat(),
        )
        flow["authorisation_url"] = f"{str(request.base_url).rstrip('/')}/_sandbox/flows/{flow['id']}/complete"
        self.flows[flow["id"]] = (token, brq["id"])
        return flow

    def create_payment(self, account: GoCardlessAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        mandate = self._find(account, "mandates", params.get("links", {}).get("mandate", ""))
        if mandate["status"] in {"failed", "cancelled", "expired"}:
            raise _state("mandate_is_inactive", "The mandate is not active")
        amount = params.get("amount")
        if not isinstance(amount, int) or amount < 1:
            raise GoCardlessError(422, "validation_failed", "Validation failed", [{"field": "amount", "message": "must be a positive integer"}])
        earliest = date.fromisoformat(mandate["next_possible_charge_date"])
        charge_date = date.fromisoformat(params["charge_date"]) if params.get("charge_date") else earliest
        payment = self._new(
            account,
            "payments",
            amount=amount,
            amount_refunded=0,
            currency=params.get("currency", "EUR"),
            charge_date=max(charge_date, earliest).isoformat(),
            reference=params.get("reference"),
            description=params.get("description"),
            status="pending_submission",
            metadata=params.get("metadata", {}),
            links={"mandate": mandate["id"], "creditor": account.creditor_id},
        )
        self._emit(account, "payments", "created", {"payment": payment["id"]}, metadata=payment["metadata"])
        return payment

    def create_refund(self, account: GoCardlessAccount, params: dict[str, Any], request: Request) -> dict[str, Any]:
        payment = self._find(account, "payments", params.get("links", {}).get("payment", ""))
        amount = params.get("amount")
        if payment["status"] not in {"confirmed", "paid_out"}:
            raise _state("refund_payment_invalid_state", "The payment cannot be refunded")
        if not isinstance(amount, int) or amount < 1 or payment["amount_refunded"] + amount > payment["amount"]:
            raise _state("total_amount_confirmation_invalid", "Refund exceeds the payment")
        if params.get("total_amount_confirmation") not in (None, payment["amount_refunded"] + amount):
            raise _state("total_amount_confirmation_invalid", "total_amount_confirmation does not match")
        payment["amount_refunded"] += amount
        refund = self._new(
            account,
            "refunds",
            amount=amount,
            currency=payment["currency"],
            status="created",
            reference=params.get("reference"),
            metadata=params.get("metadata", {}),
            links={"payment": payment["id"], "mandate": payment["links"]["mandate"]},
        )
        self._emit(account, "refunds", "created", {"refund": refund["id"], "payment": payment["id"]}, metadata=refund["metadata"])
        return refund

    def cancel_mandate(self, account: GoCardlessAccount, mandate_id: str, params: dict[str, Any], request: Request) -> tuple[str, dict[str, Any]]:
        mandate = self._find(account, "mandates", mandate_id)
        if mandate["status"] in {"cancelled", "failed", "expired"}:
            raise _state("mandate_already_cancelled", "Mandate cannot be cancelled")
        mandate["status"] = "cancelled"
        self._emit(account, "mandates", "cancelled", {"mandate": mandate_id})
        return "mandates", mandate

    def cancel_payment(self, account: GoCardlessAccount, payment_id: str, params: dict[str, Any], request: Request) -> tuple[str, dict[str, Any]]:
        payment = self._find(account, "payments", payment_id)
        if payment["status"] not in {"pending_submission", "pending_customer_approval"}:
            raise _state("cancellation_failed", "Payment cannot be cancelled")
        payment["status"] = "cancelled"
        self._emit(account, "payments", "cancelled", {"payment": payment_id}, metadata=payment["metadata"])
        return "payments", payment

    def run_scenario(self, account: GoCardlessAccount, scenario: str, params: dict[str, Any], request: Request) -> tuple[str, dict[str, Any]]:
        if scenario not in SCENARIOS:
            raise GoCardlessError(404, "invalid_api_usage", f"Unknown scenario simulator {scenario}")
        kind, starts, actions = SCENARIOS[scenario]
        resource = self._find(account, kind, params.get("links", {}).get("resource", ""))
        if resource["status"] not in starts:
            raise _state("invalid_state", f"{kind} {resource['id']} is {resource['status']}")
        singular = kind[:-1]
        if resource["status"] in actions:  # already part of the way: walk the rest
            actions = actions[actions.index(resource["status"]) + 1 :]
        for action in actions:
            resource["status"] = _STATUS_OF_ACTION.get(action, action)
            details = FAILURE_DETAILS.get(scenario) if action in {"failed", "late_failure", "charged_back"} else None
            self._emit(account, kind, action, {singular: resource["id"]}, details, resource.get("metadata"))
        return "scenario_simulators", {"id": scenario}

    # --- the payer's side and the dashboard -------------------------------------------------

    async def complete_flow(self, request: Request) -> Response:
        """The payer's hosted page (the flow's `authorisation_url`). A browser gets a bank details
        form (GET), posts it, and is sent to the flow's `redirect_uri`; a test may post JSON
        `{"iban", "account_holder_name", "activate"}` and get the ids back."""
        flow_id = request.path_params["id"]
        browser = "application/json" not in request.headers.get("content-type", "")
        if flow_id not in self.flows:
            if browser:
                return HTMLResponse("<!DOCTYPE html><title>Not found</title><p>This link has expired or was already used.</p>", status_code=404)
            return JSONResponse({"error": "no such flow"}, status_code=404)
        token, brq_id = self.flows[flow_id]
        account = self.accounts[token]
        flow = account.table("billing_request_flows")[flow_id]
        if request.method == "GET":
            return self._flow_page(account, brq_id)
        if browser:
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            iban = form.get("iban", "").replace(" ", "").upper()
            if len(iban) < 15 or not iban[:2].isalpha() or not iban[2:].isalnum():
                return self._flow_page(account, brq_id, error="Enter a valid IBAN (for example DE89 3704 0044 0532 0130 00).")
            body: dict[str, Any] = {"iban": iban, "account_holder_name": form.get("account_holder_name") or "Payer", "activate": True}
        else:
            body = json.loads(await request.body() or b"{}")
        del self.flows[flow_id]
        done = self._fulfil(account, brq_id, body)
        if browser:
            return RedirectResponse(flow.get("redirect_uri") or f"{str(request.base_url).rstrip('/')}/", status_code=303)
        return JSONResponse(done)

    def _flow_page(self, account: GoCardlessAccount, brq_id: str, error: str | None = None) -> HTMLResponse:
        brq = account.table("billing_requests")[brq_id]
        customer = account.table("customers").get(brq["links"].get("customer") or "", {})
        scheme = brq["mandate_request"]["scheme"].replace("_", " ").upper()
        intro = f"Set up a {scheme} Direct Debit for {customer.get('company_name') or customer.get('email') or 'your account'}."
        fields = hosted.field("Account holder name", "account_holder_name", autocomplete="name")
        fields += hosted.field("IBAN", "iban", placeholder="DE89 3704 0044 0532 0130 00")
        html = hosted.page("Set up a Direct Debit", intro, fields, "Confirm mandate", error=error, accent="#1c1b45")
        return HTMLResponse(html, status_code=422 if error else 200)

    def _fulfil(self, account: GoCardlessAccount, brq_id: str, body: dict[str, Any]) -> dict[str, str]:
        brq = account.table("billing_requests")[brq_id]
        customer_id = brq["links"]["customer"]
        iban = str(body.get("iban", "DE89370400440532013000"))
        bank_account = self._new(
            account,
            "customer_bank_accounts",
            account_holder_name=body.get("account_holder_name", "Payer"),
            account_number_ending=iban[-2:],
            country_code=iban[:2],
            currency=brq["mandate_request"]["currency"],
            enabled=True,
            links={"customer": customer_id},
        )
        mandate = self._new(
            account,
            "mandates",
            scheme=brq["mandate_request"]["scheme"],
            status="pending_submission",
            next_possible_charge_date=(date.today() + timedelta(days=3)).isoformat(),
            metadata=brq.get("metadata", {}),
            links={"customer": customer_id, "customer_bank_account": bank_account["id"], "creditor": account.creditor_id},
        )
        brq["status"] = "fulfilled"
        brq["links"].update(customer_bank_account=bank_account["id"], mandate_request_mandate=mandate["id"])
        self._emit(account, "mandates", "created", {"mandate": mandate["id"]}, metadata=mandate["metadata"])
        self._emit(account, "billing_requests", "fulfilled", {"billing_request": brq_id, "mandate_request_mandate": mandate["id"]})
        if body.get("activate", True):
            for action in ("submitted", "active"):
                mandate["status"] = action
                self._emit(account, "mandates", action, {"mandate": mandate["id"]}, metadata=mandate["metadata"])
        return {"billing_request": brq_id, "mandate": mandate["id"]}

    async def add_webhook_endpoint(self, request: Request) -> Response:
        try:
            _, account = self._account(request)
        except GoCardlessError as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        body = json.loads(await request.body())
        account.webhooks.append({"url": body["url"], "secret": body["secret"]})
        return JSONResponse({"webhook_endpoints": len(account.webhooks)}, status_code=201)

    async def remove_webhook_endpoints(self, request: Request) -> Response:
        try:
            _, account = self._account(request)
        except GoCardlessError as exc:
            return JSONResponse(exc.body, status_code=exc.status)
        account.webhooks.clear()
        return Response(status_code=204)
