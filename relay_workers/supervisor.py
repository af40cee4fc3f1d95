"""The supervisor: the one place where restart decisions are made (run by the `relay.supervise` task).

One pass (`Supervisor.run`), under a lock so that only one supervisor acts at
a time however many beats and hosts ask:

1. declare dead the hosts whose heartbeat stopped, or whose connections closed
   and stayed closed with no heartbeat for a moment (relay_workers.registry:
   a closed connection alone only makes a host a suspect, checked again
   `Report.recheck` seconds later);
2. for each server with messages waiting and no live owner (`{relay}:unowned`: the
   servers of a dead host that had messages waiting, and those whose next
   message found their owner dead or no live host; relay_workers.registry): if
   it was running on a host that died, that is a restart. A server restarted more than its policy allows within
   the policy's period (default 5 in 60 s, as OTP's intensity and period) is
   marked failed — its queue, journal and state are kept — until `relay
   restart NAME`. A server that dies again within CRASH_LOOP seconds of its
   last restart waits a backoff first (1, 2, 4 ... s by the restarts in the
   period, at most 30 s); one that ran for longer restarts at once;
3. place the server on the live host with the fewest servers, and wake that
   host so it starts the server at once (from its last commit).

What a pass did — hosts declared dead, failovers (server, old and new owner), servers marked failed — is
appended to the store's event stream `{relay}:events` (the last EVENTS_KEPT, roughly), which the gateway's
dashboard shows as it happens (`/v1/fleet/events`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

import redis
from redis.typing import EncodableT, FieldT

from .ledger import key
from .registry import EVENTS_KEPT, Registry

log = logging.getLogger("relay.workers")

LOCK_MS = 10_000
MAX_BACKOFF = 30.0
CRASH_LOOP = 5.0  # seconds: a server dying again this soon after its restart is backed off

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class Policy:
    """How often a server may be restarted: at most `max_restarts` within `period` seconds."""

    max_restarts: int = 5
    period: float = 60.0

    @classmethod
    def of(cls, info: dict[str, str], default: Policy) -> Policy:
        return cls(int(info.get("max_restarts") or default.max_restarts),
                   float(info.get("restart_period") or default.period))

    def backoff(self, recent: list[float], now: float) -> float:
        """Seconds still to wait before the next restart, given the times of the restarts in the period."""
        if not recent or now - recent[-1] >= CRASH_LOOP:
            return 0.0
        return max(0.0, recent[-1] + min(MAX_BACKOFF, 2.0 ** (len(recent) - 1)) - now)


@dataclass
class Report:
    dead_hosts: list[str] = field(default_factory=list)
    restarted: dict[str, str] = field(default_factory=dict)  # server -> new host
    placed: dict[str, str] = field(default_factory=dict)  # never placed, or handed off cleanly
    failed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # in backoff
    busy: bool = False  # another supervisor held the lock
    recheck: float | None = None  # seconds until a suspect host may be confirmed dead: run again then
    moved_from: dict[str, str] = field(default_factory=dict)  # restarted server -> its dead owner's host id
    reasons: dict[str, str] = field(default_factory=dict)  # failed server -> why

    def events(self) -> list[dict[FieldT, EncodableT]]:
        """What the pass did, as entries of the event stream ({relay}:events)."""
        now = repr(time.time())
        events: list[dict[FieldT, EncodableT]] = [{"kind": "host dead", "host": h, "time": now} for h in self.dead_hosts]
        events += [{"kind": "failover", "server": s, "from": self.moved_from.get(s, ""), "to": h, "time": now}
                   for s, h in self.restarted.items()]
        events += [{"kind": "failed", "server": s, "reason": self.reasons.get(s, ""), "time": now} for s in self.failed]
        return events


class Supervisor:
    def __init__(self, r: redis.Redis, registry: Registry, default: Policy) -> None:
        self.r = r
        self.registry = registry
        self.default = default
        self._release = r.register_script(RELEASE_LOCK)

    def run(self) -> Report:
        """One pass, under the lock; a pass cut by a reset connection is run again once (at once: the
        client reconnects)."""
        for attempt in (1, 2):
            token = uuid.uuid4().hex
            try:
                if not self.r.set(key("supervisor"), token, nx=True, px=LOCK_MS):
                    return Report(busy=True)
                try:
                    return self.supervise()
                finally:
                    self._release(keys=[key("supervisor")], args=[token])
            except (redis.ConnectionError, redis.TimeoutError):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def supervise(self) -> Report:
        report = Report(dead_hosts=self.registry.reap(), recheck=self.registry.recheck)
        live = self.registry.live_hosts()
        if not live:
            self.record(report)
            return report
        self.registry.release_dead()
        now = time.time()
        load = self.registry.loads(live)
        for name in self.registry.unowned():
            info = self.registry.server(name)
            owner = (info or {}).get("owner", "")
            if info is None or info.get("status") == "failed" or owner in load:  # gone, failed, or placed meanwhile
                self.registry.settle(name)
                continue
            if owner:  # its owner died: a restart, within the policy
                policy = Policy.of(info, self.default)
                recent = self.registry.restarts_since(name, now - policy.period)
                if len(recent) >= policy.max_restarts:
                    reason = f"restarted {len(recent)} times within {policy.period:g} s"
                    self.registry.mark_failed(name, reason)
                    log.error("relay: server %s failed: %s", name, reason)
                    report.failed.append(name)
                    report.reasons[name] = reason
                    continue
                if policy.backoff(recent, now) > 0:
                    report.waiting.append(name)
                    continue
            host = min(load, key=lambda h: (load[h], h))
            if self.registry.assign(name, owner, host):
                load[host] += 1
                (report.restarted if owner else report.placed)[name] = host
                if owner:
                    report.moved_from[name] = owner
                self.registry.ring(host, [name])
        if report.restarted or report.failed or report.dead_hosts:
            log.info("relay: supervisor: dead hosts %s, restarted %s, failed %s", report.dead_hosts,
                     report.restarted, report.failed)
        self.record(report)
        return report

    def record(self, report: Report) -> None:
        """Appends the pass's events to the store's event stream, and drops the memory figures of hosts no
        longer registered (relay_workers.stats.record_memory)."""
        events = report.events()
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hkeys(key("memory"))
            pipe.hkeys(key("hosts"))
            figures, hosts = pipe.execute()
        gone = set(figures) - set(hosts)
        if not events and not gone:
            return
        with self.r.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(key("events"), event, maxlen=EVENTS_KEPT, approximate=True)
            if gone:
                pipe.hdel(key("memory"), *gone)
            pipe.execute()
