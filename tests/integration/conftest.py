"""Real parts for the fleet tests: a redis-server on a free port and `celery worker` processes.

Nothing is faked: the workers are started as users start them
(`celery -A relay_workers worker -Q 'relay.*'`), against a real Redis.

`RELAY_TEST_STACK=external` runs the same tests against a stack that is
already running (`docker compose up -d`, or `relay up`), reached through
RELAY_BROKER_URL, RELAY_RESULT_BACKEND and RELAY_STORE_URL: its workers are
used instead of starting some, and its servers and their ledgers are deleted
first (use a stack for testing). Tests that need to start workers of their own are skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import httpx
import pytest
import redis

from relay_workers.devfleet import LocalFleet, RedisServer
from relay_workers.registry import node_of


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (.ci/test installs it with apt)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
TEST_QUEUES = ["relay.eval", "relay.*", "only-w3", "only-w4"] + [
    f"relay.{n}" for n in ("counter", "batch", "journal", "ping", "pong", "upgraded", "sturdy", "tally", "ledger", "kept")]


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


EXTERNAL = os.environ.get("RELAY_TEST_STACK") == "external"


class ExternalStack:
    """A running stack: its URLs from the environment, its workers already there."""

    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.workers: dict[str, object] = {}

    def start(self, name: str, queues: str = "relay.*", **_: object) -> str:
        if queues != "relay.*":
            pytest.skip("needs workers of its own (RELAY_TEST_STACK=external)")
        client = self.client()
        live = sorted(node_of(h) for h in client.registry.live_hosts())
        client.close()
        taken = [n for n in live if n not in self.workers]
        if not taken:
            pytest.skip("the external stack has fewer workers than this test needs")
        self.workers[taken[0]] = None
        return taken[0]

    def client(self):
        from relay_workers.client import client_from_env
        return client_from_env()

    def stop_all(self) -> None:
        self.workers.clear()


@pytest.fixture(scope="module", params=["external"] if EXTERNAL else ["redis", "rabbitmq"])
def fleet(request, tmp_path_factory):
    """Workers on a Redis broker, then the same tests on RabbitMQ (results and state stay in Redis)."""
    if request.param == "external":
        store = redis.Redis.from_url(os.environ["RELAY_STORE_URL"])
        for k in store.scan_iter(match="{relay}:*"):  # servers and ledgers go; the running hosts stay
            if not k.startswith((b"{relay}:hosts", b"{relay}:host:")):
                store.delete(k)
        yield ExternalStack()
        return
    redis_url = request.getfixturevalue("redis_url")
    r = redis.Redis.from_url(redis_url)
    r.flushall()
    broker = f"{redis_url}/0" if request.param == "redis" else rabbitmq_broker()
    f = LocalFleet.on(redis_url, broker, tmp_path_factory.mktemp("logs"))
    yield f
    f.stop_all()


@pytest.fixture
def client(fleet):
    c = fleet.client()
    yield c
    c.close()


def wait_answering(url: str, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    """Waits until GET url answers 200 (a gateway starting); fails the test when `proc` exits or time is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what}: no answer from {url}")
        time.sleep(0.1)
