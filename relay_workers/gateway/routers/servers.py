"""/v1: eval jobs, deployment, messages to servers (call, send), restarts, the servers' records and the
dead letters."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ...ledger import key
from ..dependencies import GUARDED, Config, FleetHandle
from ..errors import not_found
from ..metrics import measured
from ..schemas import (
    Args,
    CallResponse,
    DeadLetterServer,
    DeployRequest,
    DeployResponse,
    EvalRequest,
    EvalResponse,
    MessageId,
    RestartResponse,
    SendResponse,
    Server,
    Timeout,
)

router = APIRouter(dependencies=GUARDED)


@router.post("/v1/eval", response_model=EvalResponse, tags=["fleet"])
async def eval_job(body: EvalRequest, fleet: FleetHandle, config: Config) -> dict:
    """Runs a program on the fleet; a Relay error in the program is in `error` (status 200)."""
    if body.server is not None and not await fleet.store.exists(key("server", body.server)):
        raise not_found(f"no server named '{body.server}' is deployed")
    return await measured("eval", fleet.eval(body.source, config.cap(body.timeout), **body.model_dump(
        include={"tier", "time_limit", "file"}, exclude_none=True)))


@router.post("/v1/deploy", response_model=DeployResponse, tags=["fleet"])
async def deploy(body: DeployRequest, fleet: FleetHandle) -> dict:
    """Starts the servers a source declares, or hot-upgrades them (state kept); 422 with the positioned
    error when the source does not parse, resolve or declare a server (nothing changes then)."""
    done = await measured("deploy", fleet.blocking(fleet.client.deploy, body.source, body.file, body.max_restarts,
                                                   body.restart_period, body.time_limit))
    return {"deployed": [{"name": name, "version": version} for name, version in done]}


@router.post("/v1/servers/{name}/restart", response_model=RestartResponse, status_code=202, tags=["servers"])
async def restart(name: str, fleet: FleetHandle) -> dict:
    """Brings back a server (a failed one too) from its last commit."""
    if not await fleet.store.exists(key("server", name)):
        raise not_found(f"no server named '{name}' is deployed")
    await measured("restart", fleet.blocking(fleet.client.restart, name))
    return {"restarting": name}


@router.post("/v1/servers/{name}/{handler}", response_model=CallResponse, tags=["servers"])
async def call(name: str, handler: str, fleet: FleetHandle, config: Config, args: Args = None, timeout: Timeout = 30,
               message_id: MessageId = None) -> dict | JSONResponse:
    """Sends a message and waits for the reply; a Relay error in the handler is a 422 with that error."""
    reply = await measured("call", fleet.call(name, handler, args or [], config.cap(timeout), message_id))
    if "error" in reply:
        return JSONResponse({"error": reply["error"]}, status_code=422)
    return {"value": reply["value"]}


@router.post("/v1/servers/{name}/{handler}/send", response_model=SendResponse, status_code=202, tags=["servers"])
async def send(name: str, handler: str, fleet: FleetHandle, args: Args = None, message_id: MessageId = None) -> dict:
    """Enqueues a message; returns its id."""
    return {"message_id": await measured("send", fleet.send(name, handler, args or [], message_id))}


@router.get("/v1/servers", response_model=list[Server], tags=["servers"])
async def servers(fleet: FleetHandle) -> list[dict]:
    """Every deployed server: owner, status, restarts, failed or not, state size, queue length."""
    return [s.public() for s in (await fleet.snapshot()).servers]


@router.get("/v1/servers/{name}", response_model=Server, tags=["servers"])
async def server(name: str, fleet: FleetHandle) -> dict:
    found = (await fleet.snapshot(name)).servers
    if not found:
        raise not_found(f"no server named '{name}' is deployed")
    return found[0].public()


@router.get("/v1/dead-letters", response_model=list[dict], tags=["fleet"])
async def dead_letters(fleet: FleetHandle, server: DeadLetterServer = None) -> list[dict]:
    """Input the fleet set aside (of one server, or all), with the reason."""
    return await fleet.blocking(fleet.client.dead_letters, server)
