"""A server's ledger in Redis: fence, lease, journal, applied messages, state, replies.

Keys (prefix `relay:`, NAME the server):
  fence:NAME       int   the fencing token: +1 each time a host acquires the server
  lease:NAME       str   "HOST TOKEN" with a TTL; renewed by its host's heartbeat
  jseq:NAME        int   send order
  journal:NAME     zset  message id -> send order, for messages not yet applied
  payload:NAME     hash  message id -> JSON [handler, args, chain, wait]
  applied:NAME     hash  message id -> JSON reply, for the last APPLIED_KEPT messages
  appliedlog:NAME  list  the same ids in the order they were applied (trims `applied`)
  state:NAME       hash  field -> JSON of that state field; "" -> messages applied (the checkpoint exists)
  attempts:NAME    hash  message id -> times an owner started it without committing (poison messages)
  reply:ID         list  the reply of a message someone waits on (expires after REPLY_TTL)
  dead             hash  dead-letter id -> JSON (undecodable input, messages set aside after K attempts)
  deadtime         zset  dead-letter id -> when it was set aside

Every write of a server's state goes through `commit`, one Lua script that
first compares the writer's token with `fence:NAME`: a paused or partitioned
former owner holds an old token and can never write again, whether or not
its lease key still exists. The state fields changed, the message's reply,
its removal from the journal and the messages its handler sent (journalled
at their receivers) commit together or not at all.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import redis

PREFIX = "relay:"
APPLIED_KEPT = 10_000  # message ids remembered per server (redeliveries come long before this)
REPLY_TTL = 3600
CHECKPOINTED = ""  # the state hash's own field: messages applied so far


def key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


def connect(url: str, name: str | None = None) -> redis.Redis:
    """A client of the store; `name` is given to its connections (CLIENT SETNAME)."""
    return redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5, health_check_interval=10,
                                client_name=name)


def journal_keys(name: str) -> list[str]:
    return [key("jseq", name), key("journal", name), key("payload", name), key("applied", name), key("server", name)]


# Appends a message to a journal unless it is there already or was applied: {1, reply} when applied,
# {0} when journalled (now or before), {-1} when no such server is deployed.
JOURNAL_FN = """
local function journal(jseq, jrnl, payload, applied, server, id, body)
  if redis.call('EXISTS', server) == 0 then return {-1} end
  local done = redis.call('HGET', applied, id)
  if done then return {1, done} end
  if redis.call('ZSCORE', jrnl, id) then return {0} end
  redis.call('ZADD', jrnl, redis.call('INCR', jseq), id)
  redis.call('HSET', payload, id, body)
  return {0}
end
"""

JOURNAL = JOURNAL_FN + "return journal(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2])"

ACQUIRE = """
local lease = redis.call('GET', KEYS[1])
if lease then
  if lease == ARGV[1] .. ' ' .. tostring(redis.call('GET', KEYS[2])) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return lease
  end
  return false
end
local value = ARGV[1] .. ' ' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
"""

# KEYS: lease, fence pairs; ARGV: host, ttl, then one token per server. Returns the 1-based indexes lost.
RENEW = """
local lost = {}
for i = 1, #KEYS / 2 do
  local token = ARGV[i + 2]
  local value = ARGV[1] .. ' ' .. token
  local lease = redis.call('GET', KEYS[2 * i - 1])
  if redis.call('GET', KEYS[2 * i]) == token and (lease == false or lease == value) then
    redis.call('SET', KEYS[2 * i - 1], value, 'PX', ARGV[2])
  else
    lost[#lost + 1] = i
  end
end
return lost
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

COMMIT = JOURNAL_FN + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local i = 9
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i + 2]); i = i + 2
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HDEL', KEYS[3], ARGV[i + 1]); i = i + 1
end
i = i + 1
redis.call('HINCRBY', KEYS[3], '', 1)
redis.call('HSET', KEYS[6], ARGV[4], ARGV[5])
redis.call('RPUSH', KEYS[7], ARGV[4])
if redis.call('LLEN', KEYS[7]) > tonumber(ARGV[7]) then
  redis.call('HDEL', KEYS[6], redis.call('LPOP', KEYS[7]))
