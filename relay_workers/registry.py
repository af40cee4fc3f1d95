"""The fleet's registry in Redis: hosts and their liveness, deployed servers and their placement.

Keys (prefix `{relay}:`):
  hosts          hash  host id -> last heartbeat (the store's clock, seconds)
  host:ID        hash  node, pid, started
  servers        set   deployed server names (a family as `account[]`)
  server:NAME    hash  source, file, version, owner (host id), restarts, status ("failed" or absent),
                       reason, and the server's settings (max_restarts, restart_period, time_limit, memory_limit);
                       a family's: the same but owner, and family=1; a family's server `account[ada]` has
                       a record of its own for owner, restarts, status and reason, made at its first message
  instances:FAM  set   the servers of family FAM that ever received a message
  restarts:NAME  zset  times of the server's recent restarts (the restart policy)
  events         stream the supervisor's events (failovers, failed servers, dead hosts), about EVENTS_KEPT
  owned:HOST     set   the servers HOST owns: active there now, or (HOST dead) until each is restarted
  placed         hash  server -> its owner's host id, for every server with an owner (`owned` sets joined:
                       the catalog's view of which servers are not inactive, read at once)
  failed         set   the servers marked failed (their records' status "failed"), for the catalog
  indexed        str   set once `placed` and `failed` were built from the records (a store written before
                       they existed: see INDEX)
  holders        set   the hosts that were given servers (their `owned` sets are checked when they die)
  unowned        set   servers with messages to apply and no live owner: the supervisor places them
  wake:HOST      list  the supervisor pushes here when it gives HOST a server (or suspects it)
  bell:HOST      list  names of servers HOST was just given by their first message (see `activate`)
  suspects       hash  host id -> when its connections were first seen gone (the store's clock, seconds)

A server is *active* while a live host owns it, and *inactive* (no owner, its
state and journal in the ledger) from its deployment until its first message,
and after its owner let it go idle (`passivate`). A message to an inactive
server activates it (`activate`): it is given to the live host with the fewest
servers, which starts it from its last commit. Every cost a host pays per server
(its thread, lease, journal checks) is paid for active servers only.

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
from enum import StrEnum
from typing import cast

import redis
from redis.typing import EncodableT, FieldT

from relay_lang.errors import RelayError
from relay_lang.names import parse_instance_name

from .ledger import deployment_of, key, refused, text
from .store import home

log = logging.getLogger("relay.workers")

EVENTS_KEPT = 1000  # the event stream's length (`{relay}:events`, trimmed approximately)

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

# Gives server `name` (its record `server`) to `host`, taking it from `owner` ('' when it had none). When it
# had an owner (it died), that is a restart: counted, remembered for the restart policy (`restarts` zset,
# at `now`), and the dead owner's lease dropped (the fence, not the lease, keeps a dead owner from writing),
# so the new owner need not wait for it to expire; so is the server's wait-for edge (its handler died waiting).
GIVE_FN = """
local function give(server, name, host, owner, owned, holders, unowned, restarts, lease, waitfor, placed, now)
  redis.call('HSET', server, 'owner', host)
  redis.call('HSET', placed, name, host)
  redis.call('SADD', owned .. host, name)
  redis.call('SADD', holders, host)
  redis.call('SREM', unowned, name)
  if owner == '' then return end
  redis.call('SREM', owned .. owner, name)
  redis.call('HINCRBY', server, 'restarts', 1)
  redis.call('ZADD', restarts, now, now)
  local held = redis.call('GET', lease)
  if held and string.sub(held, 1, string.len(owner) + 1) == owner .. ' ' then redis.call('DEL', lease) end
  redis.call('DEL', waitfor)
end
"""

# Gives a server to a host if its owner is still ARGV[1] (the supervisor read it so): see GIVE_FN.
ASSIGN = GIVE_FN + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
if owner ~= ARGV[1] then return 0 end
give(KEYS[1], ARGV[4], ARGV[2], owner, ARGV[5], KEYS[6], KEYS[5], KEYS[3], KEYS[2], KEYS[4], KEYS[7], ARGV[3])
return 1
"""

