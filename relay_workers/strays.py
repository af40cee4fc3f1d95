"""Stray queues: `relay.NAME` queues of servers that are not deployed, found so that what waits there is answered.

A `relay.deliver` task that a plain Celery producer publishes on `relay.NAME`
when no server NAME is deployed would wait forever: no host consumes that
queue. On the Redis broker, one host at a time (a short lock in the store,
taken at most once per `every` seconds) scans the broker for non-empty
`relay.*` queues that are neither `relay.eval` nor a deployed server's, and
records them in the store (`relay:strays`). Every host's inbox consumes those
queues beside its servers' (relay_workers.host.Inbox) and answers each
message there as one for no deployed server: the error reply "no server named
'NAME' is deployed", under its message id and its Celery task id (a message
for a deployed server that was published on a stray queue is forwarded to its
server). The `relay.*` queue names are the fleet's: do not use them for other
Celery tasks. RabbitMQ cannot list its queues through the AMQP protocol: there
a stray queue keeps its messages.
"""

from __future__ import annotations

import math

import redis

from .ledger import key, text

QUEUE_PREFIX = "relay."
PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: `QUEUE\x06\x16N` holds the messages of priority N


class Strays:
    """The stray queues of the fleet, as each host's heartbeat asks for them."""

    def __init__(self, store: redis.Redis, broker_url: str, every: float) -> None:
        self.store = store
        self.every = every
        self.broker = (redis.Redis.from_url(broker_url, socket_timeout=10, socket_connect_timeout=5)
                       if broker_url.startswith(("redis://", "rediss://")) else None)

    def current(self, deployed: set[str]) -> set[str]:
        """The names of the undeployed servers whose queues hold messages; the broker is scanned here when
        no host scanned it in the last `every` seconds."""
        if self.broker is None:
            return set()
        if self.store.set(key("strays", "lock"), 1, nx=True, px=max(1, int(self.every * 1000))):
            found = sorted(self.scan() - deployed)
            with self.store.pipeline() as pipe:
                pipe.delete(key("strays"))
                if found:
                    pipe.sadd(key("strays"), *found)
                    pipe.expire(key("strays"), math.ceil(self.every * 5))
                pipe.execute()
            return set(found)
        return {text(n) for n in self.store.smembers(key("strays"))} - deployed

    def scan(self) -> set[str]:
        """Every server name with a non-empty `relay.NAME` queue on the broker (relay.eval excluded)."""
        assert self.broker is not None
        names = set()
        for k in self.broker.scan_iter(match=QUEUE_PREFIX + "*", count=1000, _type="list"):
            queue = k.decode(errors="replace").split(PRIORITY_SEP, 1)[0]
            name = queue[len(QUEUE_PREFIX):]
            if name and name != "eval":
                names.add(name)
        return names

    def close(self) -> None:
        if self.broker is not None:
            self.broker.close()
