"""The fleet's shared state in Redis: registry, leases, checkpoints, compile cache.

Keys (all under the prefix `relay:`):
  hosts                 hash  worker node name -> last heartbeat (unix seconds), for `-Q relay.*` hosts
  pinned                hash  the same, for workers pinned to servers with `-Q relay.NAME`
  server:NAME           hash  source, file, version, owner, status, restarts
  lease:NAME            str   "NODE TOKEN", with a TTL; TOKEN from fence:NAME (INCR)
  ckpt:NAME             str   JSON of the server's state
  applied:NAME          hash  message id -> JSON reply (messages already applied)
  journal:NAME          zset  message ids sent and not yet applied, by send order (seq:NAME)
  payload:NAME          hash  message id -> JSON [handler, args, chain] of the journal's messages
  obj:KEY               bytes compiled object code (TTL OBJECT_TTL)
  objlock:KEY           str   a worker compiling KEY (TTL LOCK_TTL)
"""

from __future__ import annotations

import contextlib
import json
import os
import time

import redis

PREFIX = "relay:"
LEASE_TTL_MS = int(os.environ.get("RELAY_LEASE_TTL_MS", "10000"))
HOST_TTL = float(os.environ.get("RELAY_HOST_TTL", "15"))  # seconds without a heartbeat before a host is gone
OBJECT_TTL = 7 * 24 * 3600  # compiled objects live a week after their last write
MAX_OBJECT = 16 * 1024 * 1024
LOCK_TTL = 30
APPLIED_KEPT = 10_000  # message ids remembered per server (redeliveries come long before this)

# Write a checkpoint only while holding the lease with this fencing token: a
# worker that lost its lease (paused, partitioned) can no longer write state.
CHECKPOINT = """
local lease = redis.call('GET', KEYS[1])
if lease == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[6]))  -- lapsed during a long message, nobody took it
elseif lease ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('HDEL', KEYS[5], ARGV[3])
if redis.call('HLEN', KEYS[3]) > tonumber(ARGV[5]) then
  local old = redis.call('HKEYS', KEYS[3])
  redis.call('HDEL', KEYS[3], old[1])
end
return 1
"""


# A message enters the journal before it enters the broker, numbered in send order.
JOURNAL = """
local seq = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return seq
"""

# The lease in one round trip: renew ours, or take a free one with a new fencing token.
ACQUIRE = """
local lease = redis.call('GET', KEYS[1])
if lease then
  if string.sub(lease, 1, string.len(ARGV[1]) + 1) ~= ARGV[1] .. ' ' then return nil end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return lease
end
local value = ARGV[1] .. ' ' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
redis.call('HSET', KEYS[3], 'owner', ARGV[1])
return value
"""


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)


def key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


