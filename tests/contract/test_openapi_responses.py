"""Every service's OpenAPI documents the fields of every answer (issue 16).

Each service's app is built (no database or broker is reached: building only declares routes) and
its OpenAPI walked: every 2xx response of every operation must declare its content, and a JSON one
a schema with fields: a `$ref` to a model, an object with `properties`, or an array of either. A
bare `object` (a route returning `dict[str, Any]` with no `response_model`) is what this catches;
the failure names each offending method and path. The by-customer copies of the account routes
(`/v1/accounts/by-customer/{customer_id}/…`) are in the document and walked with the rest.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from billing_cli.platform import SERVICES as PLATFORM_SERVICES

# Every service of the platform, by name: its package.
SERVICES = {spec.name: spec.package for spec in PLATFORM_SERVICES}
# The only 2xx answers with no body to describe, each with its reason.
NO_CONTENT: dict[tuple[str, str, str], str] = {
    ("notify", "DELETE", "/v1/webhook-endpoints/{endpoint_id}"): "204: the endpoint is removed, nothing is returned",
    ("portal", "DELETE", "/v1/portal/host"): "204: the partner's portal host is removed, nothing is returned",
}


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not ref:
        return schema
    name = ref.removeprefix("#/components/schemas/")
    resolved: dict[str, Any] = document.get("components", {}).get("schemas", {}).get(name, {})
    return resolved


def _has_fields(schema: dict[str, Any] | None, document: dict[str, Any]) -> bool:
    """A model (`$ref` to a schema with properties), an object with properties, an array of such,
    or a union whose every branch is one."""
    if not schema:
        return False
    schema = _resolve(schema, document)
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return all(_has_fields(branch, document) or branch.get("type") == "null" for branch in schema[union])
    if schema.get("type") == "array":
        return _has_fields(schema.get("items"), document)
    return bool(schema.get("properties"))


def undocumented(service: str, document: dict[str, Any]) -> Iterator[str]:
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, response in operation["responses"].items():
                if not str(status).startswith("2"):
                    continue
                where = f"{service}: {method.upper()} {path} {status}"
                content = response.get("content")
                if not content:
                    if (service, method.upper(), path) not in NO_CONTENT:
                        yield f"{where}: no content declared"
                    continue
                for media_type, media in content.items():
                    if "json" in media_type and not _has_fields(media.get("schema"), document):
                        yield f"{where} {media_type}: schema has no fields ({media.get('schema')})"


@pytest.mark.parametrize("service", SERVICES)
def test_every_2xx_answer_documents_its_fields(service: str) -> None:
    app = importlib.import_module(f"{SERVICES[service]}.main").build()
    offenders = list(undocumented(service, app.openapi()))
    assert not offenders, "answers the OpenAPI does not describe (give the route a response_model):\n" + "\n".join(offenders)


def test_the_allow_list_names_only_routes_that_exist_and_answer_nothing() -> None:
    """A stale entry would hide nothing today but could hide a route added at that path later."""
    for (service, method, path), reason in NO_CONTENT.items():
        document = importlib.import_module(f"{SERVICES[service]}.main").build().openapi()
        responses = document["paths"][path][method.lower()]["responses"]
        assert reason.startswith("204") and "204" in responses and "content" not in responses["204"], (service, method, path)


def test_the_walk_catches_a_bare_object() -> None:
    """The check itself: a route answering `dict[str, Any]` without a model is reported by method and path."""
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Thing(BaseModel):
        id: str

    app = FastAPI()

    @app.get("/v1/things/{thing_id}")
    async def get_thing(thing_id: str) -> dict[str, Any]:
        return {"id": thing_id}

    @app.get("/v1/named/{thing_id}", response_model=Thing)
    async def get_named(thing_id: str) -> dict[str, Any]:
        return {"id": thing_id}

    offenders = list(undocumented("example", app.openapi()))
    assert len(offenders) == 1 and offenders[0].startswith("example: GET /v1/things/{thing_id} 200 application/json: schema has no fields"), offenders
