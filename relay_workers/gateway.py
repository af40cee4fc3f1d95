"""The HTTP gateway (`relay gateway`): the fleet over HTTP, for people and programs that do not speak Celery.

REST under /v1, JSON-RPC 2.0 at /rpc and Relay 0.3's raw-source /jsonrpc, health at /healthz and /readyz,
Prometheus metrics for the whole fleet at /metrics; routes, statuses and metrics are in docs/gateway.md.

Async end to end: a call's reply is a BLPOP on its reply list (`relay:reply:ID`) and an eval job's result
is polled from the Redis result backend, both on redis.asyncio; the fleet snapshot (servers, metrics,
readiness) is one redis.asyncio pipeline. The short steps that must stay exactly RelayClient's (journal and
publish a message, publish an eval job, deploy, restart, dead letters) run RelayClient's own code on a
small thread pool, so the event loop never waits on a socket.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from typing import Annotated, Any, Literal, TypeVar

import redis.asyncio as aioredis
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay_lang.errors import RelayError
from relay_lang.nodes import ServerDecl
from relay_lang.parser import parse
from relay_lang.values import show

from .client import UNREACHABLE, RelayClient
from .ledger import CHECKPOINTED, key
from .registry import node_of
from .stats import BUCKETS, CACHE_RESULTS, HISTOGRAMS, bucket_name
from .wire import from_wire, to_wire

log = logging.getLogger("relay.gateway")
T = TypeVar("T")

STATUS_OF_KIND = {"bad request": 422, "not found": 404, "unauthorized": 401, "timeout": 504, "unreachable": 503,
                  "too large": 413, "internal error": 500}  # any other kind (a Relay error): 422
KIND_OF_STATUS = {400: "bad request", 401: "unauthorized", 404: "not found", 405: "method not allowed", 422: "bad request"}
MAX_BATCH = 1000  # JSON-RPC requests in one batch
STORE_CONNECTIONS = 1000  # each call waiting for its reply holds one; more wait for a free one


@dataclass
class GatewayConfig:
    token: str | None  # None: no authentication (`--insecure`)
    timeout: float = 60.0  # seconds a request may take, at most (longer asked timeouts are capped)
    read_timeout: float = 10.0  # seconds a client may take to send its request body
    max_body: int = 1 << 20  # bytes of request body
    broker_url: str | None = None
    result_backend: str | None = None
    store_url: str | None = None


def error_response(err: RelayError, status: int | None = None) -> JSONResponse:
    status = status or STATUS_OF_KIND.get(err.kind, 422)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": err.to_dict()}, status_code=status, headers=headers)


def not_found(message: str) -> RelayError:
    return RelayError(message, kind="not found")


# ---------------------------------------------------------------- metrics of the gateway process

REGISTRY = CollectorRegistry()
REQUESTS = Counter("relay_gateway_requests", "HTTP requests answered by the gateway",
                   ["method", "route", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("relay_gateway_request_duration_seconds", "Time to answer an HTTP request",
                            ["method", "route"], registry=REGISTRY)
IN_FLIGHT = Gauge("relay_gateway_requests_in_flight", "HTTP requests being answered", registry=REGISTRY)
FLEET_OPS = Counter("relay_gateway_fleet_operations", "Fleet operations the gateway made (call, send, eval, deploy, "
                    "restart), by outcome: ok or the error's kind", ["operation", "outcome"], registry=REGISTRY)
FLEET_SECONDS = Histogram("relay_gateway_fleet_operation_duration_seconds",
                          "Time from the gateway's request to the fleet's answer (a call's reply, an eval job's result)",
                          ["operation"], registry=REGISTRY,
                          buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))


# ---------------------------------------------------------------- the fleet, from the gateway

@dataclass
class ServerRecord:
    """One deployed server as the store has it."""

    name: str
    host: str  # the owner's host id, "" when none
    status: str  # running, starting, orphaned, unplaced, failed
    reason: str
    restarts: int
    version: int
    queued: int  # messages journalled, not yet applied
    leaseholder: str  # host id holding the lease, "" when none
    state_fields: int
    state_bytes: int  # Redis's MEMORY USAGE of the state hash (approximate)
    messages_applied: int
    acquisitions: int  # times a host acquired the server (its fencing token)

    def public(self) -> dict:
        d = dict(self.__dict__)
        d["owner"] = node_of(self.host) if self.host else ""
        d["failed"] = self.status == "failed"
        return d


@dataclass
class Snapshot:
    hosts: list[str]
    servers: list[ServerRecord]
    dead_letters: int
    eval_queue: int | None  # messages waiting on the broker's relay.eval queue (Redis broker only)


def async_redis(url: str, connections: int) -> aioredis.Redis:
    """A redis.asyncio client whose callers wait for one of its `connections` when all are busy."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=connections, timeout=None, socket_timeout=30,
                                                    socket_connect_timeout=5, health_check_interval=10)
    return aioredis.Redis(connection_pool=pool)


