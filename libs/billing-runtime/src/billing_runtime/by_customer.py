"""The partner's own customer id wherever a route takes a billing account.

A billing account id is derived from the tenant and the partner's customer id
(`billing_events.account_id`), so every service can turn one into the other without asking
usage-ingest. Two forms, in every service, resolved by the HTTP conventions' middleware right
after the caller is known (so always under the caller's tenant: another tenant's customer id
names an account of this tenant that does not exist, and the route answers as for any unknown
account, 404 where it reads one):

- a path: `/v1/accounts/by-customer/{customer_id}/<rest>` is `/v1/accounts/{account_id}/<rest>`
  (`/v1/accounts/by-customer/{customer_id}` alone is usage-ingest's lookup, which answers the
  account id and 404 `customer_not_found` for a customer the tenant does not have);
- a query: `?customer_id=` on a route that filters by `account_id` or `buyer_account_id`; both at
  once is a 422 `ambiguous_account`.

The OpenAPI document lists both forms (`add_to_openapi`)."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from prometheus_client import Counter
from starlette.types import Scope

from billing_events import account_id
from billing_runtime.edge import InvalidInput

PREFIX = "/v1/accounts/by-customer/"
ACCOUNT_QUERY = ("account_id", "buyer_account_id")
RESOLVED = Counter("billing_http_customer_ids_resolved_total", "Requests naming an account by the partner's customer id, by form", ["service", "form"])


def resolve_path(scope: Scope, tenant: str, service: str) -> None:
    """Rewrite `/v1/accounts/by-customer/{customer_id}/<rest>` in place to the account's own path."""
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return
    customer, sep, rest = path[len(PREFIX) :].partition("/")
    if not (customer and sep and rest):
        return
    resolved = f"/v1/accounts/{account_id(tenant, customer)}/{rest}"
    scope["path"] = resolved
    scope["raw_path"] = quote(resolved).encode()
    RESOLVED.labels(service, "path").inc()


def resolve_query(scope: Scope, tenant: str, service: str, account_param: str | None) -> None:
    """Rewrite `?customer_id=` in place to the route's account filter (`account_param`)."""
    raw: bytes = scope.get("query_string", b"")
    if account_param is None or b"customer_id" not in raw:
        return
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    customers = [value for key, value in pairs if key == "customer_id"]
    if not customers:
        return
    if any(key == account_param for key, _ in pairs):
        raise InvalidInput(f"give {account_param} or customer_id, not both", code="ambiguous_account", field="customer_id")
    kept = [(key, value) for key, value in pairs if key != "customer_id"]
    scope["query_string"] = urlencode([*kept, (account_param, account_id(tenant, customers[-1]))]).encode("latin-1")
    RESOLVED.labels(service, "query").inc()


def account_param(route: Any) -> str | None:
    """The query parameter by which an API route filters on an account, if any."""
    dependant = getattr(route, "dependant", None)
    names = {param.name for param in getattr(dependant, "query_params", ())}
    return next((name for name in ACCOUNT_QUERY if name in names), None)


_CUSTOMER_PARAM = {
    "name": "customer_id",
    "in": "path",
    "required": True,
    "description": "The partner's own customer id (as posted to usage-ingest); the billing account is derived from it under the caller's tenant.",
    "schema": {"type": "string", "title": "Customer Id"},
}
_CUSTOMER_QUERY = {
    "name": "customer_id",
    "in": "query",
    "required": False,
    "description": "The partner's own customer id, instead of the account id (not both: 422 `ambiguous_account`).",
    "schema": {"type": "string", "title": "Customer Id"},
}


def add_to_openapi(document: dict[str, Any]) -> None:
    """Document both forms: each `/v1/accounts/{account_id}/…` path again under
    `/v1/accounts/by-customer/{customer_id}/…`, and `customer_id` beside each account filter."""
    paths: dict[str, Any] = document.get("paths", {})
    for path, item in list(paths.items()):
        for operation in item.values():
            params = operation.get("parameters", [])
            if any(p.get("in") == "query" and p.get("name") in ACCOUNT_QUERY for p in params) and not any(p.get("name") == "customer_id" for p in params):
                params.append(dict(_CUSTOMER_QUERY))
        if not path.startswith("/v1/accounts/{account_id}/"):
            continue
        alias = PREFIX + "{customer_id}/" + path.removeprefix("/v1/accounts/{account_id}/")
        if alias in paths:
            continue
        copied = copy.deepcopy(item)
        for operation in copied.values():
            operation["parameters"] = [
                dict(_CUSTOMER_PARAM) if p.get("in") == "path" and p.get("name") == "account_id" else p for p in operation.get("parameters", [])
            ]
            if "operationId" in operation:
                operation["operationId"] += "_by_customer"
            operation["summary"] = operation.get("summary", "") + " (by customer id)"
        paths[alias] = copied