# A message for server ARGV[1] arrived: its live owner ({1, HOST}); or, the server inactive (no owner),
# it is given to the live host (a heartbeat within ARGV[2] seconds) with the fewest servers ({2, HOST}); or,
# its owner died (no heartbeat within ARGV[2] s) and it was not restarted within its restart period (the
# deployment's restart_period, else ARGV[5]; max_restarts, else ARGV[6], above 0), it is restarted on that
# host at once (GIVE_FN, as the supervisor's ASSIGN), and the failover joins the event stream ({3, HOST});
# {0}: no live host, or the restart policy has a say: it joins `unowned` for the supervisor (which
# decides restarts within the period); {-1}: no such server; {-2}: failed (its messages wait in its journal).
# A family's server (KEYS[1] `server:account[ada]`, KEYS[5] its family's `server:account`) gets its
# placement record at its first message, and joins the family's `instances` set (KEYS[6]). KEYS[7..11]:
# the server's restarts, lease and wait-for edge, the event stream, and `placed`.
ACTIVATE = GIVE_FN + """
if redis.call('EXISTS', KEYS[5]) == 0 then return {-1} end
if KEYS[1] ~= KEYS[5] and redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'owner', '', 'restarts', 0)
  redis.call('SADD', KEYS[6], ARGV[1])
end
if redis.call('HGET', KEYS[1], 'status') == 'failed' then return {-2} end
local t = redis.call('TIME')
local now = t[1] + t[2] / 1e6
local ttl = tonumber(ARGV[2])
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
if owner ~= '' then
  local beat = redis.call('HGET', KEYS[2], owner)
  if beat and now - tonumber(beat) <= ttl then return {1, owner} end
  local period = tonumber(redis.call('HGET', KEYS[5], 'restart_period') or ARGV[5])
  local most = tonumber(redis.call('HGET', KEYS[5], 'max_restarts') or ARGV[6])
  if most < 1 or redis.call('ZCOUNT', KEYS[7], now - period, '+inf') > 0 then
    redis.call('SADD', KEYS[3], ARGV[1])
    return {0}
  end
end
local best, load = nil, nil
local beats = redis.call('HGETALL', KEYS[2])
for i = 1, #beats, 2 do
  if now - tonumber(beats[i + 1]) <= ttl then
    local n = redis.call('SCARD', ARGV[3] .. beats[i])
    if best == nil or n < load or (n == load and beats[i] < best) then best, load = beats[i], n end
  end
end
if best == nil then
  redis.call('SADD', KEYS[3], ARGV[1])
  return {0}
end
give(KEYS[1], ARGV[1], best, owner, ARGV[3], KEYS[4], KEYS[3], KEYS[7], KEYS[8], KEYS[9], KEYS[11], now)
if owner == '' then return {2, best} end
redis.call('XADD', KEYS[10], 'MAXLEN', '~', ARGV[4], '*', 'kind', 'failover', 'server', ARGV[1], 'from', owner,
           'to', best, 'time', tostring(now))
return {3, best}
"""

# Lets an idle server go: if host ARGV[2] owns server ARGV[1] and its journal is empty, it is left
# inactive (no owner) and its lease (ARGV[3]) released; 1 when done. A message journalled meanwhile
# keeps it active (the journal script and this one are atomic: one of them sees the other's effect).
# With ARGV[4] = '1' (a clean stop), a server with messages left is handed off to the supervisor.
PASSIVATE = """
if (redis.call('HGET', KEYS[1], 'owner') or '') ~= ARGV[2] then return 0 end
local pending = redis.call('ZCARD', KEYS[3]) > 0
if pending and ARGV[4] ~= '1' then return 0 end
redis.call('HSET', KEYS[1], 'owner', '')
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
if pending then redis.call('SADD', KEYS[5], ARGV[1]) end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""

# Builds `placed` and `failed` (KEYS[2], KEYS[3]) from the servers' records, once (KEYS[1], the mark, set
# when done): for a store written before the scripts kept them. KEYS[4]: the deployed servers; ARGV[1] the
# `server:` prefix, ARGV[2] the `instances:` prefix. One script: no placement changes while it reads.
INDEX = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local function index(name)
  local v = redis.call('HMGET', ARGV[1] .. name, 'owner', 'status')
  if v[1] and v[1] ~= '' then redis.call('HSET', KEYS[2], name, v[1]) end
  if v[2] == 'failed' then redis.call('SADD', KEYS[3], name) end
end
for _, name in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  if string.sub(name, -2) == '[]' then
    for _, member in ipairs(redis.call('SMEMBERS', ARGV[2] .. string.sub(name, 1, -3))) do index(member) end
  else
    index(name)
  end
end
redis.call('SET', KEYS[1], '1')
return 1
"""