class Fleet:
    """The gateway's handle on the fleet: RelayClient for writes, redis.asyncio for waits and reads."""

    def __init__(self, config: GatewayConfig) -> None:
        self.client = RelayClient(config.broker_url, config.result_backend, config.store_url)
        backend = str(self.client.app.conf.result_backend)
        if not backend.startswith(("redis://", "rediss://")):
            raise SystemExit(f"relay gateway: the result backend must be Redis (got {backend})")
        self.store = async_redis(self.client.store_url, STORE_CONNECTIONS)
        self.results = async_redis(backend, 100)
        broker = self.client.broker_url
        self.broker = async_redis(broker, 10) if broker.startswith(("redis://", "rediss://")) else None
        self.pool = ThreadPoolExecutor(8, thread_name_prefix="relay-gateway")
        self.signatures: dict[str, tuple[int, dict[str, list[str]]]] = {}  # server -> (version, handlers)

    async def close(self) -> None:
        for r in (self.store, self.results, self.broker):
            if r is not None:
                await r.aclose()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """RelayClient's own (blocking) code, on the gateway's thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, lambda: fn(*args))

    # ------------------------------------------------------------ messages

    async def params(self, server: str, handler: str) -> list[str]:
        """The handler's parameter names, from the deployed source (parsed once per version)."""
        version, source, file = await self.store.hmget(key("server", server), "version", "source", "file")
        if version is None:
            raise not_found(f"no server named '{server}' is deployed")
        known_version, handlers = self.signatures.get(server, (None, {}))
        if known_version != int(version):
            handlers = await self.blocking(handlers_of, server, source.decode(), (file or b"<deploy>").decode())
            self.signatures[server] = (int(version), handlers)
        if handler not in handlers:
            known = ", ".join(sorted(handlers)) or "none"
            raise not_found(f"server {server} has no handler '{handler}' (handlers: {known})")
        return handlers[handler]

    async def checked_args(self, server: str, handler: str, args: list) -> list:
        params = await self.params(server, handler)
        if len(args) != len(params):
            raise RelayError(f"{server}.{handler}({', '.join(params)}) expects {len(params)} argument"
                             f"{'' if len(params) == 1 else 's'}, got {len(args)}", kind="bad request")
        return [to_wire(from_wire(a)) for a in args]

    async def call(self, server: str, handler: str, args: list, timeout: float, message_id: str | None = None) -> dict:
        """The reply ({"value"} or {"error"}) of a message; waits on its reply list."""
        wire = await self.checked_args(server, handler, args)
        message_id = message_id or uuid.uuid4().hex
        reply = await self.blocking(self.client.messenger.post, server, handler, wire, message_id, [], True)
        deadline = time.monotonic() + timeout
        while reply is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RelayError(f"no reply from server '{server}' within {timeout:g} s", kind="timeout")
            got = await self.store.blpop([key("reply", message_id)], timeout=max(0.01, min(left, 20.0)))
            if got is not None:
                reply = json.loads(got[1])
        return reply

    async def send(self, server: str, handler: str, args: list, message_id: str | None = None) -> str:
        wire = await self.checked_args(server, handler, args)
        message_id = message_id or uuid.uuid4().hex
        await self.blocking(self.client.messenger.post, server, handler, wire, message_id, [], False)
        return message_id

    # ------------------------------------------------------------ eval jobs

    async def eval(self, source: str, timeout: float, **options: object) -> dict:
        """An eval job's result (options: tier, time_limit, file); its Celery result is polled from the
        result backend."""
        app = self.client.app
        result = await self.blocking(lambda: app.send_task("relay.eval", args=[source, options], queue="relay.eval"))
        result_key = app.backend.get_key_for_task(result.id)
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            raw = await self.results.get(result_key)
            if raw is not None:
                meta = app.backend.decode_result(raw)
                if meta["status"] == "SUCCESS":
                    return meta["result"]
                if meta["status"] in ("FAILURE", "REVOKED"):
                    raise RelayError(f"the eval job failed in its worker ({meta['status']})", kind="internal error")
            if time.monotonic() + pause > deadline:
                raise RelayError(f"no reply from the fleet within {timeout:g} s (is a worker running "
                                 "`celery -A relay_workers worker -Q 'relay.*'`?)", kind="timeout")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.1)

    # ------------------------------------------------------------ reads

    async def snapshot(self, only: str | None = None) -> Snapshot:
        """Hosts, servers (or one), dead letters and the eval queue, in one pipeline."""
        r = self.store
        names = [only] if only else sorted(n.decode() for n in await r.smembers(key("servers")))
        async with r.pipeline(transaction=False) as pipe:
            pipe.hgetall(key("hosts"))
            pipe.time()
            pipe.zcard(key("deadtime"))
            for n in names:
                pipe.hmget(key("server", n), "owner", "status", "reason", "restarts", "version")
                pipe.get(key("lease", n))
                pipe.zcard(key("journal", n))
                pipe.hget(key("state", n), CHECKPOINTED)
                pipe.hlen(key("state", n))
                pipe.memory_usage(key("state", n))
                pipe.get(key("fence", n))
            values = await pipe.execute()
        hosts = beating(values[0], values[1], self.client.registry.host_ttl)
        live = set(hosts)
        servers = []
        for i, name in enumerate(names):
            (owner, status, reason, restarts, version), lease, queued, applied, fields, size, fence = \
                values[3 + 7 * i: 10 + 7 * i]
            if version is None:
                continue  # not deployed
            host = (owner or b"").decode()
            holder = lease.decode().rsplit(" ", 1)[0] if lease else ""
            if status == b"failed":
                state = "failed"
            elif host in live:
                state = "running" if holder == host else "starting"
            else:
                state = "orphaned" if host else "unplaced"
            servers.append(ServerRecord(name, host, state, (reason or b"").decode(), int(restarts or 0), int(version),
                                        queued, holder, max(0, fields - (applied is not None)), size or 0,
                                        int(applied or 0), int(fence or 0)))
        eval_queue = await self.broker.llen("relay.eval") if self.broker is not None and not only else None
        return Snapshot(hosts, servers, values[2], eval_queue)

    async def live_hosts(self) -> list[str]:
        """The hosts whose last heartbeat is within the host TTL (see `beating`)."""
        async with self.store.pipeline(transaction=False) as pipe:
            pipe.hgetall(key("hosts"))
            pipe.time()
            beats, now = await pipe.execute()
        return beating(beats, now, self.client.registry.host_ttl)


