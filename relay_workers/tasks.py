"""Celery tasks: the wire contract of the fleet.

`relay.eval(source, options=None)`: runs a program; returns a JSON object
  {"value", "output", "error", "tiers", "timings", "worker"}.
`relay.ping()`: a no-op (health checks; the benchmark's bare Celery round trip).
`relay.deliver(server, handler, args, message_id, chain=[])`: one message to a
  server (queue `relay.SERVER`); returns {"value"} or {"error"}.
Errors are structured ({"kind", "message", "file", "line", "col", "stack",
"text"}), never a Python traceback.
"""

from __future__ import annotations

import io
import logging
import time
import uuid

from celery import current_app
from celery.exceptions import Reject

from relay_lang.errors import RelayError
from relay_lang.interpreter import Interpreter, run_budgeted

from .app import app
from .hosting import Host, NotOwner
from .store import RedisObjectStore, Registry, connect
from .wire import to_wire

_host: Host | None = None
log = logging.getLogger("relay.workers")


def host_for(node: str) -> Host:
    """This process's host (one per worker process), created on first use."""
    global _host
    if _host is None or _host.node != node:
        conf = current_app.conf
        r = connect(conf.relay_store_url)
        _host = Host(node, Registry(r), RedisObjectStore(r), conf.relay_job_time_limit, send_message)
    return _host


WARM_UP = "@llvm\nfn relay_warm_up(x) { x + 1 }\nrelay_warm_up(1)"


def warm_up(node: str) -> None:
    """Runs one tiny compiled program at worker start, so that the first job of this process does
    not pay for first-time imports and code paths (its object code comes from the shared store)."""
    host = host_for(node)
    interp = Interpreter(out=io.StringIO(), err=io.StringIO(), cache=host.cache)
    try:
        run_budgeted(interp, lambda: interp.run(WARM_UP, "<warm-up>"), host.time_limit)
    except RelayError as err:  # pragma: no cover - a broken compiler shows in every test
        log.warning("relay: warm-up failed: %s", err)


def release_host() -> None:
    if _host is not None:
        _host.release_all()


def send_message(server: str, handler: str, args: list, message_id: str, chain: list[str], wait: bool):
    result = deliver.apply_async(args=[server, handler, args, message_id, chain], queue=f"relay.{server}")
    if not wait:
        return None
    try:
        return result.get(timeout=current_app.conf.relay_job_time_limit, disable_sync_subtasks=False)
    except Exception as exc:  # the timeout is the last resort, not the mechanism
        return {"error": RelayError(f"no reply from server '{server}' ({type(exc).__name__}: {exc})").to_dict()}


def _bad_request(message: str) -> dict:
    return {"error": RelayError(message, kind="bad request").to_dict()}


@app.task(name="relay.eval", bind=True)
def eval_job(self, source: object, options: dict | None = None) -> dict:
    started = time.perf_counter()
    node = self.request.hostname or "unknown"
    if not isinstance(source, str):
        return {**_bad_request(f"relay.eval takes the source as a string, got {type(source).__name__}"),
                "value": None, "output": "", "tiers": [], "timings": {}, "worker": node}
    options = options if isinstance(options, dict) else {}
    host = host_for(node)
    out = io.StringIO()
    interp = Interpreter(out=out, err=out, cache=host.cache, tier=str(options.get("tier", "auto")))
    host.attach(interp)
    limit = min(float(options.get("time_limit", host.time_limit)), host.time_limit)
    value, error = None, None
    before = (host.cache.stats.compiled, host.cache.stats.store_loads)  # the cache serves every job here
    try:
        value = to_wire(run_budgeted(interp, lambda: interp.run(source, str(options.get("file", "<eval>"))), limit))
    except RelayError as err:
        error = err.to_dict()
    stats = interp.router.cache.stats
    return {"value": value, "output": out.getvalue(), "error": error, "tiers": interp.router.explain(),
            "timings": {"seconds": time.perf_counter() - started, "compiled": stats.compiled - before[0],
                        "loaded_from_store": stats.store_loads - before[1]},
            "worker": node}


@app.task(name="relay.deliver", bind=True)
def deliver(self, server: object, handler: object, args: object = None, message_id: object = None,
            chain: object = None) -> dict:
    if not isinstance(server, str) or not isinstance(handler, str):
        return _bad_request("relay.deliver takes a server name and a handler name (strings)")
    if not isinstance(args, list) or not (chain is None or isinstance(chain, list)):
        return _bad_request("relay.deliver takes the arguments as a list")
    message_id = message_id if isinstance(message_id, str) else self.request.id or uuid.uuid4().hex
    try:
        return host_for(self.request.hostname or "unknown").apply(server, handler, args, message_id, chain or [])
    except NotOwner:
        raise Reject(f"server {server} is owned by another worker", requeue=True) from None
    except RelayError as err:  # a bad value in the arguments, say
        return {"error": err.to_dict()}


@app.task(name="relay.ping")
def ping() -> None:
    """A no-op: health checks, and the anchor of the fleet benchmark (a bare Celery round trip)."""
