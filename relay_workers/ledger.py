"""A server's ledger in Redis: fence, lease, journal, applied messages, state, replies.

Keys (prefix `{relay}:`, NAME the server):
  fence:NAME       int   the fencing token: +1 each time a host acquires the server
  lease:NAME       str   "HOST TOKEN" with a TTL; renewed by its host's heartbeat
  jseq:NAME        int   send order
  journal:NAME     zset  message id -> send order, for messages not yet applied
  payload:NAME     hash  message id -> JSON [handler, args, chain, wait, result]
  applied:NAME     hash  message id -> JSON reply, for the last APPLIED_KEPT messages
  appliedlog:NAME  list  the same ids in the order they were applied (trims `applied`)
  state:NAME       hash  field -> JSON of that state field; "" -> messages applied (the checkpoint exists)
  attempts:NAME    hash  message id -> "N HOST": N owners (host incarnations) took it without committing,
                         HOST the last; a host taking it again (its commit failed) is not a new attempt
  reply:ID         list  the reply of a message someone waits on (expires after REPLY_TTL)
  waitfor:NAME     str   "SERVER ID": NAME's handler waits on its call ID to SERVER (a wait-for edge, with a
                         TTL); a call that would close a cycle of these edges fails at once (`wait_for`)
  dead             hash  dead-letter id -> JSON (undecodable input, messages set aside after K attempts)
  deadtime         zset  dead-letter id -> when it was set aside

An owner reads with `take` (lease, version and a batch of the journal, one
script) and writes with `commit`, one Lua script per batch that first
compares the writer's token with `fence:NAME`: a paused or partitioned
former owner holds an old token and can never write again, whether or not
its lease key still exists. The state fields the batch changed, each
message's reply, their removal from the journal and the messages their
handlers sent (journalled at their receivers) commit together or not at all.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import cast

import redis
from redis.typing import EncodableT

from relay_lang.errors import RelayError
from relay_lang.names import parse_instance_name

from .store import FLEET_TAG, connect

PREFIX = FLEET_TAG + ":"  # every key carries the fleet's hash tag: one slot on a Cluster (relay_workers.store)
# The store away: a connection reset or refused, a restart, or on a Cluster a master down (the cluster
# answers CLUSTERDOWN until it is back) or a slot moving (TRYAGAIN).
STORE_DOWN = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError,
              redis.exceptions.TryAgainError, OSError)
STORE_ERRORS = (redis.RedisError, OSError)  # any failed store command
APPLIED_KEPT = 10_000  # message ids remembered per server (redeliveries come long before this)
REPLY_TTL = 3600
CHECKPOINTED = ""  # the state hash's own field: messages applied so far


def key(*parts: str) -> str:
    return PREFIX + ":".join(parts)


# The broker queues every host consumes: a server's messages go to one of them, by its name. Celery's
# `-Q` takes no wildcard and a BRPOP's cost grows with its keys: a fixed set keeps what a host polls
# independent of how many servers exist. The names cannot be a server's (`-` is not in a name).
SHARDS = 16
SHARD_QUEUES = [f"relay.shard-{k}" for k in range(SHARDS)]


def shard_queue(name: str) -> str:
    """The broker queue of server `name`'s messages (plain Celery producers publish there)."""
    return SHARD_QUEUES[zlib.crc32(name.encode()) % SHARDS]


def text(raw: bytes | str) -> str:
    """A store reply as text (the store's clients answer bytes)."""
    return raw.decode() if isinstance(raw, bytes) else raw


@dataclass(frozen=True, slots=True)
class Lease:
    """A server's lease as stored (`lease:NAME`, "HOST TOKEN"): the host holding it and the fence token it
    took the server with. Hosts pass the stored text back to the scripts as is."""

    holder: str
    token: str

    @classmethod
    def parse(cls, raw: bytes | str | None) -> Lease | None:
        if not raw:
            return None
        holder, _, token = text(raw).rpartition(" ")
        return cls(holder, token)

    @staticmethod
    def holder_of(raw: bytes | str | None) -> str:
        """The host holding a stored lease; "" when there is none."""
        lease = Lease.parse(raw)
        return lease.holder if lease else ""

    @staticmethod
    def token_of(raw: str) -> str:
        lease = Lease.parse(raw)
        return lease.token if lease else ""


