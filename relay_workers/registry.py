"""The fleet's registry in Redis: hosts and their liveness, deployed servers and their placement.

Keys (prefix `relay:`):
  hosts          hash  host id -> last heartbeat (the store's clock, seconds)
  host:ID        hash  node, pid, started
  servers        set   deployed server names
  server:NAME    hash  source, file, version, owner (host id), restarts, status ("failed" or absent),
                       reason, and the server's settings (max_restarts, restart_period, time_limit, memory_limit)
  restarts:NAME  zset  times of the server's recent restarts (the restart policy)
  wake:HOST      list  the supervisor pushes here when it gives HOST a server (or suspects it)
  suspects       hash  host id -> when its connections were first seen gone (the store's clock, seconds)

A host id is one incarnation of a worker process ("NODE#PID.RANDOM"): a worker
restarted under the same node name is a new host, so it never inherits a lease
it did not acquire. A host is declared dead (`reap`) when it was silent for
longer than the host TTL (paused, cut off), or when its connections, named
`relay-host:ID`, are gone from the store's client list and stay gone for
CONFIRM seconds with no heartbeat meanwhile (the process died: the kernel
closed its sockets). A closed connection alone is only a reason to check: a
reset connection (a network blip, `CLIENT KILL`) closes it too, and a live
host reconnects and beats at once when a store command fails. A host declared
dead learns it when its next heartbeat fails, and gives up every server it
thought it had.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import cast

import redis
from redis.typing import EncodableT, FieldT

from .ledger import key, text

log = logging.getLogger("relay.workers")

# Beats only for a host still registered (or registering): a host declared dead learns it here.
HEARTBEAT = """
local now = redis.call('TIME')
if ARGV[2] == '1' or redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], now[1] + now[2] / 1e6)
  return 1
