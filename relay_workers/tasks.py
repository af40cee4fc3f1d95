"""Celery tasks: the part of the wire contract the pool runs.

`relay.eval(source, options={})`: runs a program; returns a JSON object
  {"value", "output", "error", "tiers", "timings", "worker"}.
`relay.supervise()`: one pass of the supervisor (beat runs it periodically).
`relay.ping()`: a no-op (health checks; the benchmark's bare Celery round trip).
`relay.deliver(...)` normally goes to `relay.SERVER` and is taken by the
  server's host, never the pool; one that reaches the pool (sent to the wrong
  queue) is journalled at its server and forwarded to its queue.
Errors are structured ({"kind", "message", "file", "line", "col", "stack",
"text"}), never a Python traceback.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from celery import Task

from relay_lang.compiler.cache import CompileCache
from relay_lang.errors import RelayError
from relay_lang.interpreter import Interpreter, run_budgeted

from .cache import RedisObjectStore
from .celery import app
from .ledger import Ledger
from .output import CappedOutput
from .registry import Registry
from .results import CeleryResults
from .runtime import FleetRuntime, Messenger
from .stats import FleetStats
from .store import connect
from .supervisor import Policy, Supervisor
from .wire import named_message_id, parse_delivery, parse_eval, to_wire

log = logging.getLogger("relay.workers")


@dataclass
class Resources:
    """What a worker process's tasks share: the store's client, the messenger, the compile cache."""

    registry: Registry
    messenger: Messenger
    cache: CompileCache
    supervisor: Supervisor
    stats: FleetStats
    time_limit: float
    output_limit: int


class FleetTask(Task):
    """Tasks with per-process resources, created in the process that runs them (Celery's documented pattern)."""

    _resources: Resources | None = None
    _pid = 0

    @property
    def resources(self) -> Resources:
        if self._resources is None or self._pid != os.getpid():
            conf = self.app.conf
            r = connect(conf.relay_store_url)
            ledger = Ledger(r, conf.relay_lease_ttl)
            registry = Registry(r, conf.relay_host_ttl, conf.relay_max_restarts, conf.relay_restart_period)
            policy = Policy(conf.relay_max_restarts, conf.relay_restart_period)
            type(self)._resources = Resources(registry, Messenger(self.app, ledger), CompileCache(RedisObjectStore(r)),
                                              Supervisor(r, registry, policy), FleetStats(r), conf.relay_job_time_limit,
                                              conf.relay_output_limit)
            type(self)._pid = os.getpid()
        assert self._resources is not None
        return self._resources


def _failed(err: RelayError, node: str) -> dict:
    return {"value": None, "output": "", "error": err.to_dict(), "tiers": [], "timings": {}, "worker": node}


@app.task(name="relay.eval", bind=True, base=FleetTask)
def eval_job(self: FleetTask, *args: object, **kwargs: object) -> dict:
    started = time.perf_counter()
    node = self.request.hostname or "unknown"
    try:
        source, options = parse_eval(args, kwargs)
    except RelayError as err:
        return _failed(err, node)
    res = self.resources
    limit = min(options.time_limit or res.time_limit, res.time_limit)
    out = CappedOutput(res.output_limit)
    interp = Interpreter(out=out, err=out, cache=res.cache, tier=options.tier)
    FleetRuntime(res.messenger, res.registry, limit).attach(interp)
    value, error = None, None
    before = (res.cache.stats.compiled, res.cache.stats.store_loads)  # the cache serves every job here
    try:
        value = to_wire(run_budgeted(interp, lambda: interp.run(source, options.file), limit))
    except RelayError as err:
        error = err.to_dict()
    stats = res.cache.stats
    seconds = time.perf_counter() - started
    res.stats.count("eval_jobs_total")
    if error is not None:
        res.stats.count("eval_errors_total")
    res.stats.observe("eval", seconds)
    res.stats.cache(stats)
    res.stats.flush()
    return {"value": value, "output": out.getvalue(), "error": error, "tiers": interp.router.explain(),
            "timings": {"seconds": seconds, "compiled": stats.compiled - before[0],
                        "loaded_from_store": stats.store_loads - before[1]},
            "worker": node}


@app.task(name="relay.deliver", bind=True, base=FleetTask, ignore_result=True)
def misrouted_delivery(self: FleetTask, *args: object, **kwargs: object) -> None:
    """A server message that reached the pool (a queue other than `relay.SERVER`): on to its server.
    Its reply is stored under its message id and its task id when the server applies it (or here, when it
    cannot be delivered), as the host's inbox does (relay_workers.results)."""
    task_id = self.request.id or ""
    results = CeleryResults(self.app, self.resources.registry.r)
    try:
        d = parse_delivery(list(args), kwargs, task_id)
    except RelayError as err:
        results.put(named_message_id(list(args), kwargs) or task_id, {"error": err.to_dict()}, task_id)
        return
    results.carried(d.message_id, task_id)
    try:
        reply = self.resources.messenger.post(d.server, d.handler, d.args, d.message_id, d.chain, wait=False,
                                                      result=True)
    except RelayError as err:
        reply = {"error": err.to_dict()}
    if reply is not None:
        results.put(d.message_id, reply, task_id)


@app.task(name="relay.supervise", bind=True, base=FleetTask, ignore_result=True)
def supervise(self: FleetTask) -> None:
    """One pass of the supervisor (relay_workers.supervisor): `celery -A relay_workers beat` runs it every
    RELAY_SUPERVISE_EVERY seconds; hosts run the same pass at once when they see a death."""
    self.resources.supervisor.run()


@app.task(name="relay.ping")
def ping() -> None:
    """A no-op: health checks, and the anchor of the fleet benchmark (a bare Celery round trip)."""