def deployment_of(name: str) -> str:
    """The deployed record a server goes by: its family's (`account` for `account[ada]` and for the family
    itself, `account[]`), its own for a plain server. A family's servers keep their placement (owner,
    status, restarts) in records of their own, `server:account[ada]`."""
    bracket = name.find("[")
    return name if bracket < 0 else name[:bracket]


def journal_keys(name: str) -> list[str]:
    return [key("jseq", name), key("journal", name), key("payload", name), key("applied", name),
            key("server", deployment_of(name))]


def refused(name: str, status: int) -> RelayError:
    """The error of a message the journal refused (status < 0, see JOURNAL_FN)."""
    family = deployment_of(name)
    if status == -2 and family == name:
        return RelayError(f"server {name} is a family: a message goes to one of its servers, as {name}[KEY]")
    if status == -2:
        return RelayError(f"server {family} is not a family: '{name}' names no server (send to {family})")
    return RelayError(f"no server named '{name}' is deployed")


# Appends a message to a journal unless it is there already or was applied: {1, reply} when applied,
# {0} when journalled (now or before), {-1} when no such server is deployed, {-2} when the name and the
# deployment disagree (a family's name without a key, a plain server's with one: the jseq key holds it).
JOURNAL_FN = """
local function journal(jseq, jrnl, payload, applied, server, id, body)
  if redis.call('EXISTS', server) == 0 then return {-1} end
  if (redis.call('HGET', server, 'family') == '1') ~= (string.find(jseq, '[', 1, true) ~= nil) then return {-2} end
  local done = redis.call('HGET', applied, id)
  if done then return {1, done} end
  if redis.call('ZSCORE', jrnl, id) then return {0} end
  redis.call('ZADD', jrnl, redis.call('INCR', jseq), id)
  redis.call('HSET', payload, id, body)
  return {0}
end
"""

JOURNAL = JOURNAL_FN + "return journal(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[1], ARGV[2])"