end
redis.call('ZREM', KEYS[4], ARGV[4])
redis.call('HDEL', KEYS[5], ARGV[4])
redis.call('HDEL', KEYS[9], ARGV[4])
if ARGV[6] == '1' then
  redis.call('RPUSH', KEYS[8], ARGV[5])
  redis.call('EXPIRE', KEYS[8], ARGV[8])
end
local k = 10
for _ = 1, tonumber(ARGV[i]) do
  journal(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], ARGV[i + 1], ARGV[i + 2])
  k = k + 5; i = i + 2
end
return 1
"""


@dataclass
class Pending:
    """A journalled message, not yet applied."""

    id: str
    handler: str
    args: list
    chain: list[str]
    wait: bool


@dataclass
class Outgoing:
    """A message a handler sent, journalled at its receiver when the handler's message commits."""

    server: str
    id: str
    handler: str
    args: list

    def payload(self) -> str:
        return json.dumps([self.handler, self.args, [], False])


class Ledger:
    """The per-server records in the store (see the module docstring)."""

    def __init__(self, r: redis.Redis, lease_ttl: float) -> None:
        self.r = r
        self.lease_ms = int(lease_ttl * 1000)
        self._journal = r.register_script(JOURNAL)
        self._acquire = r.register_script(ACQUIRE)
        self._renew = r.register_script(RENEW)
        self._release = r.register_script(RELEASE)
        self._commit = r.register_script(COMMIT)

    # ------------------------------------------------------------ journal and replies

    def journal(self, name: str, message_id: str, handler: str, args: list, chain: list[str],
                wait: bool) -> tuple[int, dict | None]:
        """Records a message before it is published. Returns (1, reply) when it was applied already,
        (0, None) when it is journalled, (-1, None) when no server `name` is deployed."""
        status = self._journal(keys=journal_keys(name), args=[message_id, json.dumps([handler, args, chain, wait])])
        return int(status[0]), (json.loads(status[1]) if len(status) > 1 else None)

    def pending(self, name: str) -> list[Pending]:
        """The journal's messages not yet applied, in send order."""
        ids = [m.decode() for m in self.r.zrange(key("journal", name), 0, -1)]
        if not ids:
            return []
        payloads = self.r.hmget(key("payload", name), ids)
        return [Pending(mid, *json.loads(p)) for mid, p in zip(ids, payloads) if p is not None]

    def queued(self, name: str) -> int:
        """Messages journalled at the server and not yet applied."""
        return int(self.r.zcard(key("journal", name)))

    def has_pending(self, names: list[str]) -> list[str]:
        with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(key("journal", name))
            counts = pipe.execute()
        return [name for name, n in zip(names, counts) if n]

    def attempt(self, name: str, message_id: str) -> int:
        """Counts one more start of a message; the count is cleared when the message commits. A count
        above 1 means an owner died (or was cut off) while handling it."""
        return int(self.r.hincrby(key("attempts", name), message_id, 1))

    def applied(self, name: str, message_id: str) -> dict | None:
        reply = self.r.hget(key("applied", name), message_id)
        return json.loads(reply) if reply is not None else None

    def wait_reply(self, message_id: str, timeout: float) -> dict | None:
        """The reply of a message sent with wait=True, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            got = self.r.blpop([key("reply", message_id)], timeout=max(0.01, min(left, 20.0)))
            if got is not None:
                return json.loads(got[1])

    # ------------------------------------------------------------ leases

    def acquire(self, name: str, host: str) -> str | None:
        """The host's lease on the server ("HOST TOKEN"), renewed or taken with a new token; None
        when another host holds it."""
        value = self._acquire(keys=[key("lease", name), key("fence", name)], args=[host, self.lease_ms])
        return value.decode() if value is not None else None

    def renew(self, host: str, leases: dict[str, str]) -> list[str]:
        """Renews the host's leases in one round trip; returns the servers whose lease was lost."""
        if not leases:
            return []
        names = list(leases)
        keys = [k for name in names for k in (key("lease", name), key("fence", name))]
        lost = self._renew(keys=keys, args=[host, self.lease_ms, *(leases[n].split(" ")[-1] for n in names)])
        return [names[i - 1] for i in lost]

    def release(self, name: str, lease: str) -> None:
        self._release(keys=[key("lease", name)], args=[lease])

    def holder(self, name: str) -> str | None:
        lease = self.r.get(key("lease", name))
        return lease.decode().rsplit(" ", 1)[0] if lease else None

    # ------------------------------------------------------------ state

    def applied_count(self, name: str) -> int:
        """Messages the server has applied since it was first deployed."""
        return int(self.r.hget(key("state", name), CHECKPOINTED) or 0)

    def load_state(self, name: str) -> dict[str, str] | None:
        """The checkpointed state fields as JSON texts, or None when the server never committed."""
        data = self.r.hgetall(key("state", name))
        if not data:
            return None
        return {k.decode(): v.decode() for k, v in data.items() if k.decode() != CHECKPOINTED}

    def commit(self, name: str, lease: str, message_id: str, reply: dict, wait: bool,
               fields: dict[str, str], removed: list[str], outgoing: list[Outgoing]) -> bool:
        """Atomically and fenced: the changed state fields, the reply, the message out of the journal,
        and the handler's outgoing messages into their receivers' journals. False: not the owner."""
        token = lease.split(" ")[-1]
        keys = [key("fence", name), key("lease", name), key("state", name), key("journal", name),
                key("payload", name), key("applied", name), key("appliedlog", name), key("reply", message_id),
                key("attempts", name)]
        args: list[object] = [token, lease, self.lease_ms, message_id, json.dumps(reply), "1" if wait else "0",
                              APPLIED_KEPT, REPLY_TTL, len(fields)]
        for field, text in fields.items():
            args += [field, text]
        args += [len(removed), *removed, len(outgoing)]
        for out in outgoing:
            keys += journal_keys(out.server)
            args += [out.id, out.payload()]
        return bool(self._commit(keys=keys, args=args))


