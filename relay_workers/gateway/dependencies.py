"""What the routers share, as FastAPI dependencies: the settings, the fleet handle and the fleet index (on
`app.state`, put there by the app factory and its lifespan), and the bearer-token check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from relay_lang.errors import RelayError

from .config import GatewayConfig
from .fleet import Fleet
from .index import Catalog


def get_config(request: Request) -> GatewayConfig:
    config: GatewayConfig = request.app.state.config
    return config


def get_fleet(request: Request) -> Fleet:
    fleet: Fleet = request.app.state.fleet
    return fleet


def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


Config = Annotated[GatewayConfig, Depends(get_config)]
FleetHandle = Annotated[Fleet, Depends(get_fleet)]
FleetIndex = Annotated[Catalog, Depends(get_catalog)]
Credentials = Annotated[HTTPAuthorizationCredentials | None,
                        Depends(HTTPBearer(auto_error=False, description="the gateway's RELAY_GATEWAY_TOKEN"))]


async def authorize(credentials: Credentials, config: Config) -> None:
    if config.token is None:
        return
    given = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(given, config.token.encode()):
        raise RelayError("a valid bearer token is required (Authorization: Bearer $RELAY_GATEWAY_TOKEN)",
                         kind="unauthorized")


GUARDED = [Depends(authorize)]  # a route's `dependencies`: it needs the token