class Status(StrEnum):
    """A server's status as every view shows it (the CLI, RelayClient, the gateway): see `status_of`."""

    RUNNING = "running"  # a live host owns it and holds its lease
    STARTING = "starting"  # a live host owns it and has not taken its lease yet
    INACTIVE = "inactive"  # no owner: never messaged, or idle (its next message activates it)
    RESTARTING = "restarting"  # its owner died: the supervisor restarts it (at once with messages waiting)
    FAILED = "failed"  # restarted too often: it waits for `relay restart`
    FAMILY = "family"  # a family (`account[]`): its servers each have their own status


def status_of(name: str, owner: str, holder: str | None, live: set[str], *, failed: bool) -> Status:
    """The status of server `name` from its owner (host id, "" when none), the host holding its lease, the
    live hosts, and whether it is marked failed: the one place it is computed."""
    if name.endswith("[]"):
        return Status.FAMILY
    if failed:
        return Status.FAILED
    if not owner:
        return Status.INACTIVE
    if owner not in live:
        return Status.RESTARTING
    return Status.RUNNING if holder == owner else Status.STARTING


CONNECTION_PREFIX = "relay-host:"
CONFIRM = 0.5  # seconds a host whose connections closed has to reconnect or beat before it is declared dead


def node_of(host: str) -> str:
    """The worker node name of a host id."""
    return host.split("#", 1)[0]


