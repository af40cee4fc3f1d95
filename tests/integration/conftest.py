"""Real parts for the fleet tests: a redis-server on a free port and `celery worker` processes.

Nothing is faked: the workers are started as users start them
(`celery -A relay_workers worker -Q 'relay.*'`), against a real Redis.
"""

from __future__ import annotations

import shutil
import socket

import pytest
import redis

from relay_workers.devfleet import Fleet, RedisServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (.ci/test installs it with apt)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
TEST_QUEUES = ["relay.eval", "relay.*", "only-w1", "only-w2"] + [
    f"relay.{n}" for n in ("counter", "journal", "ping", "pong", "upgraded", "sturdy", "tally", "ledger")]


def rabbitmq_broker() -> str:
    """The RabbitMQ broker on localhost:5672, emptied of this suite's queues; skips when none answers."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        pytest.skip("no RabbitMQ broker answers on localhost:5672")
    import kombu
    with kombu.Connection(RABBITMQ, connect_timeout=5) as conn:
        channel = conn.channel()
        for queue in TEST_QUEUES:
            channel.queue_delete(queue)
    return RABBITMQ


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def fleet(request, redis_url, tmp_path_factory):
    """Workers on a Redis broker, then the same tests on RabbitMQ (results and state stay in Redis)."""
    r = redis.Redis.from_url(redis_url)
    r.flushall()
    broker = f"{redis_url}/0" if request.param == "redis" else rabbitmq_broker()
    f = Fleet.on(redis_url, broker, tmp_path_factory.mktemp("logs"))
    yield f
    f.stop_all()


@pytest.fixture
def client(fleet):
    c = fleet.client()
    yield c
    c.close()