def beating(beats: dict[bytes, bytes], now: tuple[int, int], host_ttl: float) -> list[str]:
    """The hosts whose last heartbeat (the store's clock) is within `host_ttl` seconds of the store's time
    `now`: a host silent for longer is dead (killed, paused, cut off) whether or not the supervisor has
    reaped it yet, as relay_workers.registry.Registry.reap counts it."""
    t = now[0] + now[1] / 1e6
    return sorted(h.decode() for h, beat in beats.items() if t - float(beat) <= host_ttl)


def handlers_of(server: str, source: str, file: str) -> dict[str, list[str]]:
    """Each handler of `server` in a deployed source, with its parameter names."""
    for stmt in parse(source, file).stmts:
        if isinstance(stmt, ServerDecl) and stmt.name == server:
            return {h.fn.name: [p.name for p in h.fn.params] for h in stmt.handlers}
    return {}


def fleet_metrics(snap: Snapshot) -> list[Metric]:
    """The fleet's figures as Prometheus metric families (documented in docs/gateway.md)."""
    by_status = GaugeMetricFamily("relay_servers", "Deployed servers by status", labels=["status"])
    for status in ("running", "starting", "orphaned", "unplaced", "failed"):
        by_status.add_metric([status], sum(s.status == status for s in snap.servers))
    queued = GaugeMetricFamily("relay_server_queue_length", "Messages journalled at a server, not yet applied",
                               labels=["server"])
    restarts = CounterMetricFamily("relay_server_restarts", "Restarts of a server by the supervisor (failovers)",
                                   labels=["server"])
    failed = GaugeMetricFamily("relay_server_failed", "1 when a server is marked failed (past its restart intensity)",
                               labels=["server"])
    applied = CounterMetricFamily("relay_server_messages_applied", "Messages a server applied (committed)",
                                  labels=["server"])
    acquired = CounterMetricFamily("relay_server_acquisitions", "Times a host acquired a server's lease "
                                   "(first start, failovers, hand-offs)", labels=["server"])
    state = GaugeMetricFamily("relay_server_state_bytes", "Memory of a server's committed state in the store",
                              labels=["server"])
    leased = GaugeMetricFamily("relay_host_leases", "Server leases a host holds", labels=["host", "node"])
    owned = GaugeMetricFamily("relay_host_servers", "Servers placed on a host", labels=["host", "node"])
    for s in snap.servers:
        queued.add_metric([s.name], s.queued)
        restarts.add_metric([s.name], s.restarts)
        failed.add_metric([s.name], float(s.status == "failed"))
        applied.add_metric([s.name], s.messages_applied)
        acquired.add_metric([s.name], s.acquisitions)
        state.add_metric([s.name], s.state_bytes)
    for host in snap.hosts:
        leased.add_metric([host, node_of(host)], sum(s.leaseholder == host for s in snap.servers))
        owned.add_metric([host, node_of(host)], sum(s.host == host for s in snap.servers))
    families: list[Metric] = [
        GaugeMetricFamily("relay_store_up", "1 when the gateway could read the fleet's store", value=1),
        GaugeMetricFamily("relay_hosts", "Live worker hosts (registered and heartbeating)", value=len(snap.hosts)),
        by_status, queued, restarts, failed, applied, acquired, state, leased, owned,
        GaugeMetricFamily("relay_dead_letters", "Dead letters kept (input set aside, poison messages)",
                          value=snap.dead_letters)]
    if snap.eval_queue is not None:
        families.append(GaugeMetricFamily("relay_eval_queue_length", "Eval jobs waiting on the broker's relay.eval queue",
                                          value=snap.eval_queue))
    return families


