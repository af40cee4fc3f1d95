"""The fleet's registry in Redis: hosts and their liveness, deployed servers and their placement.

Keys (prefix `relay:`):
  hosts          hash  host id -> last heartbeat (the store's clock, seconds)
  host:ID        hash  node, pid, started
  servers        set   deployed server names
  server:NAME    hash  source, file, version, owner (host id), restarts

A host id is one incarnation of a worker process ("NODE#PID.RANDOM"): a worker
restarted under the same node name is a new host, so it never inherits a lease
it did not acquire. A host is declared dead (`reap`) when it was silent for
longer than the host TTL (paused, cut off), or at once when its heartbeat
connection, named `relay-host:ID`, is gone from the store's client list at two
reaps in a row (the process died: the kernel closed its sockets). A host
declared dead learns it when its next heartbeat fails, and gives up every
server it thought it had.
"""

from __future__ import annotations

import time

import redis

from .ledger import key

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

# Takes a server whose owner is no registered host; counts a restart when it had one. The dead
# owner's lease goes too (the fence, not the lease, keeps a dead owner from writing), so the new
# owner need not wait for it to expire.
CLAIM = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= '' and redis.call('HEXISTS', KEYS[2], owner) == 1 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
if owner and owner ~= '' then
  redis.call('HINCRBY', KEYS[1], 'restarts', 1)
  local lease = redis.call('GET', KEYS[3])
  if lease and string.sub(lease, 1, string.len(owner) + 1) == owner .. ' ' then redis.call('DEL', KEYS[3]) end
end
return 1
"""


CONNECTION_PREFIX = "relay-host:"


def node_of(host: str) -> str:
    """The worker node name of a host id."""
    return host.split("#", 1)[0]


class Registry:
    def __init__(self, r: redis.Redis, host_ttl: float) -> None:
        self.r = r
        self.host_ttl = host_ttl
        self._heartbeat = r.register_script(HEARTBEAT)
        self._reap = r.register_script(REAP)
        self._claim = r.register_script(CLAIM)
        self.suspects: set[str] = set()  # hosts whose connection was missing at the last reap

    # ------------------------------------------------------------ hosts

    def register_host(self, host: str, node: str, pid: int) -> None:
        self.r.hset(key("host", host), mapping={"node": node, "pid": pid, "started": time.time()})
        self._heartbeat(keys=[key("hosts")], args=[host, "1"])

    def heartbeat(self, host: str) -> bool:
        """False when this host was declared dead (and so lost its servers)."""
        return bool(self._heartbeat(keys=[key("hosts")], args=[host, "0"]))

    def reap(self) -> list[str]:
        """Declares dead the hosts silent past the host TTL or whose connection closed; returns them."""
        gone = [h.decode() for h in self._reap(keys=[key("hosts"), key("host", "")], args=[self.host_ttl])]
        connected = {c.get("name", "") for c in self.r.client_list()}
        missing = {h for h in self.live_hosts() if CONNECTION_PREFIX + h not in connected}
        for host in missing & self.suspects:
            self.remove_host(host)
            gone.append(host)
        self.suspects = missing - set(gone)
        return gone

    def live_hosts(self) -> list[str]:
        return sorted(h.decode() for h in self.r.hkeys(key("hosts")))

    def remove_host(self, host: str) -> None:
        self.r.hdel(key("hosts"), host)
        self.r.delete(key("host", host))

    # ------------------------------------------------------------ servers

    def server(self, name: str) -> dict[str, str] | None:
        data = self.r.hgetall(key("server", name))
        return {k.decode(): v.decode() for k, v in data.items()} if data else None

    def names(self) -> list[str]:
        return sorted(n.decode() for n in self.r.smembers(key("servers")))

    def version(self, name: str) -> int | None:
        v = self.r.hget(key("server", name), "version")
        return int(v) if v is not None else None

    def register(self, name: str, source: str, file: str) -> int:
        """Records (or upgrades) a server, placed on a live host if it has no live owner; returns its version."""
        k = key("server", name)
        live = set(self.live_hosts())
        with self.r.pipeline() as pipe:
            pipe.hincrby(k, "version", 1)
            pipe.hset(k, mapping={"source": source, "file": file})
            pipe.hsetnx(k, "restarts", 0)
            pipe.sadd(key("servers"), name)
            version = pipe.execute()[0]
        if (self.r.hget(k, "owner") or b"").decode() not in live:
            self.r.hset(k, "owner", self.place())
        return version

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
        return [name for name, owner in self.owners().items() if owner not in live]

    def claim(self, name: str, host: str) -> bool:
        """Takes an orphan for this host, unless another host claimed it first."""
        return bool(self._claim(keys=[key("server", name), key("hosts"), key("lease", name)], args=[host]))

    def hand_off(self, name: str, host: str) -> None:
        """A clean stop: the server is left unowned, for a live host to claim at once (no restart counted)."""
        k = key("server", name)
        if (self.r.hget(k, "owner") or b"").decode() == host:
            self.r.hset(k, "owner", "")
