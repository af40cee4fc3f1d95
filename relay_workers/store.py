"""Clients of the store (RELAY_STORE_URL): one Redis server, or a Redis Cluster.

A Cluster's URL has the scheme `redis+cluster://` (or `rediss+cluster://`) and names any one of its
masters, without a database (a Cluster has only database 0); a client finds the others from it. The
scheme says it, rather than a question to the server, so that making a client connects to nothing.
Every key of the fleet carries the hash tag of `ledger.PREFIX`, so every Lua script and MULTI of the
fleet touches one slot, as a Cluster requires: the master that serves that slot holds the fleet's
records (see docs/fleet.md, "The store"). The Celery broker stays a plain Redis (kombu has no Cluster
transport).

Pools are bounded and blocking on both: a thread past STORE_CONNECTIONS (per master, on a Cluster)
waits for a connection instead of raising "Too many connections".
"""

from __future__ import annotations

from queue import Empty, Queue
from typing import cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

STORE_CONNECTIONS = 64  # connections one client of the store opens at most (per master); more threads wait
POOL_WAIT = 30  # seconds a thread waits for one of them before the store counts as away
FLEET_TAG = "{relay}"  # the hash tag of every key of the fleet (ledger.PREFIX starts with it)


CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster(url: str) -> bool:
    """Whether `url` names a Redis Cluster."""
    return url.startswith(CLUSTER_SCHEMES)


def node_url(url: str) -> str:
    """The URL redis-py takes for a Cluster's URL (its scheme without `+cluster`); others unchanged."""
    return url.replace("+cluster://", "://", 1) if is_cluster(url) else url


def connect(url: str, name: str | None = None) -> redis.Redis:
    """A client of the store; `name` is given to its connections (CLIENT SETNAME). On a Cluster it is a
    RedisCluster, typed as redis.Redis: for keys of one slot it serves the same commands."""
    options = dict(max_connections=STORE_CONNECTIONS, timeout=POOL_WAIT, socket_timeout=30,
                   socket_connect_timeout=5, health_check_interval=10, client_name=name)
    if is_cluster(url):
        return cast(redis.Redis, RedisCluster.from_url(node_url(url), connection_pool_class=redis.BlockingConnectionPool,
                                                       **options))
    return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(url, **options))


def connect_async(url: str, connections: int) -> aioredis.Redis:
    """A redis.asyncio client whose callers wait for one of its `connections` when all are busy (on a
    Cluster: `connections` per master, past which a command fails; the gateway bounds its own callers)."""
    if is_cluster(url):
        return cast(aioredis.Redis, AsyncRedisCluster.from_url(node_url(url), max_connections=connections, socket_timeout=30,
                                                               socket_connect_timeout=5, health_check_interval=10))
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=connections, timeout=None, socket_timeout=30,
                                                    socket_connect_timeout=5, health_check_interval=10)
    return aioredis.Redis(connection_pool=pool)


def home(r: redis.Redis) -> redis.Redis:
    """The server that holds the fleet's records, for the commands about a server rather than a key (TIME,
    INFO, CLIENT LIST): `r` itself, or on a Cluster the master serving the fleet's slot."""
    if isinstance(r, RedisCluster):
        return cast(redis.Redis, r.get_redis_connection(r.get_node_from_key(FLEET_TAG)))
    return r


def close_idle(client: redis.Redis) -> None:
    """Closes the connections that no thread is using (of each master's pool, on a Cluster); each
    reconnects when next used."""
    if isinstance(client, RedisCluster):
        for node in client.get_nodes():
            if node.redis_connection is not None:
                _close_idle_pool(node.redis_connection)
    else:
        _close_idle_pool(client)


def _close_idle_pool(client: redis.Redis) -> None:
    """Each idle connection is taken off the pool's queue first (redis-py's BlockingConnectionPool keeps its
    connections in a LIFO queue, `pool`, above `None` placeholders), so no thread can pick it up while it
    closes: `disconnect(inuse_connections=False)` closes them where they lie, racing the threads that take one."""
    idle: Queue[redis.Connection | None] = client.connection_pool.pool  # type: ignore[attr-defined]
    taken: list[redis.Connection] = []
    try:
        while True:
            try:
                connection = idle.get_nowait()
            except Empty:
                break
            if connection is None:  # below it, placeholders only
                idle.put_nowait(None)
                break
            connection.disconnect()
            taken.append(connection)
    finally:
        for connection in reversed(taken):
            idle.put_nowait(connection)