end
return 0
"""

# Removes hosts silent for longer than ARGV[1] seconds; returns their ids.
REAP = """
local now = redis.call('TIME')
local t = now[1] + now[2] / 1e6
local gone = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if t - tonumber(all[i + 1]) > tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('DEL', KEYS[2] .. all[i])
    gone[#gone + 1] = all[i]
  end
end
return gone
"""

# Gives a server to a host if its owner is still ARGV[1] (the supervisor read it so). When the server
# had an owner (it died), that is a restart: counted, remembered for the restart policy, and the dead
# owner's lease dropped (the fence, not the lease, keeps a dead owner from writing), so the new owner
# need not wait for it to expire; so is the server's wait-for edge (its handler died waiting).
ASSIGN = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
if owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
if owner ~= '' then
  redis.call('HINCRBY', KEYS[1], 'restarts', 1)
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[3])
  local lease = redis.call('GET', KEYS[2])
  if lease and string.sub(lease, 1, string.len(owner) + 1) == owner .. ' ' then redis.call('DEL', KEYS[2]) end
  redis.call('DEL', KEYS[4])
end
return 1
"""

CONNECTION_PREFIX = "relay-host:"
CONFIRM = 0.5  # seconds a host whose connections closed has to reconnect or beat before it is declared dead


def node_of(host: str) -> str:
    """The worker node name of a host id."""
    return host.split("#", 1)[0]


class Registry:
    def __init__(self, r: redis.Redis, host_ttl: float) -> None:
        self.r = r
        self.host_ttl = host_ttl
        self._heartbeat = r.register_script(HEARTBEAT)
        self._reap = r.register_script(REAP)
        self._assign = r.register_script(ASSIGN)
        self.recheck: float | None = None  # after a reap: seconds until a suspect can be confirmed dead

    # ------------------------------------------------------------ hosts

    def register_host(self, host: str, node: str, pid: int) -> None:
        self.r.hset(key("host", host), mapping={"node": node, "pid": pid, "started": time.time()})
        self._heartbeat(keys=[key("hosts")], args=[host, "1"])

    def heartbeat(self, host: str) -> bool:
        """False when this host was declared dead (and so lost its servers)."""
        return bool(self._heartbeat(keys=[key("hosts")], args=[host, "0"]))

    def reap(self) -> list[str]:
        """Declares dead the hosts silent past the host TTL, or whose connections closed and stayed closed;
        returns them. Sets `recheck`: seconds until a suspect may be confirmed dead (None: no suspect).

        Silence counts only once the store has been up for a host TTL (no host could beat while it was
        down). A host whose connections are gone from the store's client list is a suspect, not dead: it
        is woken (a live host beats at once), and declared dead only when, CONFIRM seconds after it was
        first seen gone, its connections are still gone and it has not beaten since. A suspect that beat
        since, or whose connections came back, is cleared. Just after the store restarted every host is
        reconnecting, so no missing connection counts until the store has been up for half the host TTL."""
        uptime = int(self.r.info("server").get("uptime_in_seconds", 0))
        gone = []
        if uptime > self.host_ttl:  # no host could beat while the store was down: give them a TTL to come back
            gone = [h.decode() for h in self._reap(keys=[key("hosts"), key("host", "")], args=[self.host_ttl])]
        seconds, micros = self.r.time()
        now = seconds + micros / 1e6
        beats = {text(h): float(t) for h, t in self.r.hgetall(key("hosts")).items()}
        missing = self.disconnected(list(beats))
        suspected = {text(h): float(t) for h, t in self.r.hgetall(key("suspects")).items()}
        settled = uptime > self.host_ttl / 2
        still: dict[FieldT, EncodableT] = {}  # host -> when it was first suspected
        self.recheck = None
        for host in sorted(missing):
            since = suspected.get(host)
            if since is None or since < now - uptime or beats[host] > since:  # newly gone (again): check it
                since = now
                self.wake(host)
            if settled and now - since >= CONFIRM:
                log.warning("relay: host %s declared dead: its connections closed %.1f s ago and stayed closed, "
                            "with no heartbeat since", host, now - since)
                self.remove_host(host)
                gone.append(host)
                continue
            still[host] = since
            wait = max(CONFIRM - (now - since), self.host_ttl / 2 - uptime, 0.05)
            self.recheck = wait if self.recheck is None else min(self.recheck, wait)
        if still or suspected:
            with self.r.pipeline() as pipe:
                pipe.delete(key("suspects"))
                if still:
                    pipe.hset(key("suspects"), mapping=still)
                pipe.execute()
        return gone

    def deaths_noticed(self) -> bool:
        """Cheap: is a registered host gone (silent past the host TTL, or its connection closed), or a
        server without a live owner?"""
        seconds, micros = self.r.time()
        now = seconds + micros / 1e6
        beats = {text(h): float(t) for h, t in self.r.hgetall(key("hosts")).items()}
        return (any(now - t > self.host_ttl for t in beats.values()) or bool(self.disconnected(list(beats)))
                or any(self.orphans()))

    def disconnected(self, hosts: list[str]) -> set[str]:
        """The hosts whose heartbeat connection is not in the store's client list."""
        connected = {c.get("name", "") for c in self.r.client_list()}
        return {h for h in hosts if CONNECTION_PREFIX + h not in connected}

    def wake(self, host: str) -> None:
        with self.r.pipeline() as pipe:
            pipe.lpush(key("wake", host), 1)
            pipe.expire(key("wake", host), 10)
            pipe.execute()

    def wait_for_wake(self, host: str, timeout: float) -> None:
        """Sleeps up to `timeout` seconds, less when the supervisor gives this host a server."""
        if self.r.blpop([key("wake", host)], timeout=timeout) is not None:
            self.r.delete(key("wake", host))

    def live_hosts(self) -> list[str]:
        return sorted(text(h) for h in self.r.hkeys(key("hosts")))

    def remove_host(self, host: str) -> None:
        self.r.hdel(key("hosts"), host)
        self.r.delete(key("host", host))

    # ------------------------------------------------------------ servers

    def server(self, name: str) -> dict[str, str] | None:
        data = self.r.hgetall(key("server", name))
        return {text(k): text(v) for k, v in data.items()} if data else None

    def summary(self, name: str) -> dict[str, str]:
        """A server's record without its source: status, reason, restarts, version (those set)."""
        fields = ("status", "reason", "restarts", "version")
        values = self.r.hmget(key("server", name), fields)
        return {f: text(v) for f, v in zip(fields, values) if v is not None}

    def names(self) -> list[str]:
        return sorted(text(n) for n in self.r.smembers(key("servers")))

    def version(self, name: str) -> int | None:
        v = self.r.hget(key("server", name), "version")
        return int(v) if v is not None else None

    def register(self, name: str, source: str, file: str, settings: Mapping[FieldT, EncodableT] | None = None) -> int:
        """Records (or upgrades) a server with its settings, placed on a live host if it has no live owner;
        returns its version."""
        k = key("server", name)
        with self.r.pipeline() as pipe:
            pipe.hincrby(k, "version", 1)
            pipe.hset(k, mapping={"source": source, "file": file, **(settings or {})})
            pipe.hsetnx(k, "restarts", 0)
            pipe.sadd(key("servers"), name)
            version = pipe.execute()[0]
        if self.r.hget(k, "status") != b"failed":
            self.place_if_unowned(name)
        return version

    def place_if_unowned(self, name: str) -> None:
        """Gives a server with no live owner to the live host with the fewest servers, and wakes that host."""
        owner = text(self.r.hget(key("server", name), "owner") or b"")
        if owner not in set(self.live_hosts()):
            host = self.place()
            if host and self.assign(name, owner, host):
                self.wake(host)

    def assign(self, name: str, owner: str, host: str) -> bool:
        """Gives the server to `host` unless its owner changed from `owner` meanwhile (see ASSIGN)."""
        return bool(self._assign(keys=[key("server", name), key("lease", name), key("restarts", name),
                                       key("waitfor", name)], args=[owner, host, time.time()]))

    def restarts_since(self, name: str, since: float) -> list[float]:
        """Times of the server's restarts after `since`, oldest first (older ones are forgotten)."""
        k = key("restarts", name)
        self.r.zremrangebyscore(k, "-inf", f"({since}")
        return [float(t) for t in cast(list[bytes], self.r.zrangebyscore(k, since, "+inf"))]

    def mark_failed(self, name: str, reason: str) -> None:
        """Stops restarting the server; its queue, journal and state stay for `restart`."""
        self.r.hset(key("server", name), mapping={"status": "failed", "reason": reason, "owner": ""})

    def restart(self, name: str) -> bool:
        """Brings back a failed (or any) server: its restart history is forgotten and it is placed anew."""
        k = key("server", name)
        if not self.r.exists(k):
            return False
        with self.r.pipeline() as pipe:
            pipe.hdel(k, "status", "reason")
            pipe.delete(key("restarts", name))
            pipe.execute()
        self.place_if_unowned(name)
        return True

    def owners(self) -> dict[str, str]:
        """Every deployed server and its owner's host id ("" when never placed)."""
        names = self.names()
        if not names:
            return {}
        with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(key("server", name), "owner")
            owners = pipe.execute()
        return {name: (owner or b"").decode() for name, owner in zip(names, owners)}

    def assigned_to(self, host: str) -> list[str]:
        return [name for name, owner in self.owners().items() if owner == host]

    def place(self) -> str:
        """The host for a new server: the live host with the fewest servers ("" when there is none)."""
        hosts = self.live_hosts()
        if not hosts:
            return ""
        load = dict.fromkeys(hosts, 0)
        for owner in self.owners().values():
            if owner in load:
                load[owner] += 1
        return min(hosts, key=lambda h: (load[h], h))

    def orphans(self) -> list[str]:
        """Servers whose owner is no live host (it died or stopped, or the server was never placed)."""
        live = set(self.live_hosts())
        names = [name for name, owner in self.owners().items() if owner not in live]
        if not names:
            return []
        with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(key("server", name), "status")
            statuses = pipe.execute()
        return [name for name, status in zip(names, statuses) if status != b"failed"]

    def hand_off(self, name: str, host: str) -> None:
        """A clean stop: the server is left unowned, for the supervisor to place at once (no restart counted)."""
        k = key("server", name)
        if text(self.r.hget(k, "owner") or b"") == host:
            self.r.hset(k, "owner", "")