class Registry:
    """Servers, hosts and leases."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._checkpoint = r.register_script(CHECKPOINT)
        self._acquire = r.register_script(ACQUIRE)
        self._journal = r.register_script(JOURNAL)

    # ------------------------------------------------------------ hosts

    def heartbeat(self, node: str, kind: str = "hosts") -> None:
        self.r.hset(key(kind), node, str(time.time()))

    def live_hosts(self, kind: str = "hosts") -> list[str]:
        now = time.time()
        return sorted(h.decode() for h, t in self.r.hgetall(key(kind)).items() if now - float(t) < HOST_TTL)

    def live_workers(self) -> set[str]:
        return set(self.live_hosts()) | set(self.live_hosts("pinned"))

    def remove_host(self, node: str, kind: str = "hosts") -> None:
        self.r.hdel(key(kind), node)

    # ------------------------------------------------------------ servers

    def server(self, name: str) -> dict[str, str] | None:
        data = self.r.hgetall(key("server", name))
        return {k.decode(): v.decode() for k, v in data.items()} if data else None

    def names(self) -> list[str]:
        return sorted(k.decode()[len(key("server", "")):] for k in self.r.scan_iter(match=key("server", "*")))

    def servers(self) -> list[dict[str, object]]:
        out = []
        for k in sorted(self.r.scan_iter(match=key("server", "*"))):
            name = k.decode()[len(key("server", "")):]
            info = self.server(name) or {}
            lease = self.r.get(key("lease", name))
            owner = lease.decode().split(" ")[0] if lease else info.get("owner", "")
            out.append({"name": name, "owner": owner, "status": info.get("status", "unknown"),
                        "restarts": int(info.get("restarts", 0)), "version": int(info.get("version", 0))})
        return out

    def register(self, name: str, source: str, owner: str, file: str) -> int:
        """Records (or upgrades) a server; returns its new version."""
        k = key("server", name)
        version = self.r.hincrby(k, "version", 1)
        self.r.hset(k, mapping={"source": source, "file": file, "owner": owner, "status": "running"})
        self.r.hsetnx(k, "restarts", 0)
        return version

    def owners(self) -> dict[str, str]:
        """Every deployed server and the node that owns it ("" when never placed)."""
        names = self.names()
        if not names:
            return {}
        with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(key("server", name), "owner")
            owners = pipe.execute()
        return {name: (owner or b"").decode() for name, owner in zip(names, owners)}

    def assigned_to(self, node: str) -> list[str]:
        return [name for name, owner in self.owners().items() if owner == node]

    def place(self, name: str) -> str:
        """The host for a new server: the live host with the fewest servers."""
        hosts = self.live_hosts()
        if not hosts:
            return ""
        load = {h: 0 for h in hosts}
        for owner in self.owners().values():
            if owner in load:
                load[owner] += 1
        return min(hosts, key=lambda h: (load[h], h))

    # ------------------------------------------------------------ leases and checkpoints

    def acquire(self, name: str, node: str) -> str | None:
        """This node's lease on the server ("NODE TOKEN"), renewed; None when another node holds it."""
        value = self._acquire(keys=[key("lease", name), key("fence", name), key("server", name)],
                              args=[node, LEASE_TTL_MS])
        return value.decode() if value is not None else None

    def version(self, name: str) -> int | None:
        v = self.r.hget(key("server", name), "version")
        return int(v) if v is not None else None

    def release(self, name: str, lease: str) -> None:
        if self.r.get(key("lease", name)) == lease.encode():
            self.r.delete(key("lease", name))

    def load_checkpoint(self, name: str) -> dict | None:
        data = self.r.get(key("ckpt", name))
        return json.loads(data) if data else None

    def applied(self, name: str, message_id: str) -> object | None:
        reply = self.r.hget(key("applied", name), message_id)
        return json.loads(reply) if reply is not None else None

    def checkpoint(self, name: str, lease: str, state: object, message_id: str, reply: object) -> bool:
        """Atomically, fenced by the lease: the state, the id of the message that produced it, and
        that message out of the journal."""
        return bool(self._checkpoint(keys=[key("lease", name), key("ckpt", name), key("applied", name),
                                           key("journal", name), key("payload", name)],
                                     args=[lease, json.dumps(state), message_id, json.dumps(reply), APPLIED_KEPT,
                                           LEASE_TTL_MS]))

    def journal(self, name: str, message_id: str, handler: str, args: list, chain: list[str]) -> None:
        """Records a message before it is published: a broker can lose a message a worker took when
        that worker is killed (kombu's Redis transport pops it before it records it as unacknowledged)."""
        self._journal(keys=[key("seq", name), key("journal", name), key("payload", name)],
                      args=[message_id, json.dumps([handler, args, chain])])

    def pending(self, name: str) -> list[tuple[str, str, list, list[str]]]:
        """The journal's messages not yet applied, in send order."""
        ids = [m.decode() for m in self.r.zrange(key("journal", name), 0, -1)]
        payloads = self.r.hmget(key("payload", name), ids) if ids else []
        return [(mid, *json.loads(p)) for mid, p in zip(ids, payloads) if p is not None]

    def orphans(self) -> list[str]:
        """Servers whose owner is no live worker (it died, or the server was never placed)."""
        live = self.live_workers()
        return [name for name, owner in self.owners().items() if owner not in live]

    def claim(self, name: str, node: str) -> bool:
        """Takes an orphan for this host, unless another host claimed it first."""
        k = key("server", name)
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(k)
                owner = (pipe.hget(k, "owner") or b"").decode()
                if owner in self.live_workers():
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.hset(k, "owner", node)
                if owner:  # it ran on a worker that is gone: a restart
                    pipe.hincrby(k, "restarts", 1)
                pipe.execute()
                return True
            except redis.WatchError:
                return False



class RedisObjectStore:
    """The compile cache's persistent store in Redis, shared by the fleet.

    Entries expire OBJECT_TTL after they were written and objects over
    MAX_OBJECT bytes are not stored. `building(key)` is a short lock: a worker
    about to compile what another is compiling waits for its result instead.
    """

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def get(self, cache_key: str) -> bytes | None:
        return self.r.get(key("obj", cache_key))

    def put(self, cache_key: str, data: bytes) -> None:
        if len(data) <= MAX_OBJECT:
            self.r.set(key("obj", cache_key), data, ex=OBJECT_TTL)

    @contextlib.contextmanager
    def building(self, cache_key: str):
        lock = key("objlock", cache_key)
        deadline = time.monotonic() + LOCK_TTL
        while not self.r.set(lock, "1", nx=True, ex=LOCK_TTL):
            if self.get(cache_key) is not None or time.monotonic() > deadline:
                break
            time.sleep(0.005)
        try:
            yield
        finally:
            self.r.delete(lock)


def restore_unacked(broker_url: str, queue: str) -> int:
    """Puts back, first in line, the messages of `queue` a dead owner took and never acknowledged.

    Only the Redis transport needs this: it restores unacknowledged messages
    after the visibility timeout, and its sweep runs rarely (about 100 s after
    a kill -9 with kombu 5.7). A server's queue has one consumer, its owner,
    so when the owner is dead every unacknowledged message of that queue is
    its. RabbitMQ redelivers on its own when the dead consumer's connection drops.
    """
    if not broker_url.startswith(("redis://", "rediss://")):
        return 0
    r = connect(broker_url)
    restored = 0
    for tag, raw in r.hgetall("unacked").items():
        payload, _exchange, routing_key = json.loads(raw)
        if routing_key != queue:
            continue
        payload.setdefault("headers", {})["redelivered"] = True
        with r.pipeline() as pipe:
            pipe.rpush(queue, json.dumps(payload))  # consumers pop from the right: next in line
            pipe.hdel("unacked", tag)
            pipe.zrem("unacked_index", tag)
            pipe.execute()
        restored += 1
    return restored
