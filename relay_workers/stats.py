"""Fleet-wide counters and latency histograms, written by every worker into the store and read by the
gateway's /metrics: the figures live in many processes, the scrape reads them in one place.

Keys (prefix `{relay}:`): `stats` hash, counter name -> value; `hist:KIND` hash, a bucket's upper bound
-> observations in it, plus `sum` and `count`. Workers add in memory and flush with one pipelined round
trip (a host at each heartbeat, an eval job when it ends).
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

import redis

from relay_lang.compiler.cache import CacheStats

from .ledger import key

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, float("inf"))
HISTOGRAMS = ("message", "eval")
CACHE_RESULTS = ("memory_hit", "store_hit", "compiled")


def bucket_name(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class FleetStats:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.buckets: dict[str, Counter[str]] = {kind: Counter() for kind in HISTOGRAMS}
        self.sums: defaultdict[str, float] = defaultdict(float)  # seconds observed, by kind
        self.seen_cache = (0, 0, 0)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    def observe(self, kind: str, seconds: float) -> None:
        bound = next(b for b in BUCKETS if seconds <= b)
        with self.lock:
            self.buckets[kind][bucket_name(bound)] += 1
            self.sums[kind] += seconds

    def cache(self, stats: CacheStats) -> None:
        """Counts the compile cache's lookups since the last call."""
        now = (stats.memory_hits, stats.store_loads, stats.compiled)
        with self.lock:
            for result, new, old in zip(CACHE_RESULTS, now, self.seen_cache):
                self.counters[f"compile_cache_{result}"] += new - old
            self.seen_cache = now

    def flush(self) -> None:
        with self.lock:
            counters, buckets, sums = self.counters, self.buckets, self.sums
            self.counters, self.sums = Counter(), defaultdict(float)
            self.buckets = {kind: Counter() for kind in HISTOGRAMS}
        if not counters and not sums:
            return
        try:
            with self.r.pipeline(transaction=False) as pipe:
                for name, n in counters.items():
                    if n:
                        pipe.hincrby(key("stats"), name, n)
                for kind in HISTOGRAMS:
                    for bucket, n in buckets[kind].items():
                        pipe.hincrby(key("hist", kind), bucket, n)
                    if buckets[kind]:
                        pipe.hincrby(key("hist", kind), "count", sum(buckets[kind].values()))
                        pipe.hincrbyfloat(key("hist", kind), "sum", sums[kind])
                pipe.execute()
        except (redis.RedisError, OSError):  # the store away: these figures are lost, nothing else
            pass


def record_memory(r: redis.Redis, host: str, resident: int) -> None:
    """A host's resident memory at its heartbeat, in the store's `memory` hash (host id -> bytes), for the
    gateway's dashboard; the supervisor drops the entries of hosts no longer registered."""
    r.hset(key("memory"), host, resident)
