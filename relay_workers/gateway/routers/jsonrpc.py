"""Relay 0.3's endpoints: JSON-RPC 2.0 at /rpc, raw-source evaluation at /jsonrpc."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from relay_lang.errors import RelayError
from relay_lang.values import show

from ...wire import from_wire
from ..config import GatewayConfig
from ..dependencies import GUARDED, Config, FleetHandle
from ..metrics import measured
from ..rpc import rpc

router = APIRouter(dependencies=GUARDED, tags=["json-rpc"])

RPC_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}}
RAW_BODY = {"requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}}


@router.post("/rpc", openapi_extra=RPC_BODY)
async def json_rpc(request: Request, fleet: FleetHandle, config: Config) -> Response:
    """JSON-RPC 2.0 as Relay 0.3's gateway: method "server.handler", params an array (the arguments) or
    an object (one map argument), batches, notifications (sent, no reply). `X-Relay-Timeout`: seconds."""
    return await rpc(fleet, await request.body(), rpc_timeout(request, config))


@router.post("/jsonrpc", response_class=PlainTextResponse, openapi_extra=RAW_BODY)
async def raw_source(request: Request, fleet: FleetHandle, config: Config) -> Response:
    """Relay 0.3's raw-source evaluation: the body is a program; the answer is its value as text."""
    try:
        source = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise RelayError("the body is not UTF-8 text", kind="bad request") from None
    result = await measured("eval", fleet.eval(source, rpc_timeout(request, config)))
    if result["error"]:
        return JSONResponse({"error": result["error"]}, status_code=422)
    return PlainTextResponse(show(from_wire(result["value"])))


def rpc_timeout(request: Request, config: GatewayConfig) -> float:
    """The seconds a request may wait: its `X-Relay-Timeout` header (default 30), capped by --timeout."""
    text = request.headers.get("x-relay-timeout", "30")
    try:
        asked = float(text)
    except ValueError:
        asked = -1.0
    if not 0 < asked < float("inf"):
        raise RelayError(f"X-Relay-Timeout is a positive number of seconds, got {text!r}", kind="bad request")
    return config.cap(asked)
