"""The HTTP gateway (`relay gateway`): the fleet over HTTP, for people and programs that do not speak Celery.

REST under /v1, JSON-RPC 2.0 at /rpc and Relay 0.3's raw-source /jsonrpc, health at /healthz and /readyz,
Prometheus metrics for the whole fleet at /metrics, a live dashboard at / (reading /v1/fleet); routes,
statuses and metrics are in docs/gateway.md.
A FastAPI app in the layout of FastAPI's "bigger applications":

- app.py: the app factory, `create_app(config)`, including one router per area (routers/);
- dependencies.py: what the routers share: the settings, the fleet handle, the bearer-token check;
- config.py, schemas.py, errors.py: the settings, the pydantic models, errors and their handlers;
- fleet.py: `Fleet`, the handle on the fleet; rpc.py: JSON-RPC 2.0; metrics.py: Prometheus;
- index.py: `Catalog`, the fleet index (every server's name, family, owner, status) behind the dashboard's
  paging, filters and counts; overview.py: what the dashboard reads, a page at a time; static/: the page;
- middleware.py: `Edge`, every request's body, time and count; serving.py: uvicorn, `relay gateway`.
"""

from __future__ import annotations

from .app import create_app
from .config import GatewayConfig
from .serving import run_gateway, serve

__all__ = ["GatewayConfig", "create_app", "run_gateway", "serve"]