async def read_worker_stats(r: aioredis.Redis) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The counters and histograms every worker flushes into the store (relay_workers.stats)."""
    async with r.pipeline(transaction=False) as pipe:
        pipe.hgetall(key("stats"))
        for kind in HISTOGRAMS:
            pipe.hgetall(key("hist", kind))
        values = await pipe.execute()
    decode = lambda raw: {k.decode(): float(v) for k, v in raw.items()}  # noqa: E731
    return decode(values[0]), {kind: decode(h) for kind, h in zip(HISTOGRAMS, values[1:])}


def worker_metrics(counters: dict[str, float], histograms: dict[str, dict[str, float]]) -> list[Metric]:
    """What the workers did, fleet-wide: messages and eval jobs (count, errors, latency), compile cache, dead letters."""
    families: list[Metric] = []
    for name, text in (("messages_total", "Server messages applied by every host"),
                       ("message_errors_total", "Server messages whose handler failed with a Relay error"),
                       ("eval_jobs_total", "Eval jobs run by every worker"),
                       ("eval_errors_total", "Eval jobs that ended with a Relay error"),
                       ("dead_lettered_total", "Messages set aside after too many attempts (poison messages)")):
        families.append(CounterMetricFamily(f"relay_{name.removesuffix('_total')}", text,
                                            value=counters.get(name, 0)))
    cache = CounterMetricFamily("relay_compile_cache_lookups", "Compile cache lookups by every worker: memory_hit "
                                "(loaded in the process), store_hit (object code from the store), compiled (a miss: "
                                "LLVM built it)", labels=["result"])
    for result in CACHE_RESULTS:
        cache.add_metric([result], counters.get(f"compile_cache_{result}", 0))
    families.append(cache)
    for kind, text in (("message", "Seconds a host took to apply a server message (handler and commit)"),
                       ("eval", "Seconds an eval job ran on a worker")):
        h = histograms.get(kind, {})
        cumulative, running = [], 0.0
        for bound in BUCKETS:
            running += h.get(bucket_name(bound), 0)
            cumulative.append((bucket_name(bound), running))
        families.append(HistogramMetricFamily(f"relay_{kind}_seconds", text, buckets=cumulative,
                                              sum_value=h.get("sum", 0.0)))
    return families


class FleetCollector:
    """A collector over one snapshot, for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


