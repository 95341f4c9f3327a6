"""Partner HTTP: the seller's own provider credentials."""

from __future__ import annotations

from fastapi import APIRouter

from billing_runtime.api import Admin, Runtime, Tenant
from payments.providers import service
from payments.providers.schemas import Provider, ProviderAccountIn, ProviderAccountOut

router = APIRouter(prefix="/v1", tags=["providers"])


@router.put("/providers/{provider}", dependencies=[Admin], response_model=ProviderAccountOut)
async def put_provider_account(provider: Provider, body: ProviderAccountIn, tenant: Tenant, runtime: Runtime) -> ProviderAccountOut:
    async with runtime.transaction() as session:
        return await service.set_account(runtime, session, tenant, provider, body)


@router.get("/providers/{provider}", dependencies=[Admin], response_model=ProviderAccountOut)
async def get_provider_account(provider: Provider, tenant: Tenant, runtime: Runtime) -> ProviderAccountOut:
    async with runtime.sessions() as session:
        return service.account_out(provider, await service.credentials(runtime, session, tenant, provider))