# Holds the lease (renewed, or taken with a new fence token; {false} when another host holds it), reads the
# server's version and the journal's length, and takes the next batch of the journal: up to ARGV[3]
# messages, recording this host as the taker of each. An attempt is counted when a host takes a message
# that no host took before, or that another host took and never committed (that owner died with it, or was
# cut off); this host taking it again (its commit failed: the store was away) counts nothing. A message
# whose earlier owner died with it is taken alone, so that a poison message is counted once per death it
# causes, and the messages around it are not.
TAKE = """
local lease = redis.call('GET', KEYS[1])
if lease then
  if lease ~= ARGV[1] .. ' ' .. tostring(redis.call('GET', KEYS[2])) then return {false} end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  lease = ARGV[1] .. ' ' .. redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], lease, 'PX', ARGV[2])
end
local version = redis.call('HGET', KEYS[3], 'version')
local out = {lease, version, redis.call('ZCARD', KEYS[4])}
if not version then return out end
for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, tonumber(ARGV[3]) - 1)) do
  local body = redis.call('HGET', KEYS[5], id)
  if body then
    local rec = redis.call('HGET', KEYS[6], id)
    local tries, by = 0, ''
    if rec then
      local n, h = string.match(rec, '^(%d+) (.*)$')
      if n then tries, by = tonumber(n), h else tries = tonumber(rec) or 0 end
    end
    if by ~= ARGV[1] then tries = tries + 1 end
    if tries > 1 and #out > 3 then break end
    redis.call('HSET', KEYS[6], id, tries .. ' ' .. ARGV[1])
    out[#out + 1] = id; out[#out + 1] = tries; out[#out + 1] = body
    if tries > 1 then break end
  end
end
return out
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

# A server's handler (ARGV[2]) is about to wait on its call ARGV[4] to ARGV[3]. Follows the wait-for edges
# from ARGV[3] (KEYS[1] is ARGV[2]'s edge, ARGV[1] the edges' key prefix): when they lead back to ARGV[2],
# this call would close a cycle, and the servers of the cycle are returned, nothing written; otherwise
# the edge is recorded, with a TTL of ARGV[5] ms, and {} returned. One script: of two calls that would
# close a cycle together, the second sees the first's edge.
WAIT_FOR = """
local path = {ARGV[2], ARGV[3]}
local at = ARGV[3]
for _ = 1, 100 do
  if at == ARGV[2] then return path end
  local edge = redis.call('GET', ARGV[1] .. at)
  if not edge then break end
  at = string.match(edge, '^(%S+)')
  path[#path + 1] = at
end
redis.call('SET', KEYS[1], ARGV[3] .. ' ' .. ARGV[4], 'PX', ARGV[5])
return {}
"""

# Removes a wait-for edge if it is still the one of that call.
DONE_WAITING = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# One batch of messages, fenced: KEYS fence, lease, state, journal, payload, applied, appliedlog, attempts,
# the reply list of each message whose sender waits (and the wait-for edge of its calling server, if a
# server calls), then 5 journal keys per outgoing message. ARGV: token, lease, lease ms, kept, reply ttl;
# state fields set, then removed; messages (id, reply, wait: "0" no one waits, "1" a producer waits, "2" a
# server's handler waits, and its edge, if still this message's, is removed with the reply: that handler
# no longer waits on anyone, so no call can see a cycle through it); ids taken but not applied (their
# attempt is undone); outgoing messages (id, payload). ARGV[6] is the server's wait-for edge text for an id
# ("NAME "), so the edge of a waiting caller is "NAME ID".
COMMIT = JOURNAL_FN + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local i = 7
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i + 2]); i = i + 2
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HDEL', KEYS[3], ARGV[i + 1]); i = i + 1
end
i = i + 1
local k = 9
local applied = tonumber(ARGV[i])
redis.call('HINCRBY', KEYS[3], '', applied)
for _ = 1, applied do
  local id, reply = ARGV[i + 1], ARGV[i + 2]
  redis.call('HSET', KEYS[6], id, reply)
  redis.call('RPUSH', KEYS[7], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[8], id)
  if ARGV[i + 3] ~= '0' then
    redis.call('RPUSH', KEYS[k], reply)
    redis.call('EXPIRE', KEYS[k], ARGV[5])
    k = k + 1
  end
  if ARGV[i + 3] == '2' then
    if redis.call('GET', KEYS[k]) == ARGV[6] .. id then redis.call('DEL', KEYS[k]) end
    k = k + 1
  end
  i = i + 3
end
for _ = 1, redis.call('LLEN', KEYS[7]) - tonumber(ARGV[4]) do
  redis.call('HDEL', KEYS[6], redis.call('LPOP', KEYS[7]))
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  redis.call('HDEL', KEYS[8], ARGV[i + 1]); i = i + 1
end
i = i + 1
for _ = 1, tonumber(ARGV[i]) do
  journal(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], ARGV[i + 1], ARGV[i + 2])
  k = k + 5; i = i + 2
end
return 1
"""


@dataclass
class Pending:
    """A journalled message, not yet applied. `result`: its producer was plain Celery, which reads the
    reply as the task's result; `attempts`: the owners that started it, this one included."""

    id: str
    handler: str
    args: list
    chain: list[str]
    wait: bool
    result: bool = False
    attempts: int = 0

    @classmethod
    def stored(cls, message_id: str, payload: bytes, attempts: int) -> Pending:
        """A message as the journal stores it: its payload ([handler, args, chain, wait], and `result` from a
        producer's journal, see Ledger.journal; Outgoing.payload has no `result`) and its attempts."""
        handler, args, chain, wait, *result = json.loads(payload)
        return cls(message_id, handler, args, chain, wait, bool(result and result[0]), attempts)


@dataclass
class Batch:
    """What an owner reads before handling: its lease (None: another host holds it), the server's
    version (None: not deployed), the next messages of its journal and how many it holds in all."""

    lease: str | None
    version: int | None
    messages: list[Pending]
    journalled: int = 0

    @property
    def more(self) -> bool:
        """The journal holds messages after this batch."""
        return self.journalled > len(self.messages)


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
        self._take = r.register_script(TAKE)
        self._renew = r.register_script(RENEW)
        self._release = r.register_script(RELEASE)
        self._commit = r.register_script(COMMIT)
        self._wait_for = r.register_script(WAIT_FOR)
        self._done_waiting = r.register_script(DONE_WAITING)

    # ------------------------------------------------------------ journal and replies

    def journal(self, name: str, message_id: str, handler: str, args: list, chain: list[str], *,
                wait: bool, result: bool = False) -> tuple[int, dict | None]:
        """Records a message before it is published (`result`: store its reply as a Celery result too).
        Returns (1, reply) when it was applied already, (0, None) when it is journalled, (< 0, None) when
        no deployed server goes by `name` (see `refused`); a name that is no server's name (relay_lang.names)
        is a RelayError."""
        parse_instance_name(name)
        payload = json.dumps([handler, args, chain, wait, result])
        status = self._journal(keys=journal_keys(name), args=[message_id, payload])
        return int(status[0]), (json.loads(status[1]) if len(status) > 1 else None)

    def take(self, name: str, host: str, limit: int) -> Batch:
        """In one round trip: the host's lease on the server (renewed, or taken with a new fence token),
        its version, and up to `limit` journalled messages in send order, an attempt counted for each.
        A message an earlier owner started and never committed comes alone (see TAKE)."""
        got = self._take(keys=[key("lease", name), key("fence", name), key("server", deployment_of(name)), key("journal", name),
                               key("payload", name), key("attempts", name)], args=[host, self.lease_ms, limit])
        if got[0] is None:
            return Batch(None, None, [])
        messages = [Pending.stored(text(got[i]), got[i + 2], int(got[i + 1])) for i in range(3, len(got), 3)]
        return Batch(got[0].decode(), int(got[1]) if got[1] is not None else None, messages, int(got[2]))

    def queued(self, name: str) -> int:
        """Messages journalled at the server and not yet applied."""
        return int(self.r.zcard(key("journal", name)))

    def has_pending(self, names: list[str]) -> list[str]:
        with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(key("journal", name))
            counts = pipe.execute()
        return [name for name, n in zip(names, counts) if n]

    def applied(self, name: str, message_id: str) -> dict | None:
        reply = self.r.hget(key("applied", name), message_id)
        return json.loads(reply) if reply is not None else None

    def wait_reply(self, name: str, message_id: str, deadline: float) -> dict | None:
        """The reply of a message sent with wait=True to server `name`, or None at `deadline` (a
        time.monotonic() value). A store that goes away meanwhile (a reset connection, a restart) is waited
        for, reconnecting, until the deadline; past it the store's error is raised. After a lost connection
        the reply is looked up among the server's applied messages too: its reply list may have been popped
        on the connection that was lost."""
        pause = 0.02
        lost = False
        while True:
            try:
                if lost:
                    reply = self.applied(name, message_id)
                    if reply is not None:
                        return reply
                    lost = False
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                got = self.r.blpop([key("reply", message_id)], timeout=max(0.01, min(left, 20.0)))
                if got is not None:
                    return json.loads(got[1])
                pause = 0.02
            except STORE_DOWN:
                if time.monotonic() + pause >= deadline:
                    raise
                lost = True
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    def find(self, message_id: str, names: list[str]) -> tuple[str, dict | None] | None:
        """Where a message is, in one round trip: (server, reply) once applied (among the last APPLIED_KEPT
        of its server), (server, None) while journalled, None when no server of `names` knows it."""
        if not names:
            return None
        with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(key("applied", name), message_id)
                pipe.zscore(key("journal", name), message_id)
            found = pipe.execute()
        pending = None
        for i, name in enumerate(names):
            reply, queued = found[2 * i], found[2 * i + 1]
            if reply is not None:
                return name, json.loads(reply)
            if queued is not None and pending is None:
                pending = (name, None)
        return pending

    # ------------------------------------------------------------ wait-for edges (call cycles across messages)

    def wait_for(self, caller: str, callee: str, message_id: str, ttl: float) -> list[str]:
        """Records that server `caller`'s handler waits on its call `message_id` to `callee`, unless that
        call would close a cycle of waiting servers: then nothing is recorded and the cycle is returned
        (`caller`, `callee`, ..., `caller`). The record lasts `ttl` seconds at most (see WAIT_FOR)."""
        cycle = self._wait_for(keys=[key("waitfor", caller)],
                               args=[key("waitfor", ""), caller, callee, message_id, max(1, int(ttl * 1000))])
        return [c.decode() for c in cycle]

    def done_waiting(self, caller: str, callee: str, message_id: str) -> None:
        """Removes `caller`'s wait-for record of this call (if it is still there: the callee's commit removes
        it with the reply)."""
        self._done_waiting(keys=[key("waitfor", caller)], args=[f"{callee} {message_id}"])

    # ------------------------------------------------------------ leases

    def renew(self, host: str, leases: dict[str, str]) -> list[str]:
        """Renews the host's leases in one round trip; returns the servers whose lease was lost."""
        if not leases:
            return []
        names = list(leases)
        keys = [k for name in names for k in (key("lease", name), key("fence", name))]
        lost = self._renew(keys=keys, args=[host, self.lease_ms, *(Lease.token_of(leases[n]) for n in names)])
        return [names[i - 1] for i in lost]

    def release(self, name: str, lease: str) -> None:
        self._release(keys=[key("lease", name)], args=[lease])

    def holder(self, name: str) -> str | None:
        return Lease.holder_of(self.r.get(key("lease", name))) or None

    # ------------------------------------------------------------ state

    def applied_count(self, name: str) -> int:
        """Messages the server has applied since it was first deployed."""
        return int(self.r.hget(key("state", name), CHECKPOINTED) or 0)

    def load_state(self, name: str) -> dict[str, str] | None:
        """The checkpointed state fields as JSON texts, or None when the server never committed."""
        data = self.r.hgetall(key("state", name))
        if not data:
            return None
        return {text(k): text(v) for k, v in data.items() if text(k) != CHECKPOINTED}

    def commit(self, name: str, lease: str, replies: list[tuple[Pending, dict]], fields: dict[str, str],
               removed: list[str], outgoing: list[Outgoing], untaken: list[str]) -> bool:
        """Atomically and fenced, one batch: the changed state fields, each message's reply (and its
        removal from the journal), the outgoing messages into their receivers' journals, and the attempt
        of each message taken but not handled (`untaken`) undone. False: not the owner."""
        keys = [key("fence", name), key("lease", name), key("state", name), key("journal", name),
                key("payload", name), key("applied", name), key("appliedlog", name), key("attempts", name)]
        for message, _reply in replies:
            if message.wait:
                keys.append(key("reply", message.id))
                if message.chain:  # a server's handler waits: its wait-for edge goes with the reply
                    keys.append(key("waitfor", message.chain[-1]))
        args: list[EncodableT] = [Lease.token_of(lease), lease, self.lease_ms, APPLIED_KEPT, REPLY_TTL, name + " ",
                              len(fields)]
        for field, text in fields.items():
            args += [field, text]
        args += [len(removed), *removed, len(replies)]
        for message, reply in replies:
            args += [message.id, json.dumps(reply), ("2" if message.chain else "1") if message.wait else "0"]
        args += [len(untaken), *untaken, len(outgoing)]
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
        now = time.time()
        entry = {"id": letter_id, "queue": queue, "reason": reason, "raw": raw[:4096], "time": now, **fields}
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(key("dead"), letter_id, json.dumps(entry))
            pipe.zadd(key("deadtime"), {letter_id: now})
            pipe.execute()
        excess = self.r.zcard(key("deadtime")) - self.KEPT
        if excess > 0:
            for old in self.r.zpopmin(key("deadtime"), excess):
                self.r.hdel(key("dead"), old[0])
        return letter_id

    def list(self, server: str | None = None) -> list[dict]:
        ids = cast(list[bytes], self.r.zrange(key("deadtime"), 0, -1))
        entries = [json.loads(x) for x in self.r.hmget(key("dead"), ids) if x is not None] if ids else []
        return [e for e in entries if server is None or e.get("server") == server]

    def get(self, letter_id: str) -> dict | None:
        entry = self.r.hget(key("dead"), letter_id)
        return json.loads(entry) if entry is not None else None

    def drop(self, letter_id: str) -> bool:
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hdel(key("dead"), letter_id)
            pipe.zrem(key("deadtime"), letter_id)
            return bool(pipe.execute()[0])