# ---------------------------------------------------------------- the edge: body size, slow clients, timeouts

class Edge:
    """ASGI middleware: reads the whole body first (at most `max_body` bytes, within `read_timeout`),
    bounds the request's time, counts it for /metrics, and answers its own errors as JSON."""

    def __init__(self, app: ASGIApp, config: GatewayConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.handle(scope, receive, sending)
        finally:
            IN_FLIGHT.dec()
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], path, str(status[0])).inc()
            REQUEST_SECONDS.labels(scope["method"], path).observe(time.perf_counter() - started)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with asyncio.timeout(self.config.read_timeout):
                read = await self.read_body(scope, receive)
        except TimeoutError:
            await error_response(RelayError(f"the request body did not arrive within {self.config.read_timeout:g} s",
                                            kind="timeout"), 408)(scope, receive, send)
            return
        if read is None:  # the client went away
            return
        body, too_large = read
        if too_large:
            await error_response(RelayError(f"the request body is larger than {self.config.max_body} bytes",
                                            kind="too large"))(scope, receive, send)
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started = [False]

        async def sending(message: Message) -> None:
            started[0] = True
            await send(message)

        try:
            async with asyncio.timeout(self.config.timeout + 5):  # a backstop: routes bound their own waits
                await self.app(scope, replay, sending)
        except TimeoutError:
            if started[0]:
                raise
            await error_response(RelayError(f"no answer within {self.config.timeout:g} s",
                                            kind="timeout"))(scope, receive, send)

    async def read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, bool] | None:
        """The body, and whether it was over the limit (the rest is read and dropped, so the client
        gets its 413 instead of a reset connection); None when the client disconnected."""
        limit = self.config.max_body
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        too_large = declared.isdigit() and int(declared) > limit
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            too_large = too_large or size > limit
            if not too_large:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), too_large


# ---------------------------------------------------------------- requests and responses

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
    status: Literal["running", "starting", "orphaned", "unplaced", "failed"]
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
Credentials = Annotated[HTTPAuthorizationCredentials | None,
                        Depends(HTTPBearer(auto_error=False, description="the gateway's RELAY_GATEWAY_TOKEN"))]
MessageId = Annotated[str | None, Query(min_length=1, max_length=200,
                                        description="retry with the same id: the message is applied once")]


# ---------------------------------------------------------------- JSON-RPC 2.0 (Relay 0.3's /rpc)

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
    server, _, handler = method.partition(".")
    args = params if isinstance(params, list) else [params]  # named params: one map argument, as in Relay 0.3
    try:
        if not server or not handler:
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


# ---------------------------------------------------------------- the app

