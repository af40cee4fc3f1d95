"""The gateway's requests and responses as pydantic models and annotated parameters: its OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Body, Query
from pydantic import BaseModel, Field


class EvalRequest(BaseModel):
    source: str = Field(description="the program")
    server: str | None = Field(None, description="a deployed server the program needs: 404 when it is not deployed")
    timeout: float = Field(30, ge=1, le=3600, allow_inf_nan=False,
                           description="seconds to wait for the result (capped by the gateway's --timeout)")
    time_limit: float | None = Field(None, gt=0, le=3600, allow_inf_nan=False,
                                     description="the job's time limit (default and maximum: the workers' "
                                                 "RELAY_JOB_TIME_LIMIT)")
    tier: Literal["auto", "interpret", "llvm"] = "auto"
    file: str = Field("<eval>", max_length=1000, description="the file name errors show")


class EvalResponse(BaseModel):
    value: Any = Field(description="the program's value (Relay data as JSON)")
    output: str
    error: dict | None = Field(description="a Relay error (kind, message, file, line, col, stack, text), or null")
    tiers: list[str]
    timings: dict
    worker: str


class DeployRequest(BaseModel):
    source: str = Field(description="Relay source declaring one or more servers")
    file: str = Field("<deploy>", max_length=1000)
    max_restarts: int | None = Field(None, ge=1, le=1_000_000)
    restart_period: float | None = Field(None, gt=0, le=1e9, allow_inf_nan=False)
    time_limit: float | None = Field(None, gt=0, le=1e9, allow_inf_nan=False)


class Deployed(BaseModel):
    name: str
    version: int


class DeployResponse(BaseModel):
    deployed: list[Deployed]


class CallResponse(BaseModel):
    value: Any


class SendResponse(BaseModel):
    message_id: str


class RestartResponse(BaseModel):
    restarting: str


class Server(BaseModel):
    name: str
    owner: str = Field(description="the owner's worker node name")
    host: str = Field(description="the owner's host id (one incarnation of a worker process)")
    status: Literal["running", "starting", "inactive", "restarting", "failed", "family"]
    failed: bool
    reason: str = Field(description="why it failed")
    restarts: int
    version: int
    queued: int = Field(description="messages journalled, not yet applied (the queue length)")
    leaseholder: str
    state_fields: int
    state_bytes: int
    messages_applied: int
    acquisitions: int


class ServerRow(Server):
    family: str = Field(description="`account` for `account[ada]`; a plain name is a family of one")


class ServerPage(BaseModel):
    total: int = Field(description="deployed servers")
    matched: int = Field(description="servers the filters select")
    offset: int
    limit: int
    by_status: dict[str, int] = Field(description="the selected servers by status, whatever the status filter")
    index_age: float = Field(description="seconds since the index that selected and counted them was read; "
                                         "each row is read afresh")
    servers: list[ServerRow]


class FamilyCount(BaseModel):
    family: str
    servers: int


class FamilyPage(BaseModel):
    total: int = Field(description="families the filter selects")
    offset: int
    limit: int
    families: list[FamilyCount] = Field(description="most servers first")


class HostInfo(BaseModel):
    id: str = Field(description="the host id (one incarnation of a worker process)")
    node: str
    pid: int | None
    started: float | None
    heartbeat_age: float = Field(description="seconds since its last heartbeat (the store's clock)")
    live: bool = Field(description="heartbeat within RELAY_HOST_TTL")
    memory_bytes: int | None = Field(description="resident memory at its last heartbeat")
    servers: int = Field(description="servers placed on it")
    leases: int = Field(description="server leases it holds")


class Overview(BaseModel):
    host_ttl: float
    hosts: list[HostInfo]
    servers: int
    by_status: dict[str, int]
    families: int
    top_families: list[FamilyCount]
    dead_letters: int
    index_age: float
    index_seconds: float = Field(description="seconds the index took to read")


class DeadLetter(BaseModel):
    id: str
    queue: str
    reason: str
    raw: str
    time: float
    server: str | None = None
    handler: str | None = None
    args: list[Any] | None = None
    attempts: int | None = None
    replayable: bool = Field(description="a message to a server, which replay sends again")


class DeadLetterPage(BaseModel):
    total: int
    offset: int
    limit: int
    letters: list[DeadLetter] = Field(description="newest first")


class FleetEvent(BaseModel):
    id: str = Field(description="the event stream's id: pass it as `after`")
    time: float
    kind: str = Field(description="failover, failed (past its restart intensity), host dead")
    server: str = ""
    from_host: str = Field("", description="a failover's dead owner (host id)")
    to_host: str = Field("", description="a failover's new owner (host id)")
    host: str = Field("", description="a dead host")
    reason: str = ""


class EventPage(BaseModel):
    events: list[FleetEvent] = Field(description="oldest first")
    last: str | None = Field(description="the id to pass as `after` next")


class ReplayResponse(BaseModel):
    message_id: str
    server: str
    handler: str


class ErrorDetail(BaseModel):
    kind: str
    message: str
    file: str | None
    line: int | None
    col: int | None
    stack: list[dict]
    text: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": what} for code, what in (
        (401, "no valid bearer token"), (404, "no such server or handler"), (413, "the body is too large"),
        (422, "a bad request, or a Relay error"), (503, "the fleet cannot be reached"), (504, "no answer in time"))}

Args = Annotated[list[Any] | None, Body(description="the handler's arguments: a JSON array (default [])")]
Timeout = Annotated[float, Query(ge=1, le=3600, allow_inf_nan=False,
                                 description="seconds to wait for the reply (capped by the gateway's --timeout)")]
MessageId = Annotated[str | None, Query(min_length=1, max_length=200,
                                        description="retry with the same id: the message is applied once")]
DeadLetterServer = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=500, description="rows of a page")]
Offset = Annotated[int, Query(ge=0, le=100_000_000, description="rows skipped")]
Prefix = Annotated[str, Query(max_length=200, description="only names starting with this")]
Family = Annotated[str | None, Query(min_length=1, max_length=200, description="only servers of this family")]
Status = Annotated[Literal["running", "starting", "inactive", "restarting", "failed", "family"] | None, Query()]
Owner = Annotated[str | None, Query(min_length=1, max_length=300, description="a worker node name or a host id")]
After = Annotated[str | None, Query(pattern=r"^[0-9]{1,15}-[0-9]{1,15}$", description="an event id: those after it")]
