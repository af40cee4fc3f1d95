"""Stray queues: `relay.NAME` queues that hold messages, found so that what waits there is delivered.

The fleet's broker queues are its shard queues (`relay.shard-K`, see
relay_workers.ledger.shard_queue), which every host consumes. A `relay.deliver`
task that a plain Celery producer publishes on `relay.NAME` instead (the queue
a server had before servers were activated on demand) would wait forever: no
host consumes that queue. On the Redis broker, one host at a time (a short
lock in the store, taken at most once per `every` seconds) scans the broker for
non-empty `relay.*` queues that are neither `relay.eval` nor a shard queue, and
records them in the store (`{relay}:strays`). Every host's inbox consumes those
queues beside the shard queues (relay_workers.host.Inbox): a message there for
a deployed server is journalled and delivered to it, one for no deployed
server gets the error reply "no server named 'NAME' is deployed", under its
message id and its Celery task id. The `relay.*` queue names are the fleet's:
do not use them for other Celery tasks. RabbitMQ cannot list its queues
through the AMQP protocol: there a stray queue keeps its messages.
"""

from __future__ import annotations

import math

import redis

from .ledger import SHARD_QUEUES, key, text

QUEUE_PREFIX = "relay."
PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: `QUEUE\x06\x16N` holds the messages of priority N


class Strays:
    """The stray queues of the fleet, as each host's heartbeat asks for them."""

    def __init__(self, store: redis.Redis, broker_url: str, every: float) -> None:
        self.store = store
        self.every = every
        self.broker = (redis.Redis.from_url(broker_url, socket_timeout=10, socket_connect_timeout=5)
                       if broker_url.startswith(("redis://", "rediss://")) else None)

    def current(self) -> set[str]:
        """The NAMEs of the stray queues `relay.NAME` that hold messages; the broker is scanned here when
        no host scanned it in the last `every` seconds."""
        if self.broker is None:
            return set()
        if self.store.set(key("strays", "lock"), 1, nx=True, px=max(1, int(self.every * 1000))):
            found = sorted(self.scan())
            with self.store.pipeline(transaction=True) as pipe:
                pipe.delete(key("strays"))
                if found:
                    pipe.sadd(key("strays"), *found)
                    pipe.expire(key("strays"), math.ceil(self.every * 5))
                pipe.execute()
            return set(found)
        return {text(n) for n in self.store.smembers(key("strays"))}

    def scan(self) -> set[str]:
        """Every NAME with a non-empty `relay.NAME` queue on the broker (relay.eval and the shard queues excluded)."""
        assert self.broker is not None
        names = set()
        for k in self.broker.scan_iter(match=QUEUE_PREFIX + "*", count=1000, _type="list"):
            queue = k.decode(errors="replace").split(PRIORITY_SEP, 1)[0]
            name = queue[len(QUEUE_PREFIX):]
            if name and name != "eval" and queue not in SHARD_QUEUES:
                names.add(name)
        return names

    def close(self) -> None:
        if self.broker is not None:
            self.broker.close()
