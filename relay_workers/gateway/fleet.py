"""The fleet, from the gateway: `Fleet`, its handle on the fleet (RelayClient for writes, redis.asyncio for
waits and reads), and the records it reads.

A call's reply is a BLPOP on its reply list (`relay:reply:ID`) and an eval job's result is polled from the
Redis result backend, both on redis.asyncio; the fleet snapshot (servers, metrics, readiness) is one
redis.asyncio pipeline. The short steps that must stay exactly RelayClient's (journal and publish a message,
publish an eval job, deploy, restart, dead letters) run RelayClient's own code on a small thread pool, so
the event loop never waits on a socket.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from relay_lang.errors import RelayError
from relay_lang.nodes import ServerDecl
from relay_lang.parser import parse

from .. import registry
from ..client import RelayClient
from ..ledger import CHECKPOINTED, Lease, deployment_of, key, text
from ..registry import node_of
from ..store import connect_async
from ..wire import from_wire, to_wire
from .config import GatewayConfig
from .errors import not_found

T = TypeVar("T")

STORE_CONNECTIONS = 1000  # each call waiting for its reply holds one; more wait for a free one
RESULT_CONNECTIONS = 100  # to the result backend: eval jobs' results, /readyz
BROKER_CONNECTIONS = 10  # to a Redis broker: the eval queue's length, /readyz
THREADS = 8  # RelayClient's own (blocking) steps at once


@dataclass
class ServerRecord:
    """One deployed server as the store has it."""

    name: str
    host: str  # the owner's host id, "" when none
    status: str  # relay_workers.registry.Status
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


class Fleet:
    """The gateway's handle on the fleet: RelayClient for writes, redis.asyncio for waits and reads."""

    def __init__(self, config: GatewayConfig) -> None:
        self.client = RelayClient(config.broker_url, config.result_backend, config.store_url)
        backend = str(self.client.app.conf.result_backend)
        if not backend.startswith(("redis://", "rediss://")):
            raise SystemExit(f"relay gateway: the result backend must be Redis (got {backend})")
        self.store = connect_async(self.client.store_url, STORE_CONNECTIONS)
        self.results = connect_async(backend, RESULT_CONNECTIONS)
        broker = self.client.broker_url
        self.broker = connect_async(broker, BROKER_CONNECTIONS) if broker.startswith(("redis://", "rediss://")) else None
        self.pool = ThreadPoolExecutor(THREADS, thread_name_prefix="relay-gateway")
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
        record = deployment_of(server)  # a family's servers run their family's source
        version, source, file = await self.store.hmget(key("server", record), "version", "source", "file")
        if version is None or source is None:
            raise not_found(f"no server named '{server}' is deployed")
        known_version, handlers = self.signatures.get(record, (None, {}))
        if known_version != int(version):
            handlers = await self.blocking(handlers_of, record, text(source), text(file or b"<deploy>"))
            self.signatures[record] = (int(version), handlers)
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
        reply = await self.blocking(lambda: self.client.messenger.post(server, handler, wire, message_id, [], wait=True))
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
        await self.blocking(lambda: self.client.messenger.post(server, handler, wire, message_id, [], wait=False))
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
        names = [only] if only else sorted(text(n) for n in await r.smembers(key("servers")))
        async with r.pipeline(transaction=False) as pipe:
            ask_beats(pipe)
            pipe.zcard(key("deadtime"))
            ask_records(pipe, names)
            values = await pipe.execute()
        hosts = beating(values[0], values[1], self.client.registry.host_ttl)
        servers = read_records(names, values[3:], set(hosts))
        eval_queue = await self.broker.llen("relay.eval") if self.broker is not None and not only else None
        return Snapshot(hosts, servers, values[2], eval_queue)

    async def live_hosts(self) -> list[str]:
        """The hosts whose last heartbeat is within the host TTL (see `beating`)."""
        async with self.store.pipeline(transaction=False) as pipe:
            ask_beats(pipe)
            beats, now = await pipe.execute()
        return beating(beats, now, self.client.registry.host_ttl)


STORE_CLOCK = "return redis.call('TIME')"


def ask_beats(pipe: Any) -> None:
    """Queues, on a pipeline, the reads `beating` takes: the hosts' heartbeats and the store's clock. The
    clock is read by a script on the hosts' key, so that on a Redis Cluster it is the clock of the master
    that holds the fleet's records (a TIME command, having no key, goes to any master)."""
    pipe.hgetall(key("hosts"))
    pipe.eval(STORE_CLOCK, 1, key("hosts"))


def seconds(now: list[bytes]) -> float:
    """The store's clock as ask_beats reads it (TIME's seconds and microseconds), in seconds."""
    return int(now[0]) + int(now[1]) / 1e6


def beating(beats: dict[bytes, bytes], now: list[bytes], host_ttl: float) -> list[str]:
    """The hosts whose last heartbeat (the store's clock) is within `host_ttl` seconds of the store's time
    `now` (TIME's seconds and microseconds): a host silent for longer is dead (killed, paused, cut off)
    whether or not the supervisor has reaped it yet, as relay_workers.registry.Registry.reap counts it."""
    t = seconds(now)
    return sorted(h.decode() for h, beat in beats.items() if t - float(beat) <= host_ttl)


RECORD_COMMANDS = 8  # the store commands ask_records queues for each server


def ask_records(pipe: Any, names: list[str]) -> None:
    """Queues, on a pipeline, the reads of each server's record (read_records makes the records): its
    placement (a family's row `account[]`: the family's record), and its deployment's version."""
    for n in names:
        pipe.hmget(key("server", deployment_of(n) if n.endswith("[]") else n), "owner", "status", "reason",
                   "restarts")
        pipe.hget(key("server", deployment_of(n)), "version")
        pipe.get(key("lease", n))
        pipe.zcard(key("journal", n))
        pipe.hget(key("state", n), CHECKPOINTED)
        pipe.hlen(key("state", n))
        pipe.memory_usage(key("state", n))
        pipe.get(key("fence", n))


def status_of(name: str, host: str, holder: str, live: set[str], *, failed: bool) -> str:
    """A server's status, as `relay servers` shows it (relay_workers.registry.status_of)."""
    return str(registry.status_of(name, host, holder, live, failed=failed))


def read_records(names: list[str], values: list, live: set[str]) -> list[ServerRecord]:
    """The records of the servers still deployed, from the values of ask_records's commands."""
    servers = []
    for i, name in enumerate(names):
        (owner, status, reason, restarts), version, lease, queued, applied, fields, size, fence = \
            values[RECORD_COMMANDS * i: RECORD_COMMANDS * (i + 1)]
        if version is None:
            continue  # not deployed
        host = (owner or b"").decode()
        holder = Lease.holder_of(lease)
        servers.append(ServerRecord(name, host, status_of(name, host, holder, live, failed=status == b"failed"),
                                    (reason or b"").decode(), int(restarts or 0), int(version), queued, holder,
                                    max(0, fields - (applied is not None)), size or 0, int(applied or 0),
                                    int(fence or 0)))
    return servers


def handlers_of(server: str, source: str, file: str) -> dict[str, list[str]]:
    """Each handler of `server` in a deployed source, with its parameter names."""
    for stmt in parse(source, file).stmts:
        if isinstance(stmt, ServerDecl) and stmt.name == server:
            return {h.fn.name: [p.name for p in h.fn.params] for h in stmt.handlers}
    return {}
