"""The app factory: the gateway's FastAPI app, made of its routers, its middleware and its error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .config import GatewayConfig
from .errors import add_exception_handlers
from .fleet import Fleet
from .index import Catalog
from .middleware import Edge
from .routers import dashboard, docs, health, jsonrpc, overview, servers
from .schemas import ERRORS

DESCRIPTION = ("The Relay fleet over HTTP: eval jobs, deployment, messages to servers, the fleet's state, JSON-RPC "
               "2.0 (Relay 0.3's /rpc and /jsonrpc) and Prometheus metrics. Every error is a JSON body "
               "`{\"error\": {kind, message, file, line, col, stack, text}}`. See docs/gateway.md.")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The fleet handle and its index (app.state.fleet and .catalog, see dependencies) live as long as the
    app serves."""
    app.state.fleet = Fleet(app.state.config)
    app.state.catalog = Catalog(app.state.fleet)
    yield
    await app.state.catalog.close()
    await app.state.fleet.close()


def create_app(config: GatewayConfig) -> FastAPI:
    """The gateway's ASGI app (`relay gateway` serves it with uvicorn: relay_workers.gateway.serving)."""
    app = FastAPI(title="Relay gateway", version="0.1.0", lifespan=lifespan, responses=ERRORS, description=DESCRIPTION,
                  docs_url=None, redoc_url=None)  # the interactive docs are served from this host, not a CDN
    app.state.config = config
    app.add_middleware(Edge, config=config)
    app.mount(docs.ASSETS, docs.assets(), name="docs-assets")
    app.mount(dashboard.ASSETS, dashboard.assets(), name="dashboard-assets")
    for area in (dashboard, docs, servers, overview, health, jsonrpc):
        app.include_router(area.router)
    add_exception_handlers(app)
    return app
