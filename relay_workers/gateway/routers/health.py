"""Health and metrics: /healthz (liveness), /readyz (readiness), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from relay_lang.errors import RelayError

from ..dependencies import GUARDED, FleetHandle
from ..metrics import scrape
from ..schemas import ERRORS

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """Liveness: the gateway answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: ERRORS[503]})
async def readyz(fleet: FleetHandle) -> dict:
    """Readiness: the store, the result backend and a Redis broker answer, and a worker host is live (its
    heartbeat within RELAY_HOST_TTL: a host killed is not live, reaped by the supervisor or not)."""
    await fleet.results.ping()
    if fleet.broker is not None:
        await fleet.broker.ping()
    hosts = len(await fleet.live_hosts())
    if not hosts:
        raise RelayError("no worker host is live (start `celery -A relay_workers worker -Q 'relay.*'`)",
                         kind="unreachable")
    return {"status": "ready", "hosts": hosts}


@router.get("/metrics", dependencies=GUARDED, response_class=PlainTextResponse)
async def metrics(fleet: FleetHandle) -> Response:
    """Prometheus metrics: the whole fleet (read from the store now) and this gateway."""
    return Response(await scrape(fleet), media_type=CONTENT_TYPE_LATEST)
