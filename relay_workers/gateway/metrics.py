"""Prometheus metrics: this gateway's own (requests, fleet operations), and the whole fleet's, read from
the store at each scrape (documented in docs/gateway.md)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from relay_lang.errors import RelayError

from ..client import UNREACHABLE
from ..ledger import key
from ..registry import node_of
from ..stats import BUCKETS, CACHE_RESULTS, HISTOGRAMS, bucket_name
from .fleet import Fleet, Snapshot

T = TypeVar("T")

REGISTRY = CollectorRegistry()  # this gateway's own
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


async def measured(operation: str, work: Awaitable[T]) -> T:
    """`work`'s result, counted and timed as a fleet operation (by outcome: ok or the error's kind)."""
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


async def scrape(fleet: Fleet) -> bytes:
    """The whole fleet (read from the store now), then this gateway, in Prometheus's text format."""
    fleet_registry = CollectorRegistry()
    try:
        families = fleet_metrics(await fleet.snapshot()) + worker_metrics(*await read_worker_stats(fleet.store))
        fleet_registry.register(FleetCollector(families))
    except UNREACHABLE:
        down = GaugeMetricFamily("relay_store_up", fleet_metrics.__doc__ or "", value=0)
        fleet_registry.register(FleetCollector([down]))
    return generate_latest(fleet_registry) + generate_latest(REGISTRY)


def fleet_metrics(snap: Snapshot) -> list[Metric]:
    """The fleet's figures as Prometheus metric families (documented in docs/gateway.md)."""
    by_status = GaugeMetricFamily("relay_servers", "Deployed servers by status", labels=["status"])
    for status in ("running", "starting", "inactive", "restarting", "failed", "family"):
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
