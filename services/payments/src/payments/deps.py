"""FastAPI dependencies of payments beyond the shared ones."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from payments.providers.gateways import Gateways


def get_gateways(request: Request) -> Gateways:
    gateways: Gateways = request.app.state.gateways
    return gateways


GatewaysDep = Annotated[Gateways, Depends(get_gateways)]