def create_app(config: GatewayConfig) -> FastAPI:
    """The gateway's ASGI app (`relay gateway` serves it with uvicorn)."""
    state: dict[str, Fleet] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        state["fleet"] = Fleet(config)
        yield
        await state.pop("fleet").close()

    def fleet() -> Fleet:
        return state["fleet"]

    async def authorize(credentials: Credentials) -> None:
        if config.token is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, config.token.encode()):
            raise RelayError("a valid bearer token is required (Authorization: Bearer $RELAY_GATEWAY_TOKEN)",
                             kind="unauthorized")

    def cap(timeout: float) -> float:
        return min(timeout, config.timeout)

    async def measured(operation: str, work: Awaitable[T]) -> T:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await work
        except RelayError as err:
            outcome = err.kind
            raise
        except UNREACHABLE:
            outcome = "unreachable"
            raise
        finally:
            FLEET_OPS.labels(operation, outcome).inc()
            FLEET_SECONDS.labels(operation).observe(time.perf_counter() - started)

    app = FastAPI(title="Relay gateway", version="0.1.0", lifespan=lifespan, responses=ERRORS,
                  docs_url=None, redoc_url=None,  # the interactive docs below are served from this host, not a CDN
                  description="The Relay fleet over HTTP: eval jobs, deployment, messages to servers, the fleet's "
                              "state, JSON-RPC 2.0 (Relay 0.3's /rpc and /jsonrpc) and Prometheus metrics. "
                              "Every error is a JSON body `{\"error\": {kind, message, file, line, col, stack, text}}`. "
                              "See docs/gateway.md.")
    app.add_middleware(Edge, config=config)
    guarded = [Depends(authorize)]
    app.mount("/docs/assets", StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        """Swagger UI, with its files from the fastapi-offline package (it works offline)."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Relay gateway",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon.png")

    @app.exception_handler(RelayError)
    async def relay_error(_request: Request, err: RelayError) -> JSONResponse:
        return error_response(err)

    async def unreachable(_request: Request, exc: Exception) -> Response:
        return error_response(fleet().client.unreachable(exc))

    for exc_type in UNREACHABLE:
        app.add_exception_handler(exc_type, unreachable)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = KIND_OF_STATUS.get(exc.status_code, "error")
        return error_response(RelayError(str(exc.detail), kind=kind), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(RelayError("the body is not JSON", kind="bad request"), 400)
        text = "; ".join(f"{'.'.join(str(x) for x in p.get('loc', ()))}: {p.get('msg')}" for p in problems[:10])
        return error_response(RelayError(f"bad request: {text}", kind="bad request"), 422)

    @app.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("relay gateway: internal error")
        return error_response(RelayError(f"internal error in the gateway ({type(exc).__name__}; see its log)",
                                         kind="internal error"), 500)

    @app.post("/v1/eval", response_model=EvalResponse, dependencies=guarded, tags=["fleet"])
    async def eval_job(body: EvalRequest) -> dict:
        """Runs a program on the fleet; a Relay error in the program is in `error` (status 200)."""
        f = fleet()
        if body.server is not None and not await f.store.exists(key("server", body.server)):
            raise not_found(f"no server named '{body.server}' is deployed")
        return await measured("eval", f.eval(body.source, cap(body.timeout), **body.model_dump(
            include={"tier", "time_limit", "file"}, exclude_none=True)))

    @app.post("/v1/deploy", response_model=DeployResponse, dependencies=guarded, tags=["fleet"])
    async def deploy(body: DeployRequest) -> dict:
        """Starts the servers a source declares, or hot-upgrades them (state kept); 422 with the positioned
        error when the source does not parse, resolve or declare a server (nothing changes then)."""
        f = fleet()
        done = await measured("deploy", f.blocking(f.client.deploy, body.source, body.file, body.max_restarts,
                                                   body.restart_period, body.time_limit))
        return {"deployed": [{"name": name, "version": version} for name, version in done]}

    @app.post("/v1/servers/{name}/restart", response_model=RestartResponse, status_code=202, dependencies=guarded,
              tags=["servers"])
    async def restart(name: str) -> dict:
        """Brings back a server (a failed one too) from its last commit."""
        f = fleet()
        if not await f.store.exists(key("server", name)):
            raise not_found(f"no server named '{name}' is deployed")
        await measured("restart", f.blocking(f.client.restart, name))
        return {"restarting": name}

    @app.post("/v1/servers/{name}/{handler}", response_model=CallResponse, dependencies=guarded, tags=["servers"])
    async def call(name: str, handler: str, args: Args = None, timeout: Timeout = 30,
                   message_id: MessageId = None) -> dict | JSONResponse:
        """Sends a message and waits for the reply; a Relay error in the handler is a 422 with that error."""
        reply = await measured("call", fleet().call(name, handler, args or [], cap(timeout), message_id))
        if "error" in reply:
            return JSONResponse({"error": reply["error"]}, status_code=422)
        return {"value": reply["value"]}

    @app.post("/v1/servers/{name}/{handler}/send", response_model=SendResponse, status_code=202, dependencies=guarded,
              tags=["servers"])
    async def send(name: str, handler: str, args: Args = None,
                   message_id: MessageId = None) -> dict:
        """Enqueues a message; returns its id."""
        return {"message_id": await measured("send", fleet().send(name, handler, args or [], message_id))}

    @app.get("/v1/servers", response_model=list[Server], dependencies=guarded, tags=["servers"])
    async def servers() -> list[dict]:
        """Every deployed server: owner, status, restarts, failed or not, state size, queue length."""
        return [s.public() for s in (await fleet().snapshot()).servers]

    @app.get("/v1/servers/{name}", response_model=Server, dependencies=guarded, tags=["servers"])
    async def server(name: str) -> dict:
        found = (await fleet().snapshot(name)).servers
        if not found:
            raise not_found(f"no server named '{name}' is deployed")
        return found[0].public()

    @app.get("/v1/dead-letters", response_model=list[dict], dependencies=guarded, tags=["fleet"])
    async def dead_letters(server: Annotated[str | None, Query(max_length=200)] = None) -> list[dict]:
        """Input the fleet set aside (of one server, or all), with the reason."""
        f = fleet()
        return await f.blocking(f.client.dead_letters, server)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict:
        """Liveness: the gateway answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: ERRORS[503]})
    async def readyz() -> dict:
        """Readiness: the store, the result backend and a Redis broker answer, and a worker host is live (its
        heartbeat within RELAY_HOST_TTL: a host killed is not live, reaped by the supervisor or not)."""
        f = fleet()
        await f.results.ping()
        if f.broker is not None:
            await f.broker.ping()
        hosts = len(await f.live_hosts())
        if not hosts:
            raise RelayError("no worker host is live (start `celery -A relay_workers worker -Q 'relay.*'`)",
                             kind="unreachable")
        return {"status": "ready", "hosts": hosts}

    @app.get("/metrics", dependencies=guarded, tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus metrics: the whole fleet (read from the store now) and this gateway."""
        scrape = CollectorRegistry()
        try:
            families = fleet_metrics(await fleet().snapshot()) + worker_metrics(*await read_worker_stats(fleet().store))
            scrape.register(FleetCollector(families))  # type: ignore[arg-type]
        except UNREACHABLE:
            scrape.register(FleetCollector([GaugeMetricFamily("relay_store_up", fleet_metrics.__doc__ or "", value=0)]))  # type: ignore[arg-type]
        return Response(generate_latest(scrape) + generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    rpc_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}}

    @app.post("/rpc", dependencies=guarded, tags=["json-rpc"], openapi_extra=rpc_body)
    async def json_rpc(request: Request) -> Response:
        """JSON-RPC 2.0 as Relay 0.3's gateway: method "server.handler", params an array (the arguments) or
        an object (one map argument), batches, notifications (sent, no reply). `X-Relay-Timeout`: seconds."""
        return await rpc(fleet(), await request.body(), rpc_timeout(request))

    raw_body = {"requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}}

    @app.post("/jsonrpc", dependencies=guarded, tags=["json-rpc"], response_class=PlainTextResponse,
              openapi_extra=raw_body)
    async def raw_source(request: Request) -> Response:
        """Relay 0.3's raw-source evaluation: the body is a program; the answer is its value as text."""
        try:
            source = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise RelayError("the body is not UTF-8 text", kind="bad request") from None
        result = await measured("eval", fleet().eval(source, rpc_timeout(request)))
        if result["error"]:
            return JSONResponse({"error": result["error"]}, status_code=422)
        return PlainTextResponse(show(from_wire(result["value"])))

    def rpc_timeout(request: Request) -> float:
        text = request.headers.get("x-relay-timeout", "30")
        try:
            asked = float(text)
        except ValueError:
            asked = -1.0
        if not 0 < asked < float("inf"):
            raise RelayError(f"X-Relay-Timeout is a positive number of seconds, got {text!r}", kind="bad request")
        return cap(asked)

    return app


def serve(config: GatewayConfig, host: str, port: int) -> None:
    """Serves the gateway with uvicorn until interrupted."""
    import uvicorn
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=False,
                timeout_keep_alive=5, timeout_graceful_shutdown=10)


def run_gateway(args: argparse.Namespace) -> int:
    """`relay gateway`: refuses to serve without RELAY_GATEWAY_TOKEN unless --insecure."""
    token = os.environ.get("RELAY_GATEWAY_TOKEN") or None
    if token is None and not args.insecure:
        print("relay gateway: RELAY_GATEWAY_TOKEN is not set; set it (clients then send `Authorization: Bearer "
              "TOKEN`) or pass --insecure to serve without authentication", file=sys.stderr)
        return 2
    if token is None:
        print("relay gateway: --insecure: serving WITHOUT authentication", file=sys.stderr)
    config = GatewayConfig(token, args.timeout, args.read_timeout, args.max_body, os.environ.get("RELAY_BROKER_URL"),
                           os.environ.get("RELAY_RESULT_BACKEND"), os.environ.get("RELAY_STORE_URL"))
    serve(config, args.host, args.port)
    return 0
