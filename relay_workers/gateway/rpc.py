"""JSON-RPC 2.0, as Relay 0.3's gateway spoke it at /rpc: method "server.handler", params an array (the
arguments) or an object (one map argument), batches, notifications."""

from __future__ import annotations

import asyncio
import json

from fastapi.responses import JSONResponse, Response

from relay_lang.errors import RelayError

from ..client import UNREACHABLE
from .errors import not_found
from .fleet import Fleet

MAX_BATCH = 1000  # JSON-RPC requests in one batch
RPC_MESSAGES = {-32700: "Parse error", -32600: "Invalid Request", -32601: "Method not found", -32602: "Invalid params",
                -32603: "Internal error", -32000: "Server error"}


def rpc_error(code: int, rid: object, data: object = None) -> dict:
    error: dict[str, object] = {"code": code, "message": RPC_MESSAGES[code]}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": rid}


def valid_id(rid: object) -> bool:
    return rid is None or (type(rid) in (str, int, float))


async def rpc_one(fleet: Fleet, request: object, timeout: float) -> dict | None:
    """One JSON-RPC request's response (None for a notification)."""
    if not isinstance(request, dict) or not valid_id(request.get("id")):
        return rpc_error(-32600, None, "a request is an object with jsonrpc, method, params and id (a string, "
                                       "a number or null)")
    rid = request.get("id")
    method, params = request.get("method"), request.get("params", [])
    if request.get("jsonrpc") != "2.0" or not isinstance(method, str) or not isinstance(params, (list, dict)):
        return rpc_error(-32600, rid, "jsonrpc must be \"2.0\", method a string, params an array or an object")
    notification = "id" not in request
    server, dot, handler = method.rpartition(".")  # at the last dot: a family's key may hold dots (names.split_method)
    args = params if isinstance(params, list) else [params]  # named params: one map argument, as in Relay 0.3
    try:
        if not dot or not server or not handler:
            raise not_found(f"method {method!r} is not SERVER.HANDLER")
        if notification:
            await fleet.send(server, handler, args)
            return None
        reply = await fleet.call(server, handler, args, timeout)
    except RelayError as err:
        if notification:
            return None
        code = {"not found": -32601, "bad request": -32602}.get(err.kind, -32603)
        return rpc_error(code, rid, err.to_dict())
    except UNREACHABLE as exc:
        return None if notification else rpc_error(-32603, rid, fleet.client.unreachable(exc).to_dict())
    if "error" in reply:
        return rpc_error(-32000, rid, reply["error"])
    return {"jsonrpc": "2.0", "result": reply["value"], "id": rid}


async def rpc(fleet: Fleet, body: bytes, timeout: float) -> Response:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return JSONResponse(rpc_error(-32700, None, f"the body is not JSON ({exc})"), status_code=400)
    if isinstance(payload, list):
        if not payload or len(payload) > MAX_BATCH:
            return JSONResponse(rpc_error(-32600, None, f"a batch holds 1 to {MAX_BATCH} requests"), status_code=400)
        answers = [a for a in await asyncio.gather(*(rpc_one(fleet, r, timeout) for r in payload)) if a is not None]
        return JSONResponse(answers) if answers else Response(status_code=204)
    answer = await rpc_one(fleet, payload, timeout)
    if answer is None:
        return Response(status_code=204)
    code = answer.get("error", {}).get("code")
    return JSONResponse(answer, status_code=400 if code in (-32700, -32600) else 200)