class DeadLetters:
    """Input the fleet set aside, kept with its reason for an operator: undecodable or unroutable
    input, and messages whose handling killed their owner too often (poison messages)."""

    KEPT = 10_000

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    @classmethod
    def at(cls, url: str) -> DeadLetters:
        return cls(connect(url))

    def add(self, queue: str, reason: str, raw: str = "", message_id: str | None = None, **fields: object) -> str:
        """Records a dead letter; returns its id (the message id when there is one)."""
        letter_id = message_id or uuid.uuid4().hex
        entry = {"id": letter_id, "queue": queue, "reason": reason, "raw": raw[:4096], "time": time.time(), **fields}
        with self.r.pipeline() as pipe:
            pipe.hset(key("dead"), letter_id, json.dumps(entry))
            pipe.zadd(key("deadtime"), {letter_id: entry["time"]})
            pipe.execute()
        excess = self.r.zcard(key("deadtime")) - self.KEPT
        if excess > 0:
            for old in self.r.zpopmin(key("deadtime"), excess):
                self.r.hdel(key("dead"), old[0])
        return letter_id

    def list(self, server: str | None = None) -> list[dict]:
        ids = self.r.zrange(key("deadtime"), 0, -1)
        entries = [json.loads(x) for x in self.r.hmget(key("dead"), ids) if x is not None] if ids else []
        return [e for e in entries if server is None or e.get("server") == server]

    def get(self, letter_id: str) -> dict | None:
        entry = self.r.hget(key("dead"), letter_id)
        return json.loads(entry) if entry is not None else None

    def drop(self, letter_id: str) -> bool:
        with self.r.pipeline() as pipe:
            pipe.hdel(key("dead"), letter_id)
            pipe.zrem(key("deadtime"), letter_id)
            return bool(pipe.execute()[0])