class Registry:
    def __init__(self, r: redis.Redis, host_ttl: float, max_restarts: int = 5, restart_period: float = 60) -> None:
        self.r = r
        self.host_ttl = host_ttl
        self.max_restarts = max_restarts  # the restart policy's defaults (a deployment's settings come first)
        self.restart_period = restart_period
        self._heartbeat = r.register_script(HEARTBEAT)
        self._reap = r.register_script(REAP)
        self._assign = r.register_script(ASSIGN)
        self._activate = r.register_script(ACTIVATE)
        self._passivate = r.register_script(PASSIVATE)
        self._index = r.register_script(INDEX)
        self.recheck: float | None = None  # after a reap: seconds until a suspect can be confirmed dead

    # ------------------------------------------------------------ hosts

    def register_host(self, host: str, node: str, pid: int) -> None:
        self.r.hset(key("host", host), mapping={"node": node, "pid": pid, "started": time.time()})
        self._heartbeat(keys=[key("hosts")], args=[host, "1"])
        self.index()

    def index(self) -> bool:
        """Builds the catalog's indexes from the servers' records if no host did yet (see INDEX)."""
        return bool(self._index(keys=[key("indexed"), key("placed"), key("failed"), key("servers")],
                                args=[key("server", ""), key("instances", "")]))

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
        uptime = int(home(self.r).info("server").get("uptime_in_seconds", 0))
        gone = []
        if uptime > self.host_ttl:  # no host could beat while the store was down: give them a TTL to come back
            gone = [h.decode() for h in self._reap(keys=[key("hosts"), key("host", "")], args=[self.host_ttl])]
        seconds, micros = home(self.r).time()
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
            with self.r.pipeline(transaction=True) as pipe:
                pipe.delete(key("suspects"))
                if still:
                    pipe.hset(key("suspects"), mapping=still)
                pipe.execute()
        return gone

    def deaths_noticed(self) -> bool:
        """Cheap (independent of the number of servers): is a registered host gone (silent past the host
        TTL, or its connection closed), or a server waiting for a live owner?"""
        seconds, micros = home(self.r).time()
        now = seconds + micros / 1e6
        beats = {text(h): float(t) for h, t in self.r.hgetall(key("hosts")).items()}
        return (any(now - t > self.host_ttl for t in beats.values()) or bool(self.disconnected(list(beats)))
                or bool(self.r.scard(key("unowned"))))

    def disconnected(self, hosts: list[str]) -> set[str]:
        """The hosts whose heartbeat connection is not in the store's client list."""
        connected = {c.get("name", "") for c in home(self.r).client_list()}
        return {h for h in hosts if CONNECTION_PREFIX + h not in connected}

    def wake(self, host: str) -> None:
        with self.r.pipeline(transaction=True) as pipe:
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
        """A server's record: its deployment's (source, version, settings), and for a server of a family its
        own placement (owner, status, reason, restarts) over it; None when nothing deployed goes by `name`."""
        family = deployment_of(name)
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hgetall(key("server", family))
            if family != name:
                pipe.hgetall(key("server", name))
            records = pipe.execute()
        if not records[0]:
            return None
        merged = {text(k): text(v) for record in records for k, v in record.items()}
        if family != name:
            merged.setdefault("owner", "")
        return merged

    def check_address(self, name: str) -> None:
        """Raises the error a message to `name` gets when no deployed server goes by it (ledger.refused)."""
        parse_instance_name(name)
        deployed, family = self.r.hmget(key("server", deployment_of(name)), ["version", "family"])
        if deployed is None:
            raise refused(name, -1)
        if (family == b"1") != (name != deployment_of(name)):
            raise refused(name, -2)

    def owner(self, name: str) -> str:
        """The host id that owns the server ("" when inactive or not deployed)."""
        return text(self.r.hget(key("server", name), "owner") or b"")

    def summary(self, name: str) -> dict[str, str]:
        """A server's record without its source: owner, status, reason, restarts, version (those set); a
        family's server's version is its family's."""
        fields = ("owner", "status", "reason", "restarts", "version")
        values = self.r.hmget(key("server", name), fields)
        info = {f: text(v) for f, v in zip(fields, values) if v is not None}
        if deployment_of(name) != name and not name.endswith("[]"):
            info["version"] = text(self.r.hget(key("server", deployment_of(name)), "version") or b"0")
        return info

    def instances(self, family: str) -> int:
        """How many servers of the family ever received a message."""
        return int(self.r.scard(key("instances", family)))

    def names(self) -> list[str]:
        return sorted(text(n) for n in self.r.smembers(key("servers")))

    def version(self, name: str) -> int | None:
        v = self.r.hget(key("server", name), "version")
        return int(v) if v is not None else None

    def register(self, name: str, source: str, file: str, settings: Mapping[FieldT, EncodableT] | None = None) -> int:
        """Records (or upgrades) a server with its settings, placed on a live host if it has no live owner;
        returns its version."""
        record = deployment_of(name)  # `account[]` deploys family `account`
        k = key("server", record)
        family = record != name
        if self.r.exists(k) and (self.r.hget(k, "family") == b"1") != family:
            raise RelayError(f"server {record} is deployed as {'a single server' if family else 'a family'}; "
                             f"it cannot be redeployed as {'a family' if family else 'a single server'}")
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hincrby(k, "version", 1)
            pipe.hset(k, mapping={"source": source, "file": file, **(settings or {}), **({"family": 1} if family else {})})
            pipe.hsetnx(k, "restarts", 0)
            pipe.sadd(key("servers"), name)
            version = pipe.execute()[0]
        if not family and self.r.hget(k, "status") != b"failed":
            self.place_if_unowned(name)  # a family's servers start at their first message
        return version

    def place_if_unowned(self, name: str) -> None:
        """Starts a server that has no live owner: on the live host with the fewest servers, woken (see
        `activate`); one whose owner died goes to the supervisor, which a live host is woken to run."""
        if self.activate(name) is None and (host := self.place()):
            self.wake(host)

    def activate(self, name: str, by: str = "") -> str | None:
        """The live host that runs the server, giving it one (and ringing that host's bell, unless it is `by`,
        the host asking, which starts it itself) when the server is inactive; None when no host can run it
        now (see ACTIVATE: the supervisor will place it)."""
        family = deployment_of(name)
        got = self._activate(keys=[key("server", name), key("hosts"), key("unowned"), key("holders"),
                                   key("server", family), key("instances", family), key("restarts", name),
                                   key("lease", name), key("waitfor", name), key("events"), key("placed")],
                             args=[name, self.host_ttl, key("owned", ""), EVENTS_KEPT, self.restart_period,
                                   self.max_restarts])
        owner = text(got[1]) if int(got[0]) > 0 else None
        if owner is not None and int(got[0]) >= 2 and owner != by:
            self.ring(owner, [name])
        return owner

    def ring(self, host: str, names: list[str]) -> None:
        """Tells `host` it was given these servers (its bell thread starts them at once)."""
        with self.r.pipeline(transaction=True) as pipe:
            pipe.rpush(key("bell", host), *names)
            pipe.expire(key("bell", host), 60)
            pipe.execute()

    def wait_for_bell(self, host: str, timeout: float) -> list[str]:
        """The servers given to `host` since the last call; waits up to `timeout` seconds for one."""
        got = self.r.blpop([key("bell", host)], timeout=timeout)
        if got is None:
            return []
        with self.r.pipeline(transaction=True) as pipe:
            pipe.lrange(key("bell", host), 0, -1)
            pipe.delete(key("bell", host))
            rest = pipe.execute()[0]
        return [text(got[1]), *(text(n) for n in rest)]

    def passivate(self, name: str, host: str, lease: str, *, handing_off: bool = False) -> bool:
        """Leaves the server inactive if `host` owns it and no message waits (see PASSIVATE); handing off
        (a clean stop), a server with messages waiting goes to the supervisor instead."""
        return bool(self._passivate(keys=[key("server", name), key("lease", name), key("journal", name),
                                          key("owned", host), key("unowned"), key("placed")],
                                    args=[name, host, lease, "1" if handing_off else "0"]))

    def assign(self, name: str, owner: str, host: str) -> bool:
        """Gives the server to `host` unless its owner changed from `owner` meanwhile (see ASSIGN)."""
        return bool(self._assign(keys=[key("server", name), key("lease", name), key("restarts", name),
                                       key("waitfor", name), key("unowned"), key("holders"), key("placed")],
                                 args=[owner, host, time.time(), name, key("owned", "")]))

    def restarts_since(self, name: str, since: float) -> list[float]:
        """Times of the server's restarts after `since`, oldest first (older ones are forgotten)."""
        k = key("restarts", name)
        self.r.zremrangebyscore(k, "-inf", f"({since}")
        return [float(t) for t in cast(list[bytes], self.r.zrangebyscore(k, since, "+inf"))]

    def mark_failed(self, name: str, reason: str) -> None:
        """Stops restarting the server; its queue, journal and state stay for `restart`."""
        owner = text(self.r.hget(key("server", name), "owner") or b"")
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(key("server", name), mapping={"status": "failed", "reason": reason, "owner": ""})
            pipe.srem(key("unowned"), name)
            pipe.hdel(key("placed"), name)
            pipe.sadd(key("failed"), name)
            if owner:
                pipe.srem(key("owned", owner), name)
            pipe.execute()

    def restart(self, name: str) -> bool:
        """Brings back a failed (or any) server: its restart history is forgotten and it is placed anew."""
        k = key("server", name)
        if not self.r.exists(k):
            return False
        if deployment_of(name) == name and self.r.hget(k, "family") == b"1":
            raise RelayError(f"'{name}' is a family: restart one of its servers, like {name}[KEY]")
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hdel(k, "status", "reason")
            pipe.srem(key("failed"), name)
            pipe.delete(key("restarts", name))
            pipe.execute()
        self.place_if_unowned(name)
        return True

    def assigned_to(self, host: str) -> list[str]:
        """The servers `host` owns."""
        return sorted(text(n) for n in self.r.smembers(key("owned", host)))

    def loads(self, hosts: list[str]) -> dict[str, int]:
        """How many servers each host owns."""
        with self.r.pipeline(transaction=False) as pipe:
            for host in hosts:
                pipe.scard(key("owned", host))
            return dict(zip(hosts, (int(n) for n in pipe.execute())))

    def place(self) -> str:
        """The host for a server: the live host with the fewest servers ("" when there is none)."""
        load = self.loads(self.live_hosts())
        return min(load, key=lambda h: (load[h], h)) if load else ""

    def unowned(self) -> list[str]:
        """Servers with messages to apply and no live owner (see ACTIVATE and PASSIVATE)."""
        return sorted(text(n) for n in self.r.smembers(key("unowned")))

    def settle(self, name: str) -> None:
        """Takes a server off `unowned` (it was undeployed, failed, or got a live owner meanwhile)."""
        self.r.srem(key("unowned"), name)

    def release_dead(self) -> list[str]:
        """The servers of the hosts that were given servers and are no longer registered (declared dead):
        those with messages waiting join `unowned`, for the supervisor to restart now; the others stay
        their dead owner's until their next message restarts them. Returns the former."""
        dead = {text(h) for h in self.r.smembers(key("holders"))} - set(self.live_hosts())
        waiting: list[str] = []
        for host in sorted(dead):
            names = self.assigned_to(host)
            with self.r.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.zcard(key("journal", name))
                waiting += [name for name, n in zip(names, pipe.execute()) if n]
        with self.r.pipeline(transaction=True) as pipe:
            if waiting:
                pipe.sadd(key("unowned"), *waiting)
            if dead:
                pipe.srem(key("holders"), *dead)
            pipe.execute()
        return waiting

    def hand_off(self, name: str, host: str, lease: str) -> None:
        """A clean stop: the server is left inactive, or, with messages waiting, to the supervisor to place
        at once (no restart counted)."""
        self.passivate(name, host, lease, handing_off=True)
